"""The sample: particles of the study's classes in a slab of vitreous ice.

Conventions (shared by the package): density maps are indexed ``(z, y, x)`` and centred on voxel
``d // 2`` (:mod:`cryoavae.structures.density`); positions and rotation matrices act on ``(x, y,
z)``; a position names the voxel a particle's map centre sits on, 0-based, sub-voxel. The sample
array is laid out ``(z, x, y)`` (y fastest), the order in which the tilt geometry's matrices read it
(:mod:`.geometry`).

Potential. The maps hold heavy-atom atomic numbers per voxel. A protein's interior has
``HEAVY_Z_PER_A3`` of them per Å^3 (1.35 g/cm^3, 0.465 heavy-atom Z per dalton of protein,
hydrogens' mass included), so ``rho / HEAVY_Z_PER_A3`` is the fraction of a voxel the protein
fills. The sample's potential is the ice's ``V_ice`` everywhere except where protein displaces
it: ``V = V_ice (1 - occupancy) + V_protein rho / HEAVY_Z_PER_A3``, with ``occupancy =
min(1, rho / HEAVY_Z_PER_A3)``. The uniform ``V_ice`` itself is left out of the array: a
constant phase shift makes no contrast (its one effect, the thickness the electrons cross, is
the dose attenuation of :mod:`.imaging`). So each particle contributes ``contrast_potential``
(volts), which is positive where protein is denser than ice and integrates to
``(V_protein - V_ice)`` times the protein's volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from cryoavae.core.errors import InputError

__all__ = [
    "HEAVY_Z_PER_A3",
    "SamplePlan",
    "class_radii_px",
    "contrast_potential",
    "place_particles",
    "render_sample",
]

#: Heavy-atom Z per Å^3 inside a protein: 1.35 g/cm^3 = 0.813 Da/Å^3, times 0.465 Z/Da (an
#: average residue C5 N1.36 O1.5 S0.05 H7.9: 52.3 heavy-atom Z in 112.5 Da).
HEAVY_Z_PER_A3 = 1.35 * 0.60221 * 0.465
#: A class's radius encloses this fraction of its map's density (its packing sphere).
ENCLOSED_FRACTION = 0.99
_PLACEMENT_ROUNDS = 200
_RENDER_BATCH = 256


@dataclass(frozen=True)
class SamplePlan:
    """The particles of one sample; arrays share their first axis ``n``."""

    class_index: np.ndarray  # (n,) int64 into the study's classes
    positions_px: np.ndarray  # (n, 3) float64 (x, y, z) voxels, 0-based
    rotations: np.ndarray  # (n, 3, 3) RELION's A: the particle is the map rotated actively by A

    def __len__(self) -> int:
        return len(self.class_index)


def class_radii_px(maps: np.ndarray) -> np.ndarray:
    """Per map ``(c, d, d, d)``, the radius (voxels) about voxel ``d // 2`` that encloses
    ``ENCLOSED_FRACTION`` of its density: ``(c,)`` float64."""
    maps = np.asarray(maps, dtype=np.float64)
    d = maps.shape[-1]
    offsets = np.indices((d, d, d)).reshape(3, -1) - d // 2
    radius = np.sqrt((offsets**2).sum(axis=0))  # (d^3,)
    order = np.argsort(radius, kind="stable")
    mass = np.clip(maps.reshape(len(maps), -1)[:, order], 0.0, None)
    cumulative = np.cumsum(mass, axis=1)
    total = cumulative[:, -1:]
    if (total <= 0).any():
        raise InputError("a density map is empty; cannot place its particles in a tomogram")
    first = (cumulative >= ENCLOSED_FRACTION * total).argmax(axis=1)
    return radius[order][first]


def contrast_potential(
    maps: np.ndarray,
    voxel_size_angstrom: float,
    ice_potential_v: float,
    protein_potential_v: float,
) -> np.ndarray:
    """Each class's potential relative to the ice it displaces, in volts: ``(c, d, d, d)``
    float32 (see the module docstring). ``maps`` hold atomic numbers per voxel."""
    rho = np.asarray(maps, dtype=np.float64) / float(voxel_size_angstrom) ** 3  # Z per Å^3
    filled = rho / HEAVY_Z_PER_A3
    return (protein_potential_v * filled - ice_potential_v * np.minimum(filled, 1.0)).astype(
        np.float32
    )


def place_particles(
    radii_px: np.ndarray,
    size_xyz: tuple[int, int, int],
    margin_px: np.ndarray,
    gap_px: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Random positions ``(n, 3)`` (x, y, z) for spheres of ``radii_px`` ``(n,)`` that do not
    overlap: every two centres at least ``r_i + r_j + gap_px`` apart.

    Each centre lies in ``[margin, size - 1 - margin]`` on every axis (``margin_px`` ``(n,)``).
    Random sequential addition in rounds, largest spheres first: every round proposes a uniform
    position for each sphere still to place and keeps those clear of the placed ones and of the
    earlier proposals of the round (two k-d trees, no loop over particles).

    Raises:
        InputError: the spheres do not fit after a few hundred rounds (too crowded).
    """
    radii = np.asarray(radii_px, dtype=np.float64)
    n = len(radii)
    size = np.asarray(size_xyz, dtype=np.float64)
    lo = np.asarray(margin_px, dtype=np.float64)[:, None] * np.ones(3)
    hi = size - 1.0 - lo
    if (hi < lo).any():
        raise InputError(
            f"tomograms: a {tuple(int(s) for s in size)}-voxel sample (x, y, z) is too small for "
            f"particles that need {float(lo.max()):.0f} voxels from each face; raise "
            "tomograms.size_x_px/size_y_px/size_z_px"
        )
    positions = np.full((n, 3), np.nan)
    placed = np.zeros(n, dtype=bool)
    order = np.argsort(-radii, kind="stable")
    for _ in range(_PLACEMENT_ROUNDS):
        todo = order[~placed[order]]
        if len(todo) == 0:
            break
        candidates = rng.uniform(lo[todo], hi[todo])  # (m, 3)
        ok = np.ones(len(todo), dtype=bool)
        r = radii[todo]
        if placed.any():
            done = np.flatnonzero(placed)
            reach = r.max() + radii[done].max() + gap_px
            pairs = cKDTree(candidates).sparse_distance_matrix(
                cKDTree(positions[done]), reach, output_type="ndarray"
            )
            hit = pairs["v"] < r[pairs["i"]] + radii[done][pairs["j"]] + gap_px
            ok[pairs["i"][hit]] = False
        pairs = cKDTree(candidates).query_pairs(2 * r.max() + gap_px, output_type="ndarray")
        if len(pairs):
            i, j = pairs.min(axis=1), pairs.max(axis=1)  # i proposed before j this round
            distance = np.linalg.norm(candidates[i] - candidates[j], axis=1)
            hit = (distance < r[i] + r[j] + gap_px) & ok[i]
            ok[j[hit]] = False
        positions[todo[ok]] = candidates[ok]
        placed[todo[ok]] = True
    if not placed.all():
        volume = float(np.prod(size))
        fraction = float((4.0 / 3.0 * math.pi * radii**3).sum()) / volume
        raise InputError(
            f"tomograms: placed only {int(placed.sum())} of {n} particles without overlap in a "
            f"{tuple(int(s) for s in size)}-voxel sample (their spheres would fill "
            f"{fraction:.0%} of it); lower tomograms.particles_per_class or "
            "particle_gap_angstrom, or enlarge the sample"
        )
    return positions


