"""Orientations: RELION's Euler angles and the rotation matrices they stand for (one convention).

Every table in the pipeline stores a particle's orientation as RELION's ``rlnAngleRot``,
``rlnAngleTilt``, ``rlnAnglePsi`` (degrees, ZYZ). They name RELION's matrix

    ``A = Rz(-psi) Ry(-tilt) Rz(-rot)``    (``Euler_angles2matrix`` in RELION's ``euler.cpp``)

acting on ``(x, y, z)`` column vectors, which equals
``scipy.spatial.transform.Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)
.as_matrix().T``. RELION's projector reads the reference at ``A^T r`` for particle coordinate
``r``: **a particle with these angles is the reference rotated actively by A** (what sat at
offset ``u`` from the box centre sits at ``A u``), and rotating the particle by ``A^T`` brings it
back onto the reference. The simulator records the angles of the ``A`` it applied
(:mod:`cryoavae.simulate.rotation`); evaluation compares poses against the same ``A``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["matrices_to_relion_angles", "relion_angles_to_matrices"]


def relion_angles_to_matrices(angles_deg: np.ndarray) -> np.ndarray:
    """RELION ``(rot, tilt, psi)`` in degrees ``(..., 3)`` -> RELION matrices ``A (..., 3, 3)``."""
    angles = np.deg2rad(np.asarray(angles_deg, dtype=np.float64))
    ca, cb, cg = np.cos(angles[..., 0]), np.cos(angles[..., 1]), np.cos(angles[..., 2])
    sa, sb, sg = np.sin(angles[..., 0]), np.sin(angles[..., 1]), np.sin(angles[..., 2])
    rows = [
        [cg * cb * ca - sg * sa, cg * cb * sa + sg * ca, -cg * sb],
        [-sg * cb * ca - cg * sa, -sg * cb * sa + cg * ca, sg * sb],
        [sb * ca, sb * sa, cb],
    ]
    return np.stack([np.stack(row, axis=-1) for row in rows], axis=-2)


def matrices_to_relion_angles(matrices: np.ndarray) -> np.ndarray:
    """RELION matrices ``(..., 3, 3)`` -> ``(rot, tilt, psi)`` in degrees, ``tilt`` in [0, 180].

    At ``tilt`` 0 or 180 only ``rot + psi`` (or ``psi - rot``) is defined; like RELION we then set
    ``rot = 0``.
    """
    a = np.asarray(matrices, dtype=np.float64)
    sin_tilt = np.hypot(a[..., 0, 2], a[..., 1, 2])
    tilt = np.arctan2(sin_tilt, a[..., 2, 2])
    rot = np.arctan2(a[..., 2, 1], a[..., 2, 0])
    psi = np.arctan2(a[..., 1, 2], -a[..., 0, 2])
    gimbal = sin_tilt < 1e-9
    upright = a[..., 2, 2] > 0
    psi_gimbal = np.where(
        upright,
        np.arctan2(-a[..., 1, 0], a[..., 0, 0]),
        np.arctan2(a[..., 1, 0], -a[..., 0, 0]),
    )
    rot = np.where(gimbal, 0.0, rot)
    psi = np.where(gimbal, psi_gimbal, psi)
    tilt = np.where(gimbal, np.where(upright, 0.0, math.pi), tilt)
    return np.rad2deg(np.stack([rot, tilt, psi], axis=-1))
