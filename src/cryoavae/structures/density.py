"""Atoms -> density map on a cubic grid, and MRC map I/O.

Conventions (shared with :mod:`cryoavae.sources.simulate`):

- Arrays are indexed ``(z, y, x)``, the MRC order: ``volume[k, j, i]`` is the voxel at
  ``x = i``, ``y = j``, ``z = k``. Atom positions and rotation matrices use ``(x, y, z)`` vectors.
- The box centre is voxel index ``d // 2`` on every axis (``d/2`` for even boxes: RELION's and the
  FFT's origin). The atoms' centre of mass (weighted by atomic number, like the density itself)
  sits exactly on that voxel's centre.
- The map is the sum over atoms of ``Z * gaussian(sigma)`` evaluated at voxel centres, each Gaussian
  normalised to unit integral, so ``volume.sum()`` is close to the total atomic number. Values are
  arbitrary units; the simulator z-scores every particle anyway.
- Resolution -> sigma: ``sigma = resolution / (pi * sqrt(2))`` (ChimeraX ``molmap``'s default
  ``sigmaFactor`` 0.225), i.e. the Gaussian's Fourier transform falls to ``1/e`` at spatial
  frequency ``1/resolution``. Each Gaussian is cut off at ``4 sigma`` (value ``e^-8``), so the map
  is exactly zero away from the structure.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Protocol

import mrcfile
import numpy as np

from cryoavae.core.atomic import atomic_path
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass

__all__ = [
    "DensityConfig",
    "atoms_to_density",
    "gaussian_sigma_angstrom",
    "read_map",
    "required_box_size",
    "write_map",
]

#: Gaussian cut-off in units of sigma.
TRUNCATE_SIGMAS = 4.0
#: Atoms splatted per chunk, so memory stays bounded for large complexes.
_ATOMS_PER_CHUNK = 4096


class Atoms(Protocol):
    """Anything with atom positions ``(n, 3)`` in Å (x, y, z) and atomic numbers ``(n,)``."""

    positions: np.ndarray
    atomic_numbers: np.ndarray


class DensityConfig(section_dataclass("density")):
    """How structures become maps (the ``density`` section): grid spacing, box edge and target
    resolution, with the schema's defaults and bounds."""


def gaussian_sigma_angstrom(resolution_angstrom: float) -> float:
    """Standard deviation (Å) of the per-atom Gaussian for a map at ``resolution_angstrom``."""
    return resolution_angstrom / (math.pi * math.sqrt(2.0))


