"""Ground truth of a simulated tomogram: SHREC'21 ``particle_locations.txt`` and a RELION STAR.

Both use the conventions of :mod:`cryoavae.particles.picks`, which reads them back: coordinates
in voxels, 0-based, naming the voxel a particle's centre sits on (sub-voxel here); RELION
angles ``(rot, tilt, psi)`` of the matrix ``A`` that carries the class map onto the particle
(:mod:`cryoavae.geometry.rotations`). The SHREC file's three angles are those its reader turns back
into the same RELION angles (static-axis ZXZ of ``A^T``, as
:func:`cryoavae.particles.picks.shrec_angles_to_relion` reads them).

The STAR table also carries RELION 5's centred coordinates in Å
(``rlnCenteredCoordinateXAngst`` ...: the offset from the tomogram's centre ``size / 2`` times the
voxel size, :func:`cryoavae.particles.positions.centred_angstrom`) and the tomogram's name.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from cryoavae import particles as P
from cryoavae.core.atomic import write_text_atomic
from cryoavae.geometry.rotations import matrices_to_relion_angles
from cryoavae.particles.positions import CENTRED, centred_angstrom

__all__ = ["truth_table", "write_particle_locations", "write_truth_star"]

COORDINATES = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")


def truth_table(
    tomogram_name: str,
    class_names: list[str],
    class_index: np.ndarray,
    positions_px: np.ndarray,
    rotations: np.ndarray,
    size_xyz: tuple[int, int, int],
    voxel_size_angstrom: float,
) -> pd.DataFrame:
    """One row per particle: tomogram, coordinates (voxels and centred Å), angles, class."""
    positions = np.asarray(positions_px, dtype=np.float64).reshape(-1, 3)
    angles = matrices_to_relion_angles(rotations).reshape(-1, 3)
    columns = {"rlnTomoName": [tomogram_name] * len(positions)}
    columns.update({name: np.round(positions[:, a], 3) for a, name in enumerate(COORDINATES)})
    centred = centred_angstrom(positions, size_xyz, voxel_size_angstrom)
    columns.update({name: np.round(centred[:, a], 2) for a, name in enumerate(CENTRED)})
    columns.update({name: np.round(angles[:, a], 4) + 0.0 for a, name in enumerate(P.ANGLES)})
    columns[P.CLASS_NUMBER] = np.asarray(class_index, dtype=np.int64) + 1
    columns[P.CLASS_NAME] = np.asarray(class_names, dtype=object)[np.asarray(class_index)]
    return pd.DataFrame(columns)


def write_truth_star(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """The truth table as a STAR file (one ``particles`` block), atomically."""
    P.write_star_blocks(path, {"particles": table}, "cryoavae simulated tomogram: ground truth")


def write_particle_locations(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """SHREC'21 ``particle_locations.txt``: ``class x y z a0 a1 a2`` per particle."""
    angles = table[list(P.ANGLES)].to_numpy(dtype=np.float64)
    matrices = Rotation.from_euler("ZYZ", angles, degrees=True)  # = A^T (orientations.py)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Gimbal lock", category=UserWarning)
        zxz = matrices.as_euler("zxz", degrees=True) if len(angles) else np.empty((0, 3))
    xyz = table[list(COORDINATES)].to_numpy(dtype=np.float64)
    names = table[P.CLASS_NAME].astype(str).to_numpy()
    lines = [
        f"{name} {x:.3f} {y:.3f} {z:.3f} {a0:.4f} {a1:.4f} {a2:.4f}"
        for name, (x, y, z), (a0, a1, a2) in zip(names, xyz, zxz, strict=True)
    ]
    write_text_atomic(path, "".join(line + "\n" for line in lines))
