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
(:mod:`cryoavae.geometry.volume_rotation`); evaluation compares poses against the same ``A``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from cryoavae.geometry.point_groups import symmetry_group

__all__ = [
    "align_rotations",
    "geodesic_deg",
    "matrices_to_relion_angles",
    "nearest_rotation",
    "random_rotations",
    "relion_angles_to_matrices",
]


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


def geodesic_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (degrees) of the rotation taking ``b`` to ``a``, for matrices ``(..., 3, 3)``."""
    cos = (np.einsum("...ij,...ij->...", a, b) - 1.0) / 2.0  # trace(a^T b) = 1 + 2 cos t
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def nearest_rotation(m: np.ndarray) -> np.ndarray:
    """The rotation nearest (Frobenius) to each matrix ``(..., 3, 3)``: SVD with det = +1."""
    u, _, vt = np.linalg.svd(m)
    flip = np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[..., :, -1] *= flip[..., None]
    return u @ vt


#: particles within this angle of a candidate frame (modulo symmetry) agree with it; the frame is
#: fitted to the particles that agree with the one most of them agree with
FRAME_INLIER_DEG = 30.0
FRAME_CANDIDATES = 256  # particles whose own frame is tried as the seed of the fit (spread evenly)


def align_rotations(
    predicted: np.ndarray,
    true: np.ndarray,
    symmetry: str | np.ndarray | None = None,
    iterations: int = 8,
    inlier_deg: float = FRAME_INLIER_DEG,
) -> tuple[np.ndarray, np.ndarray]:
    """The one rotation ``Q`` that maps a model's frame onto the reference's, and each
    particle's remaining error.

    A model's canonical frame is its own: a particle it sees as ``P_i`` (reference rotated
    actively by ``P_i``) is ``A_i = P_i Q`` in the reference frame. ``Q`` is the frame most
    particles agree on, not a compromise between all of them: a least-squares fit over every
    particle is pulled towards a group matched consistently wrong (a third of a class turned
    by 125° by a near-symmetric template, say) and then counts every right particle tens of
    degrees off, which also turns their class average away from the map. So each particle's own
    frame ``P_i^T A_i`` is a candidate (:data:`FRAME_CANDIDATES` of them, spread evenly); the one
    with the most particles within ``inlier_deg`` of it seeds the fit, which minimises the
    chordal distance ``sum_i |P_i Q - A_i S_i|^2`` over the particles within ``inlier_deg`` of
    the current ``Q`` (orthogonal Procrustes; all particles when fewer than 3 are), alternating
    with each particle's symmetry copy ``S_i`` of the molecule's point group. Returns ``Q``
    ``(3, 3)`` and the geodesic errors (degrees) ``(n,)`` of every particle.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    group = symmetry_group(symmetry)  # (k, 3, 3)
    candidates = np.einsum("nij,kjl->nkil", true, group)  # (n, k, 3, 3): A_i S
    q = _consensus_frame(predicted, candidates, inlier_deg)
    fitted_on = None  # the symmetry copies and inliers the current q was fitted on
    for _ in range(iterations):
        errors = geodesic_deg((predicted @ q)[:, None], candidates)  # (n, k)
        choice = np.argmin(errors, axis=1)
        inliers = errors[np.arange(len(true)), choice] <= inlier_deg
        if inliers.sum() < 3:
            inliers[:] = True
        if fitted_on is not None and all(map(np.array_equal, fitted_on, (choice, inliers))):
            break
        fitted_on = (choice, inliers)
        target = candidates[np.arange(len(true)), choice][inliers]  # (m, 3, 3)
        q = nearest_rotation(np.einsum("nji,njk->ik", predicted[inliers], target))
    errors = geodesic_deg((predicted @ q)[:, None], candidates).min(axis=1)
    return q, errors


def _consensus_frame(predicted: np.ndarray, candidates: np.ndarray, inlier_deg: float):
    """Of the particles' own frames ``P_c^T A_c`` (:data:`FRAME_CANDIDATES`, spread evenly over
    the particles), the one the most particles agree with: ``P_j Q_c`` within ``inlier_deg`` of
    some ``A_j S`` (a trace test, in chunks of seeds)."""
    n = len(predicted)
    if n == 0:
        return np.eye(3)
    seeds = np.unique(np.linspace(0, n - 1, min(n, FRAME_CANDIDATES)).round().astype(np.int64))
    frames = np.einsum("nji,njk->nik", predicted[seeds], candidates[seeds, 0])  # (s, 3, 3)
    least_trace = 1.0 + 2.0 * math.cos(math.radians(inlier_deg))
    support = np.empty(len(seeds), dtype=np.int64)
    chunk = max(1, 2**22 // (n * candidates.shape[1] * 9))
    for start in range(0, len(seeds), chunk):
        seen = np.einsum("nij,sjk->snik", predicted, frames[start : start + chunk])  # P_j Q_c
        trace = np.einsum("snij,nkij->snk", seen, candidates)  # tr((P_j Q_c)^T A_j S)
        support[start : start + chunk] = (trace.max(axis=2) >= least_trace).sum(axis=1)
    return frames[int(np.argmax(support))]


def random_rotations(n: int, rng: np.random.Generator, max_angle_deg: float = 180.0) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)`` drawn uniformly (Haar measure) from SO(3), or, with
    ``max_angle_deg < 180``, from the rotations by at most that angle.

    The restricted draw is the Haar measure confined to that ball around the identity: a
    uniformly random axis, and an angle ``t`` with density proportional to ``1 - cos t`` (drawn
    by inverting its distribution function ``t - sin t``), so the rotations are spread evenly,
    not crowded near the identity as a uniform angle would crowd them.
    """
    if not 0 <= max_angle_deg <= 180:
        raise ValueError(f"max_angle_deg is {max_angle_deg}; expected a value in [0, 180]")
    if n == 0:
        return np.empty((0, 3, 3))
    if max_angle_deg == 180:
        return Rotation.random(n, rng=rng).as_matrix()
    t_max, u = math.radians(max_angle_deg), rng.random(n)
    if t_max < 1e-3:  # t - sin t = t^3 / 6 to 1e-7 relative: invert the cube directly
        angles = t_max * np.cbrt(u)
    else:
        grid = np.linspace(0.0, t_max, 4097)
        cdf = grid - np.sin(grid)
        angles = np.interp(u, cdf / cdf[-1], grid)
    axes = rng.standard_normal((n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    return Rotation.from_rotvec(axes * angles[:, None]).as_matrix()
