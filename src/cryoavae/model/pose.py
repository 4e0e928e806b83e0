"""Rotations from a model's pose vector, in torch (batched, differentiable).

Conventions (shared with :mod:`cryoavae.model.vae`):

- Array axes are ``(y, x)`` in 2-D and ``(z, y, x)`` in 3-D; coordinate vectors are written in the
  reverse order, ``(x, y)`` / ``(x, y, z)``, so ``x`` is the last (fastest) array axis.
- Coordinates are in voxels relative to the box centre, the voxel with index ``box_size_px // 2``
  on every axis (the cryo-EM convention for even boxes).
- A rotation matrix ``R`` acts on column coordinate vectors: a point at ``c`` moves to ``R @ c``.
  In 2-D a positive angle turns ``+x`` towards ``+y`` (for an image shown with row 0 at the top,
  that is clockwise); in 3-D a positive rotation about an axis follows the right-hand rule
  (``+x`` towards ``+y`` about ``+z``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "ROTATION_6D_IDENTITY",
    "axis_angle_to_matrix",
    "pose_to_rotation",
    "quaternion_to_matrix",
    "rotation_2d",
    "rotation_6d_to_matrix",
]

#: The first two columns of the identity: a zero 6-D pose is offset by it, so it means no turn.
ROTATION_6D_IDENTITY = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])


def rotation_2d(cos_sin: torch.Tensor) -> torch.Tensor:
    """``(n, 2)`` of ``(cos a, sin a)`` -> ``(n, 2, 2)`` matrices turning ``+x`` towards ``+y``."""
    c, s = cos_sin.unbind(-1)
    return torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -2)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions ``(n, 4)`` as ``(w, x, y, z)``, normalised here -> ``(n, 3, 3)`` acting on
    ``(x, y, z)``."""
    w, x, y, z = F.normalize(q, dim=-1).unbind(-1)
    rows = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ]
    return torch.stack([torch.stack(r, -1) for r in rows], -2)


def axis_angle_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """Rotation vectors ``(n, 3)`` (axis times angle in radians, right-hand rule) -> ``(n, 3, 3)``.

    Rodrigues' formula with ``sin(t)/t`` and ``(1 - cos t)/t**2`` written through ``sinc`` so the
    gradient is finite at ``t = 0``.
    """
    t = v.norm(dim=-1)[:, None, None]  # (n, 1, 1)
    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack(
        [
            torch.stack([zero, -z, y], -1),
            torch.stack([z, zero, -x], -1),
            torch.stack([-y, x, zero], -1),
        ],
        -2,
    )  # (n, 3, 3), k @ c = v x c
    a = torch.sinc(t / math.pi)  # sin(t) / t
    b = 0.5 * torch.sinc(t / (2 * math.pi)) ** 2  # (1 - cos t) / t**2
    eye = torch.eye(3, dtype=v.dtype, device=v.device)
    return eye + a * k + b * (k @ k)


def rotation_6d_to_matrix(v: torch.Tensor) -> torch.Tensor:
    """``(n, 6)`` as two 3-vectors ``(a1, a2)`` -> ``(n, 3, 3)`` with columns ``b1, b2, b1 x b2``
    (Gram-Schmidt): continuous over all of SO(3), unlike every representation in 4 or fewer
    dimensions (Zhou et al., CVPR 2019, "On the continuity of rotation representations")."""
    a1, a2 = v[:, :3], v[:, 3:]
    b1 = F.normalize(a1, dim=-1)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    return torch.stack([b1, b2, torch.linalg.cross(b1, b2)], -1)


def pose_to_rotation(pose: torch.Tensor, ndim: int) -> torch.Tensor:
    """Decoder rotation ``(n, ndim, ndim)`` from a pose ``(n, p)``; a zero pose is the identity.

    2-D: ``p = 1`` is an angle in radians; ``p = 2`` is ``(cos a, sin a)`` (normalised here).
    3-D: ``p = 3`` is a rotation vector; ``p = 4`` is a quaternion ``(w, x, y, z)`` offset by the
    identity ``(1, 0, 0, 0)`` and normalised; ``p = 6`` is a 6-D rotation offset by the identity's
    first two columns (:func:`rotation_6d_to_matrix`). ``p = 0`` gives identities.
    """
    n, p = pose.shape
    if p == 0:
        return torch.eye(ndim, dtype=pose.dtype, device=pose.device).expand(n, ndim, ndim)
    if ndim == 2 and p == 1:
        return rotation_2d(torch.cat([pose.cos(), pose.sin()], -1))
    if ndim == 2 and p == 2:
        return rotation_2d(F.normalize(pose, dim=-1))
    if ndim == 3 and p == 3:
        return axis_angle_to_matrix(pose)
    if ndim == 3 and p == 4:
        identity = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=pose.dtype, device=pose.device)
        return quaternion_to_matrix(pose + identity)
    if ndim == 3 and p == 6:
        return rotation_6d_to_matrix(pose + ROTATION_6D_IDENTITY.to(pose))
    raise ValueError(f"pose_to_rotation: no rotation for pose_dims {p} in {ndim}-D")