def render_sample(
    potentials: np.ndarray, plan: SamplePlan, size_xyz: tuple[int, int, int]
) -> torch.Tensor:
    """The sample's contrast potential: every particle's map rotated by its ``A`` and shifted
    to its sub-voxel position, summed into a ``(Z, X, Y)`` float32 tensor (volts).

    Particle ``p`` puts ``potentials[c_p](A_p^T (r - c - t_p) + c)`` at box voxel ``r`` (box
    centre ``c = d // 2``, ``t_p`` the position's sub-voxel part; trilinear interpolation),
    the box's centre on voxel ``round(position)``. Voxels outside the sample are dropped.
    Batched over particles (``torch.nn.functional.grid_sample`` and ``index_add_``).
    """
    maps = torch.from_numpy(np.ascontiguousarray(potentials, dtype=np.float32))[:, None]
    d = maps.shape[-1]
    size_x, size_y, size_z = (int(s) for s in size_xyz)
    out = torch.zeros(size_z * size_x * size_y, dtype=torch.float32)
    zyx = torch.stack(torch.meshgrid(*[torch.arange(d)] * 3, indexing="ij"), dim=-1)
    offsets = zyx.flip(-1).to(torch.float64) - d // 2  # (d, d, d, 3) box offsets (x, y, z)
    rounded = np.rint(plan.positions_px)
    for start in range(0, len(plan), _RENDER_BATCH):
        rows = slice(start, start + _RENDER_BATCH)
        a = torch.from_numpy(plan.rotations[rows])  # (b, 3, 3)
        shift = torch.from_numpy(plan.positions_px[rows] - rounded[rows])  # (b, 3)
        # source = A^T (r - t) + c, in grid_sample's [-1, 1] (align_corners: -1 is voxel 0)
        source = (
            torch.einsum("bji,zyxj->bzyxi", a, offsets)
            - torch.einsum("bji,bj->bi", a, shift)[:, None, None, None, :]
        )
        grid = ((source + d // 2) * (2.0 / (d - 1)) - 1.0).to(torch.float32)
        cls = torch.from_numpy(plan.class_index[rows])
        boxes = torch.nn.functional.grid_sample(
            maps[cls], grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )[:, 0]  # (b, d, d, d) indexed (z, y, x)
        corner = torch.from_numpy(rounded[rows].astype(np.int64) - d // 2)  # (b, 3) x, y, z
        x = corner[:, 0, None] + torch.arange(d)  # (b, d) each
        y = corner[:, 1, None] + torch.arange(d)
        z = corner[:, 2, None] + torch.arange(d)
        inside = (
            ((z >= 0) & (z < size_z))[:, :, None, None]
            & ((y >= 0) & (y < size_y))[:, None, :, None]
            & ((x >= 0) & (x < size_x))[:, None, None, :]
        )
        flat = (z[:, :, None, None] * size_x + x[:, None, None, :]) * size_y + y[:, None, :, None]
        out.index_add_(0, flat[inside], boxes[inside])
    return out.reshape(size_z, size_x, size_y)
