"""Cut subtomograms out of a tomogram at the positions of a particle list.

The output is the same as simulation's (an ``.mrcs`` stack + a STAR table, see
:mod:`cryoavae.particles`), so the rest of the pipeline does not care where particles came from.

Coordinates, angles, list formats: :mod:`cryoavae.particles.picks`; the tomogram and RELION 5
position each particle records: :mod:`cryoavae.particles.positions`. A ``b``-voxel box puts the
particle at index ``b // 2`` on each axis (the FFT centre, as in the simulated maps).
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from pathlib import Path

import mrcfile
import numpy as np
from scipy import ndimage

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass
from cryoavae.particles.picks import add_false_positives, jitter_positions, read_particle_list

log = logging.getLogger(__name__)

EXTRACTION_KEYS = (
    "box_size_px",
    "edge",
    "list_format",
    "rescale_to_angstrom",
    "val_fraction",
    "test_fraction",
    "normalize",
    "jitter_angstrom",
    "false_positive_fraction",
)
_CHUNK_VOXELS = 1 << 23  # ~32 MB of float32 per chunk of boxes


class ExtractionConfig(section_dataclass("extraction", keys=EXTRACTION_KEYS)):
    """How particles are cut out of tomograms: the YAML keys of ``extraction`` but its list of
    ``tomograms`` (one rule job each), with the schema's defaults and bounds.

    ``edge``: ``"skip"`` drops boxes crossing the edge, ``"pad"`` fills them with the tomogram's
    mean; ``list_format``: ``"auto"`` (from the suffix), ``"shrec"``, ``"star"`` or ``"csv"``;
    ``rescale_to_angstrom``: output voxel size (None keeps the tomogram's); ``normalize``:
    z-score each particle; ``jitter_angstrom``: standard deviation of a normal error added to
    each listed position per axis (0: cut at the listed positions); ``false_positive_fraction``:
    that many extra boxes per listed particle at random positions, class ``background``.
    """


# --------------------------------------------------------------------------- box extraction


def cut_boxes(
    volume: np.ndarray, centres_zyx: np.ndarray, box_size_px: int, fill_value: float | None
) -> np.ndarray:
    """Boxes ``(n, b, b, b)`` from ``volume`` ``(Z, Y, X)`` around integer ``centres_zyx`` (n, 3).

    The centre lands at index ``b // 2``. Boxes inside the volume are gathered in one fancy index
    into a ``sliding_window_view`` of it (no copy of the tomogram, contiguous rows read from the
    memory map); boxes crossing the edge read ``fill_value`` outside (an index grid, clipped and
    masked). With ``fill_value`` None every box must lie inside.
    """
    centres = np.asarray(centres_zyx, dtype=np.int64).reshape(-1, 3)
    b = box_size_px
    shape = np.array(volume.shape)
    corner = centres - b // 2  # (n, 3) first voxel of each box
    inside = (corner >= 0).all(axis=1) & (corner + b <= shape).all(axis=1)
    if fill_value is None and not inside.all():
        raise ValueError(f"cut_boxes: {int((~inside).sum())} boxes cross the edge, no fill value")
    out = np.empty((len(centres), b, b, b), dtype=np.float32)
    chunk = max(1, _CHUNK_VOXELS // b**3)
    rows = np.nonzero(inside)[0]
    if len(rows):
        windows = np.lib.stride_tricks.sliding_window_view(volume, (b, b, b))  # a view
        for start in range(0, len(rows), chunk):
            r = rows[start : start + chunk]
            out[r] = windows[corner[r, 0], corner[r, 1], corner[r, 2]]
    offsets = np.arange(b, dtype=np.int64)
    rows = np.nonzero(~inside)[0]
    for start in range(0, len(rows), chunk):
        r = rows[start : start + chunk]
        idx = [corner[r, axis, None] + offsets for axis in range(3)]  # 3 x (m, b)
        valid = [(i >= 0) & (i < shape[axis]) for axis, i in enumerate(idx)]
        z, y, x = (np.clip(i, 0, shape[axis] - 1) for axis, i in enumerate(idx))
        boxes = np.asarray(
            volume[z[:, :, None, None], y[:, None, :, None], x[:, None, None, :]],
            dtype=np.float32,
        )
        mask = valid[0][:, :, None, None] & valid[1][:, None, :, None] & valid[2][:, None, None, :]
        boxes[~mask] = fill_value
        out[r] = boxes
    return out


def resample_boxes(
    volume: np.ndarray,
    centres_zyx: np.ndarray,
    box_size_px: int,
    ratio: float,
    fill_value: float | None,
) -> np.ndarray:
    """Boxes ``(n, b, b, b)`` whose voxels are ``ratio`` tomogram voxels apart, centred exactly.

    Output voxel ``j`` samples the tomogram at ``centre + (j - b // 2) * ratio``. When shrinking
    (``ratio > 1``) each window is first low-passed in Fourier space to the output Nyquist
    frequency (raised-cosine edge) so it does not alias; sampling is trilinear.
    """
    centres = np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)
    b = box_size_px
    half = math.ceil((b // 2) * ratio) + 2
    w = 2 * half + 1  # window around the rounded centre, index `half` = rounded centre
    rounded = np.rint(centres).astype(np.int64)
    frac = centres - rounded  # (n, 3) sub-voxel remainder
    grid = (np.arange(b) - b // 2) * ratio + half  # positions inside the window
    lowpass = _lowpass_filter(w, 0.5 / ratio) if ratio > 1 else None
    out = np.empty((len(centres), b, b, b), dtype=np.float32)
    chunk = max(1, _CHUNK_VOXELS // w**3)
    for start in range(0, len(centres), chunk):
        windows = cut_boxes(volume, rounded[start : start + chunk], w, fill_value)
        # cut_boxes puts the centre at w // 2 == half
        if lowpass is not None:
            spectrum = np.fft.rfftn(windows, axes=(1, 2, 3))
            windows = np.fft.irfftn(spectrum * lowpass, s=(w, w, w), axes=(1, 2, 3))
        m = len(windows)
        f = frac[start : start + m]
        coords = np.empty((4, m, b, b, b), dtype=np.float64)
        coords[0] = np.arange(m)[:, None, None, None]
        coords[1] = grid[None, :, None, None] + f[:, 0, None, None, None]
        coords[2] = grid[None, None, :, None] + f[:, 1, None, None, None]
        coords[3] = grid[None, None, None, :] + f[:, 2, None, None, None]
        out[start : start + m] = ndimage.map_coordinates(
            windows.astype(np.float32), coords, order=1, mode="nearest"
        )
    return out


def _lowpass_filter(w: int, cutoff_cycles_per_voxel: float) -> np.ndarray:
    """rfftn-shaped ``(w, w, w // 2 + 1)`` low-pass: 1 below 0.85 x cutoff, cosine to 0 at it."""
    k = np.fft.fftfreq(w)
    kr = np.fft.rfftfreq(w)
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2)
    lo = 0.85 * cutoff_cycles_per_voxel
    t = np.clip((radius - lo) / (cutoff_cycles_per_voxel - lo), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def cut_particles(
    mrc, coords_xyz: np.ndarray, box_size_px: int, ratio: float, edge: str
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(m, b, b, b)`` for the particles kept by the ``edge`` policy, and their indices.

    ``mrc`` is an open (memory-mapped) tomogram; ``coords_xyz`` (n, 3) voxel positions; ``ratio``
    output / tomogram voxel size (1 = cut without resampling). A box is inside when every voxel
    it reads lies in the tomogram (with the interpolation margin when resampling); ``edge="pad"``
    keeps the others whose centre lies in the tomogram, filled with the tomogram's mean.
    """
    volume = mrc.data
    b = box_size_px
    exact = abs(ratio - 1.0) < 1e-6
    centres_zyx = np.asarray(coords_xyz, dtype=np.float64)[:, ::-1]
    rounded = np.rint(centres_zyx)
    if exact:
        reach_lo, reach_hi = b // 2, b - b // 2 - 1
    else:
        reach_lo = reach_hi = math.ceil((b // 2) * ratio) + 2
    shape = np.array(volume.shape)
    inside = (rounded - reach_lo >= 0).all(axis=1) & (rounded + reach_hi < shape).all(axis=1)
    fill = None
    if edge == "skip":
        keep = np.nonzero(inside)[0]
    else:  # pad the boxes that cross the edge; a centre outside the tomogram is no pick of it
        keep = np.nonzero(((rounded >= 0) & (rounded < shape)).all(axis=1))[0]
        if not inside[keep].all():
            fill = tomogram_mean(mrc)
    if len(keep) == 0:
        return np.empty((0, b, b, b), dtype=np.float32), keep
    if exact:
        return cut_boxes(volume, rounded[keep], b, fill), keep
    return resample_boxes(volume, centres_zyx[keep], b, ratio, fill), keep


def normalize_boxes(boxes: np.ndarray) -> np.ndarray:
    """Z-score each particle ``(n, ...)`` float32 in place: mean 0, standard deviation 1 (0 if
    flat). Works in cache-sized chunks of particles (several times faster than one ``std``)."""
    flat = boxes.reshape(len(boxes), -1)  # a view: boxes are contiguous
    for start in range(0, len(flat), 64):
        x = flat[start : start + 64]
        x -= x.mean(axis=1, keepdims=True)
        std = np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1])[:, None]
        x /= np.where(std > 0, std, 1.0).astype(np.float32)
    return boxes


def tomogram_mean(mrc) -> float:
    """Mean of an open MRC volume: the header's ``dmean`` when the header stats are set, else one
    pass over the memory map in slabs of z (so a large tomogram is never loaded whole)."""
    h = mrc.header
    dmin, dmax, dmean = float(h.dmin), float(h.dmax), float(h.dmean)
    if dmin <= dmean <= dmax and not dmin == dmax == dmean == 0.0:
        return dmean
    data = mrc.data
    total = 0.0
    step = max(1, (1 << 24) // max(1, data[0].size))
    for z in range(0, data.shape[0], step):
        total += float(np.sum(data[z : z + step], dtype=np.float64))
    return total / data.size


# --------------------------------------------------------------------------- the stage


def extract_subtomograms(
    tomogram_path: str | os.PathLike,
    particle_list_path: str | os.PathLike,
    class_names: list[str],
    unseen: list[str],
    config: ExtractionConfig,
    seed: int,
    stack_path: str | os.PathLike,
    star_path: str | os.PathLike,
    shard: int = 0,
) -> None:
    """Cut one tomogram's particles into a stack + STAR table (the simulation's output format).

    ``class_names`` is the study's full class list (seen and unseen, ``rlnClassNumber`` is 1-based
    into it); ``unseen`` the subset held out of training. Class names match case-insensitively.
    A particle whose class is in neither gets class number 0 and split ``unseen``, keeping its own
    name, so a trained model can be applied to the open set. Seen particles are split train/val
    per class with ``numpy.random.default_rng(seed)``.

    Raises:
        InputError: unreadable tomogram or list, unknown ``unseen`` name, no particle left.
    Warns (log):
        How many particles were skipped at the tomogram's edge (``edge: skip``).
    """
    tomogram_path, star_path, stack_path = Path(tomogram_path), Path(star_path), Path(stack_path)
    lookup = P.class_lookup(class_names, unseen)
    if not tomogram_path.exists():
        raise InputError(f"{tomogram_path}: tomogram not found")
    mrc = open_tomogram(tomogram_path)
    with mrc:
        volume = mrc.data
        if volume is None or volume.ndim != 3:
            shape = None if volume is None else volume.shape
            raise InputError(f"{tomogram_path}: expected a 3-D tomogram, data shape {shape}")
        source_angstrom = _isotropic_voxel_size(mrc, tomogram_path)
        plist = read_particle_list(
            particle_list_path, list(class_names), config.list_format, tomogram_path.stem
        )
        ratio, out_angstrom = _rescale_ratio(source_angstrom, config, tomogram_path)
        plist = _realistic_picks(plist, config, volume.shape, source_angstrom, ratio, seed, shard)
        boxes, keep = cut_particles(mrc, plist.coords_xyz, config.box_size_px, ratio, config.edge)
        _check_cut(boxes, keep, len(plist), config, tomogram_path, particle_list_path, volume.shape)
    if config.normalize:
        normalize_boxes(boxes)

    names = plist.names[keep]
    numbers, canonical, is_unseen = P.resolve_classes(names, lookup)
    rng = np.random.default_rng(seed)
    splits = P.assign_splits(numbers, is_unseen, config.val_fraction, rng, config.test_fraction)
    coords = plist.coords_xyz[keep]
    table = P.particle_table(
        P.stack_reference(stack_path, star_path),
        numbers,
        canonical,
        splits,
        angles_deg=plist.angles_deg[keep],
        shard=shard,
        rlnCoordinateX=coords[:, 0],
        rlnCoordinateY=coords[:, 1],
        rlnCoordinateZ=coords[:, 2],
        **P.positions_in(tomogram_path, particle_list_path, coords, volume.shape, source_angstrom),
    )
    P.write_stack(stack_path, boxes, out_angstrom)
    P.write_particle_table(star_path, table)
    log.info(
        "%s: extracted %d particles (%s) at %.3f Å/voxel into %s",
        tomogram_path,
        len(keep),
        ", ".join(f"{s} {int((splits == s).sum())}" for s in P.SPLITS),
        out_angstrom,
        stack_path,
    )


def _check_cut(
    boxes: np.ndarray,
    keep: np.ndarray,
    n_picked: int,
    config: ExtractionConfig,
    tomogram_path: Path,
    particle_list_path: str | os.PathLike,
    shape_zyx: tuple[int, ...],
) -> None:
    """Warn about particles lost at the tomogram's edge; InputError when none is left or a box
    holds NaN or infinite voxels, naming the likely cause before anything is written."""
    if len(keep) < n_picked:
        log.warning(
            "%s: skipped %d of %d particles whose %s",
            particle_list_path,
            n_picked - len(keep),
            n_picked,
            "box crosses the tomogram's edge (edge: pad keeps them)"
            if config.edge == "skip"
            else "centre lies outside the tomogram",
        )
    if len(keep) == 0:
        raise InputError(
            f"{particle_list_path}: none of its {n_picked} particles has a "
            f"{config.box_size_px}-voxel box inside {tomogram_path} (shape z,y,x "
            f"{tuple(shape_zyx)}); check the coordinates' units and axis order"
            + (", or set edge: pad" if config.edge == "skip" else "")
        )
    bad = ~np.isfinite(boxes.reshape(len(boxes), -1)).all(axis=1)
    if bad.any():
        row = int(keep[int(np.argmax(bad))])
        raise InputError(
            f"{tomogram_path}: the box of particle {row + 1} of {particle_list_path} holds "
            f"NaN or infinite voxels ({int(bad.sum())} boxes do)"
        )


def _realistic_picks(plist, config, shape_zyx, source_angstrom, ratio, seed, shard):
    """The listed picks with the configured jitter and false positives, drawn from
    ``default_rng([seed, shard, 1])`` (the split's generator stays untouched)."""
    if config.jitter_angstrom == 0 and config.false_positive_fraction == 0:
        return plist
    if source_angstrom <= 0:
        raise InputError(
            "extraction.jitter_angstrom/false_positive_fraction: the tomogram's header has no "
            "voxel size to convert Å to voxels; set it in the header"
        )
    rng = np.random.default_rng([int(seed), int(shard), 1])
    picks = jitter_positions(plist, config.jitter_angstrom / source_angstrom, rng)
    wanted = int(round(config.false_positive_fraction * len(plist)))
    half_box = (config.box_size_px // 2) * ratio
    picks = add_false_positives(
        picks, wanted, shape_zyx[::-1], math.ceil(half_box) + 2, half_box, rng
    )
    if len(picks) - len(plist) < wanted:
        log.warning(
            "placed %d of %d false positives: the tomogram has too little room away from the "
            "listed particles",
            len(picks) - len(plist),
            wanted,
        )
    return picks


def open_tomogram(path: Path):
    """Memory-map a tomogram read-only. A header that breaks the MRC standard (common in older
    files, e.g. a bad map ID) is accepted with a logged warning if the data can still be read."""
    try:
        return mrcfile.mmap(path, mode="r", permissive=False)
    except ValueError as strict_error:
        invalid = InputError(f"{path}: not a valid MRC file ({strict_error})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # mrcfile repeats the problem as a RuntimeWarning
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except ValueError:
            raise invalid from strict_error
        if mrc.data is None:
            mrc.close()
            raise invalid from strict_error
        log.warning("%s: reading despite a non-standard MRC header (%s)", path, strict_error)
        return mrc


def _rescale_ratio(source_angstrom: float, config: ExtractionConfig, path: Path):
    """(output / tomogram voxel size, output voxel size in Å)."""
    if config.rescale_to_angstrom is None:
        if source_angstrom <= 0:
            log.warning("%s: header has no voxel size; writing 1.0 Å", path)
            return 1.0, 1.0
        return 1.0, source_angstrom
    if source_angstrom <= 0:
        raise InputError(
            f"{path}: header has no voxel size, so it cannot be rescaled to "
            f"rescale_to_angstrom = {config.rescale_to_angstrom}; set it in the header"
        )
    return config.rescale_to_angstrom / source_angstrom, config.rescale_to_angstrom


def _isotropic_voxel_size(mrc, path: Path) -> float:
    vs = mrc.voxel_size
    sizes = np.array([float(vs.x), float(vs.y), float(vs.z)])
    if sizes.max() > 0 and (sizes.max() - sizes.min()) > 1e-3 * sizes.max():
        raise InputError(
            f"{path}: voxel size (x, y, z) = {tuple(sizes.round(4))} Å is not isotropic; "
            "expected equal sizes (resample the tomogram first)"
        )
    return float(sizes[0])
