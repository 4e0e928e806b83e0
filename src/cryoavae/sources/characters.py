"""The paper's 2-D character set (its Fig. 2): rotated glyphs as a small, fully known test bed.

Each class is one character rendered with Pillow's built-in scalable font (Aileron, shipped with
Pillow, so it works offline), centred by its centre of mass and rotated in-plane by a random angle.
The output is the same stack + STAR table as every other particle source (see
:mod:`cryoavae.particles`); the angle goes in ``rlnAnglePsi``.

Conventions:

- Images are ``(n, h, w)`` arrays, row 0 at the top (as Pillow draws and matplotlib's
  ``imshow`` shows them). The glyph's centre of mass sits on pixel ``(h // 2, w // 2)``, the box
  centre of :mod:`cryoavae.model.vae` and of every 3-D particle (the cryo-EM convention for even
  boxes), and rotations turn about that point: a decoder that turns its canonical glyph about
  the box centre then reproduces a turned particle exactly, with no half-pixel shift.
- ``rlnAnglePsi`` = ``+θ`` means the glyph was turned **counter-clockwise by θ degrees as displayed
  with row 0 at the top**; turning the image by ``-θ`` restores the upright glyph. (A viewer that
  puts row 0 at the bottom, as most MRC viewers do, shows the same turn as clockwise.)
- Each image is z-scored; with ``noise_std > 0``, Gaussian noise of that standard deviation is
  added to the z-scored clean image and the sum z-scored again, so the SNR (signal variance over
  noise variance) is ``1 / noise_std**2`` (``inf`` without noise).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass

log = logging.getLogger(__name__)

_SUPERSAMPLE = 4  # glyphs are drawn 4x larger and block-averaged: anti-aliased, sub-pixel centred
_FIT_RADIUS = 0.45  # auto font size: every glyph within 0.45 x image size of its centre of mass
_ROTATE_CHUNK = 1024
SECTION = "characters"
CHARACTER_VOXEL_ANGSTROM = 1.0  # characters have no physical scale; the stack header says 1 Å


class CharacterConfig(section_dataclass(SECTION)):
    """The 2-D character set: the YAML keys of ``characters``, with the schema's defaults and
    bounds. Angles are uniform in ``[-rotation_range_deg, rotation_range_deg]``; a
    ``font_size_px`` of 0 picks the largest size at which every glyph survives any rotation."""

    def __post_init__(self):
        super().__post_init__()
        names = self.seen + self.unseen
        if len(set(names)) != len(names) or any(not c.strip() for c in names):
            raise InputError(
                f"characters.seen + unseen: got {list(names)}; expected distinct, non-blank "
                "characters"
            )

    @property
    def class_names(self) -> list[str]:
        """Seen classes, then unseen: ``rlnClassNumber`` is 1-based into this list."""
        return [*self.seen, *self.unseen]


# --------------------------------------------------------------------------- rendering


def render_glyphs(config: CharacterConfig) -> np.ndarray:
    """Upright glyphs of ``config.class_names``, ``(n_classes, size, size)`` float32 in [0, 1].

    Each glyph's centre of mass is on pixel ``size // 2`` in both axes (to 1/16 pixel or better).
    """
    size = config.image_size_px
    font_size = config.font_size_px or _auto_font_size(config.class_names, size)
    glyphs = np.stack([_render_one(c, size, font_size) for c in config.class_names])
    radius = _glyph_radius(glyphs)
    inscribed = size - 0.5 - size // 2  # from the centre pixel to the nearest image edge
    if radius.max() > inscribed:
        worst = config.class_names[int(radius.argmax())]
        log.warning(
            "font_size_px %d: glyph %r reaches %.1f px from its centre, beyond the image's "
            "inscribed circle (%.1f px), so rotations clip it; 0 picks a size that fits",
            font_size,
            worst,
            radius.max(),
            inscribed,
        )
    return glyphs


@functools.lru_cache(maxsize=256)
def _render_one(char: str, size: int, font_size: int) -> np.ndarray:
    """One glyph ``(size, size)``: drawn at 4x on a roomy canvas, centred by mass, averaged down.

    Cached (the auto font size renders each glyph several times); callers copy, never modify.
    """
    s = _SUPERSAMPLE
    big = s * size
    canvas = 2 * big  # room for glyphs that start off-centre
    font = ImageFont.load_default(size=s * font_size)
    image = Image.new("L", (canvas, canvas), 0)
    ImageDraw.Draw(image).text((canvas / 2, canvas / 2), char, font=font, fill=255, anchor="mm")
    hi = np.asarray(image, dtype=np.float32) / 255.0
    if hi.sum() == 0:
        raise InputError(f"characters: {char!r} renders as an empty image; pick a visible glyph")
    com = np.array(ndimage.center_of_mass(hi))
    target = s * (size // 2) + (s - 1) / 2  # centre of pixel size // 2, in 4x pixels
    # shift so the centre of mass lands on `target` of the central big x big window, then crop
    offset = (canvas - big) // 2
    hi = ndimage.shift(hi, target + offset - com, order=1, mode="constant")
    hi = hi[offset : offset + big, offset : offset + big]
    glyph = hi.reshape(size, s, size, s).mean(axis=(1, 3)).astype(np.float32)
    glyph.flags.writeable = False
    return glyph


def _glyph_radius(glyphs: np.ndarray) -> np.ndarray:
    """Largest distance (px) from the centre to an inked pixel, per glyph ``(n,)``."""
    size = glyphs.shape[-1]
    c = size // 2
    yy, xx = np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")
    r = np.sqrt(yy**2 + xx**2) + 0.5
    return np.where(glyphs > 0.02, r, 0.0).reshape(len(glyphs), -1).max(axis=1)


def _auto_font_size(names: list[str], size: int) -> int:
    """Largest font size whose glyphs all lie within ``0.45 * size`` of their centre of mass."""
    limit = _FIT_RADIUS * size
    font_size = size
    for _ in range(3):  # the radius grows about linearly with the font size
        radius = _glyph_radius(np.stack([_render_one(c, size, font_size) for c in names])).max()
        font_size = max(1, int(font_size * limit / radius))
    while font_size > 1:
        radius = _glyph_radius(np.stack([_render_one(c, size, font_size) for c in names])).max()
        if radius <= limit:
            break
        font_size -= 1
    return font_size


# --------------------------------------------------------------------------- rotation


def rotate_images(images: np.ndarray, angles_deg: np.ndarray) -> np.ndarray:
    """Turn each image ``(n, h, w)`` counter-clockwise (as displayed, row 0 on top) by its angle.

    Bilinear ``grid_sample`` about pixel ``(h // 2, w // 2)``, zeros outside; batched, float32.
    """
    images = np.asarray(images, dtype=np.float32)
    angles = np.radians(np.asarray(angles_deg, dtype=np.float64))
    out = np.empty_like(images)
    for start in range(0, len(images), _ROTATE_CHUNK):
        a = angles[start : start + _ROTATE_CHUNK]
        batch = torch.from_numpy(images[start : start + len(a)])[:, None]  # (m, 1, h, w)
        cos, sin = np.cos(a), np.sin(a)
        # output(x, y) = input(theta @ (x, y)) with x right and y down (normalised coordinates):
        # sampling at R(θ) (x, y) in y-down coordinates turns the content by +θ counter-clockwise
        # as displayed
        # about pixel (h // 2, w // 2): normalised coordinate c = (2 (n // 2) + 1) / n - 1 per
        # axis, sampled at c + R (p - c), so the translation is c - R c
        h, w = images.shape[1:]
        c = np.array([(2 * (w // 2) + 1) / w - 1, (2 * (h // 2) + 1) / h - 1])
        theta = np.zeros((len(a), 2, 3), dtype=np.float32)
        theta[:, 0, 0], theta[:, 0, 1] = cos, -sin
        theta[:, 1, 0], theta[:, 1, 1] = sin, cos
        theta[:, :, 2] = c - theta[:, :, :2] @ c
        grid = F.affine_grid(torch.from_numpy(theta), list(batch.shape), align_corners=False)
        rotated = F.grid_sample(batch, grid, mode="bilinear", align_corners=False)
        out[start : start + len(a)] = rotated[:, 0].numpy()
    return out


def _zscore(images: np.ndarray) -> np.ndarray:
    """Each image ``(n, h, w)`` to mean 0, standard deviation 1 (flat images to 0)."""
    mean = images.mean(axis=(1, 2), keepdims=True)
    std = images.std(axis=(1, 2), keepdims=True)
    return ((images - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)


# --------------------------------------------------------------------------- the stage


def generate_characters(
    config: CharacterConfig,
    seed: int,
    stack_path: str | os.PathLike,
    star_path: str | os.PathLike,
) -> list[str]:
    """Write the character set as one stack + STAR table; return the class names (seen, unseen).

    Seen classes get ``particles_per_class`` images each, split train/val per class; unseen
    classes ``unseen_particles_per_class`` each, split ``unseen``. Angles and noise come from
    ``numpy.random.default_rng(seed)``: the same seed writes the same bytes.
    """
    stack_path, star_path = Path(stack_path), Path(star_path)
    names = config.class_names
    glyphs = render_glyphs(config)
    n_seen = len(config.seen)
    counts = [config.particles_per_class] * n_seen
    counts += [config.unseen_particles_per_class] * len(config.unseen)
    class_index = np.repeat(np.arange(len(names)), counts)  # (n,)
    is_unseen = class_index >= n_seen
    rng = np.random.default_rng(seed)
    r = config.rotation_range_deg
    angles = rng.uniform(-r, r, size=len(class_index))
    size = config.image_size_px
    # a chunk at a time: memory stays one chunk whatever the set's size (the noise is drawn in
    # the same order as one draw would, so the images do not depend on the chunk size)
    with P.stack_writer(
        stack_path, len(class_index), (size, size), CHARACTER_VOXEL_ANGSTROM
    ) as out:
        for start in range(0, len(class_index), _ROTATE_CHUNK):
            chunk = slice(start, start + _ROTATE_CHUNK)
            images = _zscore(rotate_images(glyphs[class_index[chunk]], angles[chunk]))
            if config.noise_std > 0:
                noise = rng.standard_normal(images.shape, dtype=np.float32)
                images = _zscore(images + np.float32(config.noise_std) * noise)
            out.write(start, images)
    snr = 1.0 / config.noise_std**2 if config.noise_std > 0 else math.inf
    splits = P.assign_splits(
        class_index + 1, is_unseen, config.val_fraction, rng, config.test_fraction
    )
    angles_deg = np.stack([np.zeros_like(angles), np.zeros_like(angles), angles], axis=1)
    table = P.particle_table(
        P.stack_reference(stack_path, star_path),
        class_index + 1,
        np.asarray(names, dtype=object)[class_index],
        splits,
        angles_deg=angles_deg,
        snr=snr,
    )
    P.write_particle_table(star_path, table)
    log.info(
        "characters: %d images of %s (%d seen, %d unseen classes), angles within ±%g°, "
        "noise_std %g",
        len(table),
        "".join(names),
        n_seen,
        len(config.unseen),
        r,
        config.noise_std,
    )
    return names


def glyph_affinity(config: CharacterConfig, n_angles: int = 360) -> tuple[list[str], np.ndarray]:
    """Raw glyph similarity ``(n_classes, n_classes)`` in [-1, 1]: rotation-maximised NCC.

    Entry ``(i, j)`` is the largest normalised cross-correlation (Pearson correlation over the
    image) between glyph ``i`` and glyph ``j`` turned by any of ``n_angles`` angles evenly covering
    a full turn, symmetrised as ``(A + A.T) / 2`` (interpolation makes the two directions differ
    slightly), unit diagonal. Not PSD in general: ``cryoavae.affinity`` makes it a prior.
    """
    if isinstance(n_angles, bool) or not isinstance(n_angles, int) or n_angles < 1:
        raise InputError(f"n_angles: got {n_angles!r}; expected an integer >= 1")
    names = config.class_names
    glyphs = render_glyphs(config)
    c, h, w = glyphs.shape
    angles = np.arange(n_angles) * (360.0 / n_angles)
    turned = rotate_images(np.repeat(glyphs, n_angles, axis=0), np.tile(angles, c))
    upright = _unit_rows(glyphs.reshape(c, h * w))  # (c, h*w)
    turned = _unit_rows(turned.reshape(c * n_angles, h * w))  # (c*a, h*w)
    ncc = (upright @ turned.T).reshape(c, c, n_angles)  # [i, j, a]: glyph i vs glyph j turned
    best = ncc.max(axis=2)
    affinity = np.clip((best + best.T) / 2, -1.0, 1.0)
    np.fill_diagonal(affinity, 1.0)
    return names, affinity


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows centred and scaled to unit norm (float64), so dot products are correlations."""
    x = x.astype(np.float64) - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)
