"""Map cross-correlation: how alike two density maps are, maximised over rotations."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import random_rotations


def _centre_of_mass_normalised(maps: torch.Tensor) -> torch.Tensor:
    """Centre of mass of each map (positive part) in affine_grid coordinates, (n, 3) as (x, y, z).

    maps: (n, d, d, d) indexed [z, y, x]. affine_grid's normalised coordinate of voxel k along an
    axis of length d is (2k + 1)/d - 1 (align_corners=False).
    """
    n, d = maps.shape[0], maps.shape[-1]
    weights = maps.clamp(min=0)
    total = weights.sum(dim=(1, 2, 3))
    coords = (2 * torch.arange(d, dtype=maps.dtype) + 1) / d - 1  # (d,)
    com_z = (weights.sum(dim=(2, 3)) * coords).sum(1)
    com_y = (weights.sum(dim=(1, 3)) * coords).sum(1)
    com_x = (weights.sum(dim=(1, 2)) * coords).sum(1)
    com = torch.stack([com_x, com_y, com_z], dim=1) / total.clamp(min=1e-30)[:, None]
    return torch.where(total[:, None] > 0, com, torch.zeros(n, 3, dtype=maps.dtype))


def _unit_rows(flat: torch.Tensor) -> torch.Tensor:
    """Rows (..., v) made zero-mean and unit-norm, so a dot product is a Pearson correlation."""
    flat = flat - flat.mean(dim=-1, keepdim=True)
    return flat / flat.norm(dim=-1, keepdim=True).clamp(min=1e-30)


def _grid(rotations: torch.Tensor, d: int) -> torch.Tensor:
    """Sampling grid (r, d, d, d, 3) that rotates a cube of edge d about its centre.

    rotations: (r, 3, 3) acting on (x, y, z) in grid_sample's normalised coordinates (the same
    scale on every axis for a cube, so these are true rotations). Built directly rather than with
    affine_grid, which is ~2x slower on CPU for this.
    """
    c = (2 * torch.arange(d, dtype=rotations.dtype) + 1) / d - 1
    z, y, x = torch.meshgrid(c, c, c, indexing="ij")
    base = torch.stack([x, y, z], dim=-1).reshape(-1, 3)  # (d^3, 3)
    return (base @ rotations.transpose(1, 2)).reshape(-1, d, d, d, 3)


def _centred(vols: torch.Tensor) -> torch.Tensor:
    """Each map (n, d, d, d) resampled so its centre of mass (positive density) sits at the box
    centre: (n, 1, d, d, d)."""
    shift = _centre_of_mass_normalised(vols)[:, None, None, None, :]
    identity = _grid(torch.eye(3)[None], vols.shape[-1])
    return F.grid_sample(
        vols[:, None], identity + shift, mode="bilinear", padding_mode="zeros", align_corners=False
    )


def _check_maps(maps: np.ndarray, what: str) -> np.ndarray:
    maps = np.asarray(maps)
    if maps.ndim != 4 or len(set(maps.shape[1:])) != 1:
        raise InputError(f"{what}: maps must be (n, d, d, d); got shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise InputError(f"{what}: maps hold NaN or infinite values")
    return maps


def identity_and_random_rotations(n_rotations: int, seed: int) -> np.ndarray:
    """The identity and ``n_rotations - 1`` uniform random rotations from ``seed``: (r, 3, 3)."""
    if n_rotations < 1:
        raise InputError(f"affinity.map_cc_rotations: {n_rotations!r} is not an integer >= 1")
    rng = np.random.default_rng(seed)
    return np.concatenate([np.eye(3)[None], random_rotations(n_rotations - 1, rng)])


def correlation_over_rotations(
    moving: np.ndarray, fixed: np.ndarray, rotations: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of each ``moving`` map turned by each of ``rotations`` ``(r, 3, 3)``
    with each ``fixed`` map, maximised over the rotations: the best ``(m, f)`` and the index of
    the rotation that gave it ``(m, f)``.

    Both sets ``(n, d, d, d)`` on one voxel grid are first resampled so that their centres of
    mass (positive density) sit at the box centre, so translations do not count. Trilinear
    resampling, zero outside the box. All moving maps share each rotated grid (maps as channels
    of one grid_sample call), and memory stays below ~64 MB of samples per step.
    """
    moving_np = _check_maps(moving, "correlation_over_rotations")
    fixed_np = _check_maps(fixed, "correlation_over_rotations")
    rotations_t = torch.as_tensor(np.asarray(rotations), dtype=torch.float32)  # (r, 3, 3)
    with torch.no_grad():
        vols = torch.as_tensor(moving_np, dtype=torch.float32)
        n, d = vols.shape[0], vols.shape[-1]
        centred = _centred(vols)
        reference = _unit_rows(_centred(torch.as_tensor(fixed_np, dtype=torch.float32)).flatten(1))
        channels = centred[:, 0][None]  # (1, n, d, d, d): every map sampled on each grid at once
        best = torch.full((n, len(reference)), -1.0)
        where = torch.zeros((n, len(reference)), dtype=torch.long)
        chunk = max(1, 2**24 // (n * d**3))
        for start in range(0, len(rotations_t), chunk):
            r = rotations_t[start : start + chunk]
            grid = _grid(r, d).reshape(1, len(r) * d, d, d, 3)
            moved = F.grid_sample(
                channels, grid, mode="bilinear", padding_mode="zeros", align_corners=False
            )  # (1, n, r*d, d, d)
            moved = _unit_rows(moved.reshape(n, len(r), d**3))
            top = torch.einsum("irv,jv->irj", moved, reference).max(dim=1)  # over r: (n, f)
            better = top.values > best
            where = torch.where(better, top.indices + start, where)
            best = torch.maximum(best, top.values)
    return best.double().numpy(), where.numpy()


def map_cc_similarity(maps: np.ndarray, n_rotations: int, seed: int) -> np.ndarray:
    """Normalised cross-correlation of density maps, maximised over rotations: (n, n).

    :func:`correlation_over_rotations` of the maps with themselves over
    :func:`identity_and_random_rotations`; the result takes the larger of (i, j) and (j, i), so it
    is symmetric with a unit diagonal.
    """
    maps = _check_maps(maps, "affinity")
    cc = correlation_over_rotations(maps, maps, identity_and_random_rotations(n_rotations, seed))[0]
    cc = np.maximum(cc, cc.T)
    np.fill_diagonal(cc, 1.0)
    return np.clip(cc, -1.0, 1.0)
