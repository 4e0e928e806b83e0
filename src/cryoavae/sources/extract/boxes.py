"""Boxes cut out of a tomogram: gathered from a view, read in slabs, resampled, normalised.

A box of ``b`` voxels puts the particle at index ``b // 2`` along each axis (the FFT centre, as in
the simulated maps): it covers ``[c - b // 2, c - b // 2 + b)``. Volumes are ``(z, y, x)``; pick
positions ``(x, y, z)`` voxels (:mod:`cryoavae.particles.picks`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

_CHUNK_VOXELS = 1 << 23  # ~32 MB of float32 per chunk of boxes
_SLAB_VOXELS = 1 << 25  # ~128 MB of float32 per slab read from an array that is not in memory


@dataclass
class Tomogram:
    """A tomogram as extraction reads it. ``data`` ``(z, y, x)``: a numpy array or memory map
    (boxes gathered from a view of it), or any array read by slicing, such as a Zarr array (read
    slab by slab, never whole); ``voxel_size_angstrom`` (0: unknown); ``name`` for messages;
    ``known_mean`` when it is known without a pass over the data (an MRC header's ``dmean``).
    """

    data: Any
    voxel_size_angstrom: float
    name: str
    known_mean: float | None = None

    def mean(self) -> float:
        """The mean voxel value (what ``edge: pad`` fills with), computed once when unknown."""
        if self.known_mean is None:
            self.known_mean = volume_mean(self.data)
        return self.known_mean


def cut_boxes(
    volume: np.ndarray, centres_zyx: np.ndarray, box_size_px: int, fill_value: float | None
) -> np.ndarray:
    """Boxes ``(n, b, b, b)`` from ``volume`` ``(Z, Y, X)`` around integer ``centres_zyx`` (n, 3).

    The centre lands at index ``b // 2``. Boxes inside the volume are gathered in one fancy index
    into a ``sliding_window_view`` of it (no copy of the tomogram, contiguous rows read from the
    memory map); boxes crossing the edge read ``fill_value`` outside (an index grid, clipped and
    masked). With ``fill_value`` None every box must lie inside. A ``volume`` that is no numpy
    array (a Zarr array) is read in slabs of whole planes (:func:`cut_boxes_in_slabs`).
    """
    centres = np.asarray(centres_zyx, dtype=np.int64).reshape(-1, 3)
    if not isinstance(volume, np.ndarray):
        return cut_boxes_in_slabs(volume, centres, box_size_px, fill_value)
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


def cut_boxes_in_slabs(
    volume, centres_zyx: np.ndarray, box_size_px: int, fill_value: float | None
) -> np.ndarray:
    """:func:`cut_boxes` from an array read by slicing (a Zarr array): the boxes in order of z,
    grouped into slabs of whole planes at most ``_SLAB_VOXELS`` large (at least one box deep),
    each slab read once and cut in memory. A slab spans every plane its boxes read that lies in
    the volume, so a box crosses a slab's face only where it crosses the volume's."""
    centres = np.asarray(centres_zyx, dtype=np.int64).reshape(-1, 3)
    b = box_size_px
    depth = volume.shape[0]
    deepest = max(b, _SLAB_VOXELS // max(1, int(np.prod(volume.shape[1:]))))
    order = np.argsort(centres[:, 0], kind="stable")
    first = centres[order, 0] - b // 2  # the first plane each box reads, ascending
    out = np.empty((len(centres), b, b, b), dtype=np.float32)
    start = 0
    while start < len(order):
        stop = start + int(np.searchsorted(first[start:], first[start] + deepest - b, "right"))
        z0 = int(np.clip(first[start], 0, depth - 1))
        z1 = int(np.clip(first[stop - 1] + b, z0 + 1, depth))
        slab = np.asarray(volume[z0:z1], dtype=np.float32)
        rows = order[start:stop]
        out[rows] = cut_boxes(slab, centres[rows] - np.array([z0, 0, 0]), b, fill_value)
        start = stop
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
    tomogram: Tomogram, coords_xyz: np.ndarray, box_size_px: int, ratio: float, edge: str
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(m, b, b, b)`` for the particles kept by the ``edge`` policy, and their indices.

    ``coords_xyz`` (n, 3) voxel positions in ``tomogram``; ``ratio`` output / tomogram voxel size
    (1 = cut without resampling, each box centred on the voxel nearest its position: see
    :func:`box_centres_xyz`). A box is inside when every voxel it reads lies in the tomogram
    (with the interpolation margin when resampling); ``edge="pad"`` keeps the others whose centre
    lies in the tomogram, filled with the tomogram's mean.
    """
    volume = tomogram.data
    b = box_size_px
    exact = _exact(ratio)
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
            fill = tomogram.mean()
    if len(keep) == 0:
        return np.empty((0, b, b, b), dtype=np.float32), keep
    if exact:
        return cut_boxes(volume, rounded[keep], b, fill), keep
    return resample_boxes(volume, centres_zyx[keep], b, ratio, fill), keep


def box_centres_xyz(coords_xyz: np.ndarray, ratio: float) -> np.ndarray:
    """Where :func:`cut_particles` centres each box ``(n, 3)``, voxels x, y, z: the voxel nearest
    the position when it cuts without resampling, the position itself when it resamples. A shift
    measured inside a box is measured from here, not from the listed position."""
    coords = np.asarray(coords_xyz, dtype=np.float64)
    return np.rint(coords) if _exact(ratio) else coords


def _exact(ratio: float) -> bool:
    return abs(ratio - 1.0) < 1e-6


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


def volume_mean(volume) -> float:
    """Mean of a ``(z, y, x)`` volume read in slabs of z (so a large tomogram, memory-mapped or
    in Zarr, is never loaded whole)."""
    total = 0.0
    step = max(1, (1 << 24) // max(1, int(np.prod(volume.shape[1:]))))
    for z in range(0, volume.shape[0], step):
        total += float(np.sum(np.asarray(volume[z : z + step]), dtype=np.float64))
    return total / max(1, int(np.prod(volume.shape)))