def _centred_positions_px(atoms: Atoms, voxel_size_angstrom: float, name: str) -> tuple:
    """Atom positions (n, 3) in voxels relative to the weighted centre of mass, and weights (n,)."""
    positions = np.asarray(atoms.positions, dtype=np.float64)
    weights = np.asarray(atoms.atomic_numbers, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 3 or len(positions) == 0:
        raise InputError(f"{name}: expected atom positions of shape (n, 3), got {positions.shape}")
    if weights.shape != (len(positions),):
        raise InputError(
            f"{name}: {len(positions)} atom positions but atomic_numbers has shape {weights.shape}"
        )
    if not (np.isfinite(positions).all() and (weights > 0).all()):
        raise InputError(f"{name}: atom positions must be finite and atomic numbers positive")
    centre = (weights[:, None] * positions).sum(axis=0) / weights.sum()
    return (positions - centre) / voxel_size_angstrom, weights


def _window_half_width_px(config: DensityConfig) -> int:
    sigma_px = gaussian_sigma_angstrom(config.resolution_angstrom) / config.voxel_size_angstrom
    return max(1, math.ceil(TRUNCATE_SIGMAS * sigma_px))


def _required_box(positions_px: np.ndarray, config: DensityConfig) -> int:
    # Every touched voxel lies within |rint(p)| + W <= |p| + 0.5 + W of the centre on each axis;
    # keeping that radius <= d/2 - 1 also keeps the content inside the box under any rotation.
    radius_px = float(np.sqrt((positions_px**2).sum(axis=1)).max())
    reach_px = radius_px + 0.5 + _window_half_width_px(config)
    return 2 * (math.ceil(reach_px) + 1)


def required_box_size(atoms: Atoms, config: DensityConfig) -> int:
    """Smallest even box edge (voxels) that holds the structure's density under any rotation."""
    positions_px, _ = _centred_positions_px(atoms, config.voxel_size_angstrom, "structure")
    return _required_box(positions_px, config)


def atoms_to_density(atoms: Atoms, config: DensityConfig, name: str = "structure") -> np.ndarray:
    """Atomic-number-weighted Gaussians sampled at voxel centres: a ``(d, d, d)`` float32 map.

    The centre of mass goes to voxel ``(d//2, d//2, d//2)``; the array is indexed ``(z, y, x)``.
    Work is vectorised over atoms (a separable ``(2W+1)^3`` window each, summed with
    ``np.bincount``), in chunks so memory stays bounded.

    Raises:
        InputError: the atoms are malformed, or ``config.box_size_px`` is smaller than the box the
            structure ``name`` needs (the message gives that size).
    """
    positions_px, weights = _centred_positions_px(atoms, config.voxel_size_angstrom, name)
    d = int(config.box_size_px)
    need = _required_box(positions_px, config)
    if d < need:
        radius = float(np.sqrt((positions_px**2).sum(axis=1)).max()) * config.voxel_size_angstrom
        raise InputError(
            f"{name}: box_size_px is {d} but this structure (radius {radius:.0f} Å plus its "
            f"{config.resolution_angstrom:g} Å blur) needs at least {need} px at "
            f"{config.voxel_size_angstrom:g} Å/voxel; raise box_size_px or voxel_size_angstrom"
        )
    sigma_px = gaussian_sigma_angstrom(config.resolution_angstrom) / config.voxel_size_angstrom
    half = _window_half_width_px(config)
    offsets = np.arange(-half, half + 1)  # (m,)
    norm = 1.0 / ((2.0 * math.pi) ** 1.5 * sigma_px**3)
    c = d // 2
    flat = np.zeros(d**3, dtype=np.float64)
    for start in range(0, len(positions_px), _ATOMS_PER_CHUNK):
        p = positions_px[start : start + _ATOMS_PER_CHUNK]  # (a, 3) in (x, y, z)
        w = weights[start : start + _ATOMS_PER_CHUNK] * norm  # (a,)
        index = np.rint(p).astype(np.int64)[:, :, None] + offsets  # (a, 3, m) voxel offsets
        dist = index - p[:, :, None]  # (a, 3, m)
        g = np.exp(-0.5 * (dist / sigma_px) ** 2) * (np.abs(dist) <= TRUNCATE_SIGMAS * sigma_px)
        gx, gy, gz = g[:, 0], g[:, 1], g[:, 2]  # (a, m) each
        values = w[:, None, None, None] * gz[:, :, None, None] * gy[:, None, :, None]
        values = values * gx[:, None, None, :]  # (a, m, m, m) in (z, y, x) order
        ix, iy, iz = index[:, 0] + c, index[:, 1] + c, index[:, 2] + c  # (a, m) each
        flat_index = (iz[:, :, None, None] * d + iy[:, None, :, None]) * d + ix[:, None, None, :]
        flat += np.bincount(flat_index.ravel(), weights=values.ravel(), minlength=d**3)
    return flat.reshape(d, d, d).astype(np.float32)


def write_map(path: str | os.PathLike, volume: np.ndarray, voxel_size_angstrom: float) -> None:
    """Write a ``(d, h, w)`` volume as MRC (mode 2, float32) with the voxel size in the header."""
    volume = np.ascontiguousarray(volume, dtype=np.float32)
    if volume.ndim != 3:
        raise ValueError(f"write_map: expected a 3-D volume, got shape {volume.shape}")
    with atomic_path(path) as tmp:
        with mrcfile.new(tmp, overwrite=True) as mrc:
            mrc.set_data(volume)
            mrc.voxel_size = voxel_size_angstrom
            mrc.update_header_stats()


def read_map(path: str | os.PathLike) -> tuple[np.ndarray, float]:
    """Read an MRC volume: ``(volume (d, h, w) float32 indexed (z, y, x), voxel size in Å)``.

    Raises:
        InputError: the file is missing, not a valid MRC file, not 3-D, or has no (or an
            anisotropic) voxel size in its header.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: density map not found")
    try:
        with mrcfile.open(path, mode="r", permissive=False) as mrc:
            data = np.array(mrc.data, dtype=np.float32)
            voxel = mrc.voxel_size
            sizes = (float(voxel.x), float(voxel.y), float(voxel.z))
    except ValueError as exc:  # mrcfile's error for a corrupt header or truncated data
        raise InputError(f"{path}: not a valid MRC map ({exc})") from exc
    if data.ndim != 3:
        raise InputError(f"{path}: expected a 3-D map, found data of shape {data.shape}")
    bad = ~np.isfinite(data)
    if bad.any():
        z, y, x = np.argwhere(bad)[0]
        raise InputError(f"{path}: voxel (x, y, z) = ({x}, {y}, {z}) is not a finite number")
    if not sizes[0] > 0 or not np.allclose(sizes, sizes[0], rtol=1e-4):
        raise InputError(
            f"{path}: header voxel size is {sizes} Å; expected one positive size for all axes"
        )
    return data, sizes[0]
