"""Where a particle sits in its tomogram, in the columns RELION 5 reads to re-extract it.

A particle cut out of a tomogram records (:mod:`cryoavae.sources.extract`):

- ``rlnTomoName``: the tomogram's name, which must equal the ``rlnTomoName`` of the tomogram in
  a RELION 5 project's ``tomograms.star`` (:func:`tomogram_name`);
- ``rlnCenteredCoordinateXAngst``, ``...YAngst``, ``...ZAngst``: the pick in Å from the
  tomogram's centre. RELION 5 turns them back into its pixels as ``centred / pixel + size / 2``
  with ``size / 2`` a float and voxels counted from 0 (``ParticleSet::
  getParticleCoordDecenteredPixel``, ``TomogramSet::loadTomogram``: ``centre = size / 2.0``, the
  ``+1`` of RELION 4 gone), so voxel ``i`` of an axis of ``n`` voxels of ``v`` Å sits at
  ``(i - n / 2) * v`` (:func:`centred_angstrom`). In Å the position is the same whatever the
  binning of the tomogram it was picked in (up to the half voxel that binning conventions
  place differently);
- ``cryoavaeTomogramVoxelSize``: that tomogram's voxel size (Å), which Warp 2 needs to turn an
  ``rlnOriginXAngst`` into the pixels of ``rlnCoordinateX`` (the pick in those voxels).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.particles.table import ORIGINS, read_star_blocks

__all__ = [
    "BOX_CENTRES",
    "CENTRED",
    "TOMOGRAM_VOXEL_SIZE",
    "TOMO_NAME",
    "centred_angstrom",
    "pick_from_box_centre",
    "positions_in",
    "recorded_offsets_px",
    "tomogram_name",
]

TOMO_NAME = "rlnTomoName"
CENTRED = tuple(f"rlnCenteredCoordinate{axis}Angst" for axis in "XYZ")
TOMOGRAM_VOXEL_SIZE = "cryoavaeTomogramVoxelSize"
#: where extraction centred each box (Å in the tomogram; a box sits on the voxel nearest its pick)
BOX_CENTRES = tuple(f"cryoavaeBoxCentre{axis}Angst" for axis in "XYZ")
PICKS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")


def centred_angstrom(
    coords_xyz: np.ndarray, size_xyz: tuple[int, int, int], voxel_size_angstrom: float
) -> np.ndarray:
    """RELION 5's centred coordinates ``(n, 3)`` Å of voxel positions ``coords_xyz`` ``(n, 3)``
    (0-based, x fastest) in a tomogram of ``size_xyz`` voxels (module docstring)."""
    centre = np.asarray(size_xyz, dtype=np.float64) / 2.0
    return (np.asarray(coords_xyz, dtype=np.float64).reshape(-1, 3) - centre) * voxel_size_angstrom


def positions_in(
    tomo_name: str,
    coords_xyz: np.ndarray,
    shape_zyx: tuple[int, ...],
    voxel_size_angstrom: float,
) -> dict:
    """The particle-table columns of particles picked at ``coords_xyz`` ``(n, 3)`` voxels of the
    tomogram ``tomo_name`` (:func:`tomogram_name` for a tomogram file and its pick list), of
    shape ``shape_zyx`` (as ``mrcfile`` gives it) (module docstring). A voxel size of 0 (a header
    without one) counts as the 1 Å that extraction then writes."""
    voxel = float(voxel_size_angstrom) if voxel_size_angstrom > 0 else 1.0
    coords = np.asarray(coords_xyz, dtype=np.float64).reshape(-1, 3)
    centred = centred_angstrom(coords, tuple(shape_zyx[::-1]), voxel)
    return {
        TOMO_NAME: np.full(len(coords), str(tomo_name), object),
        **{column: centred[:, axis] for axis, column in enumerate(CENTRED)},
        TOMOGRAM_VOXEL_SIZE: np.full(len(coords), voxel),
    }


def pick_from_box_centre(table: pd.DataFrame) -> np.ndarray | float:
    """How far ``(n, 3)`` Å each pick (``rlnCoordinate*``) lies from the centre of the box it
    was cut in, so that an offset measured in the box applies to the coordinates as picked:
    particle = box centre + offset = pick - (pick - box centre) + offset. 0 where the table does
    not say where the boxes were centred (boxes cut elsewhere)."""
    if not set(BOX_CENTRES) | set(PICKS) | {TOMOGRAM_VOXEL_SIZE} <= set(table.columns):
        return 0.0
    voxel = pd.to_numeric(table[TOMOGRAM_VOXEL_SIZE]).to_numpy(np.float64)[:, None]
    picked = table[list(PICKS)].apply(pd.to_numeric).to_numpy(np.float64) * voxel
    return picked - table[list(BOX_CENTRES)].apply(pd.to_numeric).to_numpy(np.float64)


def recorded_offsets_px(table: pd.DataFrame, voxel_size_angstrom: float) -> np.ndarray | None:
    """Where ``(n, 3)`` (x, y, z voxels) each particle's centre sits from its box's centre by the
    table's own record: RELION's origin (``rlnOrigin*Angst``, the pick minus the particle) and,
    for a box cut from a tomogram, the pick's offset from the voxel the box sits on
    (:func:`pick_from_box_centre`). None without origins; a row without one (a false positive)
    is taken as centred."""
    if not set(ORIGINS) <= set(table.columns):
        return None
    recorded = table[list(ORIGINS)].apply(pd.to_numeric).to_numpy(np.float64)
    return np.nan_to_num((pick_from_box_centre(table) - recorded) / voxel_size_angstrom)


def tomogram_name(tomogram_path: str | os.PathLike, particle_list_path: str | os.PathLike) -> str:
    """The tomogram's ``rlnTomoName``: the one a STAR pick list names, when it names one (as a
    RELION 5 or simulated tomogram's list does, so the name matches its ``tomograms.star``),
    else the tomogram file's stem (the name a list naming several tomograms is filtered by,
    :func:`cryoavae.particles.picks.read_star_locations`)."""
    stem = Path(tomogram_path).stem
    if Path(particle_list_path).suffix.lower() != ".star":
        return stem
    blocks = read_star_blocks(particle_list_path, what="particle list")
    for table in blocks.values():
        if isinstance(table, pd.DataFrame) and TOMO_NAME in table:
            names = table[TOMO_NAME].astype(str).unique()
            return str(names[0]) if len(names) == 1 else stem
    return stem
