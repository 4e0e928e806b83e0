"""The rotations a search tries: a near-uniform grid over SO(3) and the templates turned by it,
lattices around a rotation, and the peak of a quadratic fitted to a lattice's scores.

Rotations near the identity are written as rotation vectors (axis times angle, radians); a
lattice ``L`` around a particle's current best ``B`` is the set ``B @ exp(l)``, so each ``l`` turns
the template about its own axes.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cryoavae.orientation.fourier import Band, RotatedTemplates

__all__ = ["GridTemplates", "QuadraticPeak", "local_grid", "rotation_matrices", "uniform_grid"]

GRID_CHUNK = 2048  # grid rotations scored at once
SCORES_AT_ONCE = 2**24  # (particles x shifts x rotations) scores held at once (64 MB)
# the grid's template coefficients are kept across batches of particles up to this size
GRID_CACHE_BYTES = 512 * 2**20


@functools.cache
def ranking_dtype(device_type: str) -> torch.dtype:
    """The precision the global grid is ranked in: bfloat16 where the hardware multiplies it
    natively (CUDA; a CPU with AVX512-BF16 or AMX, 4x float32's speed on the machine measured),
    else float32 (elsewhere bfloat16 is emulated, slower than float32).

    Ranking only chooses which grid rotations go on to be scored in float32 (the
    ``GRID_CANDIDATES`` best of the matcher); bfloat16's 8-bit mantissa reorders near-ties
    among them, which the float32 scoring and refinement that follow absorb (the default study's
    2,120 particles: the same template for all and the same orientation within 1 degree for all
    but one)."""
    if device_type == "cuda":
        return torch.bfloat16
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return torch.float32
    return torch.bfloat16 if {"avx512_bf16", "amx_bf16"} & set(flags) else torch.float32


def uniform_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(N, 3, 3)`` covering SO(3) with about ``step_deg`` between neighbours."""
    import torch_so3

    angles = torch_so3.get_uniform_euler_angles(psi_step=step_deg, theta_step=step_deg)
    return Rotation.from_euler("ZYZ", angles.numpy(), degrees=True).as_matrix()


def local_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(15, 3, 3)`` near the identity (which is first): rotation vectors at the
    centre, the six faces and the eight corners of a cube of side ``step_deg`` (a body-centred
    cubic cell), reaching ``step_deg / 2`` about each axis and further between them.

    Fifteen points determine a quadratic (:class:`QuadraticPeak`), which then places the peak
    between them: on SHREC'21 maps this finds rotations as well as the 33-point lattice of twice
    the reach, for half its cost. (torch-so3's local grid samples tilts about axes near y only,
    reaching under 2 degrees about x, so a refinement on it cannot correct an error about x.)
    """
    steps = np.arange(-1, 2)
    lattice = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    squared = np.einsum("ij,ij->i", lattice, lattice)
    lattice = lattice[(squared <= 1) | (squared == 3)]
    lattice = lattice[np.argsort(squared[(squared <= 1) | (squared == 3)], kind="stable")]
    return Rotation.from_rotvec(lattice * (step_deg / 2), degrees=True).as_matrix()


def rotation_matrices(rotvecs: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ``(..., 3, 3)`` of rotation vectors ``(..., 3)`` (Rodrigues)."""
    angle = rotvecs.norm(dim=-1, keepdim=True)
    axis = rotvecs / angle.clamp(min=1e-12)
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1)
    cross = cross.reshape(*rotvecs.shape[:-1], 3, 3)
    sin, cos = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=rotvecs.dtype, device=rotvecs.device)
    return eye + sin * cross + (1 - cos) * (cross @ cross)


class QuadraticPeak:
    """Where between a lattice's points the score peaks: a quadratic in the rotation vector
    (10 coefficients) fitted by least squares to the scores at the lattice's points, and its
    maximum, when it has one within the lattice's reach. A search whose lattice spacing is ``s``
    finds a rotation to about ``s / 2``; the fitted peak finds it to a fraction of ``s`` for the
    cost of one more score."""

    def __init__(self, lattice: np.ndarray):
        rotvecs = Rotation.from_matrix(np.asarray(lattice)).as_rotvec()  # (m, 3) radians
        x, y, z = rotvecs.T
        design = np.stack(
            [np.ones_like(x), x, y, z, x * x / 2, y * y / 2, z * z / 2, x * y, x * z, y * z], 1
        )
        if np.linalg.matrix_rank(design) < design.shape[1]:
            raise ValueError("QuadraticPeak: the lattice cannot determine a quadratic")
        self.fit = torch.from_numpy(np.linalg.pinv(design))  # (10, m)
        self.reach = float(np.linalg.norm(rotvecs, axis=1).max())

    def offsets(self, scores: torch.Tensor) -> torch.Tensor:
        """Rotation vectors ``(k, 3)`` (radians) of the fitted peak of each row of ``scores``
        ``(k, m)``; zero where the quadratic has no maximum within the lattice's reach."""
        c = scores.double() @ self.fit.to(scores.device).T  # (k, 10)
        gradient = c[:, 1:4]
        hessian = torch.stack(
            [
                torch.stack([c[:, 4], c[:, 7], c[:, 8]], -1),
                torch.stack([c[:, 7], c[:, 5], c[:, 9]], -1),
                torch.stack([c[:, 8], c[:, 9], c[:, 6]], -1),
            ],
            dim=1,
        )
        concave = torch.linalg.eigvalsh(hessian)[:, -1] < 0
        safe = torch.where(concave[:, None, None], hessian, -torch.eye(3, dtype=c.dtype))
        peak = -torch.linalg.solve(safe, gradient[:, :, None])[..., 0]
        usable = concave & (peak.norm(dim=1) <= self.reach)
        return torch.where(usable[:, None], peak, torch.zeros_like(peak))


class GridTemplates:
    """Templates turned by every rotation of a global grid, at a band's coefficients: sampled
    once per template and kept (in bfloat16, within ``GRID_CACHE_BYTES``: they only rank the
    grid's rotations), so that batches of particles after the first reuse them. Kept without the
    phase that moves the origin to voxel 0 (``phased=False``): the matcher puts its conjugate on
    the particles instead.

    Beside them, each turned template's power on each of the band's shells (float32, from the
    float32 samples): a particle's filter on the band is its CTF, which depends on the shell
    alone (the missing wedge every particle shares is left out of the band itself), so the
    power a score divides by is a sum over ~140 shells, not over every coefficient."""

    def __init__(self, templates: RotatedTemplates, grid: torch.Tensor, band: Band):
        self.templates, self.grid, self.band = templates, grid, band
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def chunk(
        self, template: int, start: int, size: int, dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Template ``template`` turned by grid rotations ``start:start + size``: real and
        imaginary parts side by side ``(r, 2K)`` in ``dtype``, and the shell powers ``(r, Q)``
        (:meth:`shell_power`)."""
        if template not in self._cache:
            # bfloat16 coefficients and float32 shell powers of every grid rotation
            bytes_each = len(self.grid) * (
                2 * len(self.band.flat) * 2 + len(self.band.shell_radius) * 4
            )
            if bytes_each > GRID_CACHE_BYTES:
                part, power = self._sample(template, self.grid[start : start + size])
                return part.to(dtype), power
            while self._cache and bytes_each * (len(self._cache) + 1) > GRID_CACHE_BYTES:
                del self._cache[next(iter(self._cache))]  # the template kept longest goes
            grid, device = len(self.grid), self.grid.device
            width, shells = 2 * len(self.band.flat), len(self.band.shell_radius)
            cache = torch.empty((grid, width), dtype=torch.bfloat16, device=device)
            powers = torch.empty((grid, shells), device=device)
            for i in range(0, grid, GRID_CHUNK):
                part, power = self._sample(template, self.grid[i : i + GRID_CHUNK])
                cache[i : i + len(part)], powers[i : i + len(part)] = part, power
            self._cache[template] = cache, powers
        cache, powers = self._cache[template]
        return cache[start : start + size].to(dtype), powers[start : start + size]

    def rows(self, template: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Template ``template`` turned by grid rotations ``index`` ``(p, N)``: ``(p, N, 2K)``,
        and the shell powers ``(p, N, Q)``."""
        if template in self._cache:
            cache, powers = self._cache[template]
            return cache[index].float(), powers[index]
        part, power = self._sample(template, self.grid[index.reshape(-1)])
        return part.reshape(*index.shape, -1), power.reshape(*index.shape, -1)

    def best(self, template: int, features: torch.Tensor, shell_weight, n: int) -> torch.Tensor:
        """The indices ``(p, n)`` of the grid rotations that score best for each particle at any
        of a few shifts (its coefficients ``features`` ``(p, S, 2K)``, real then imaginary, and
        the weight ``shell_weight`` ``(p, Q)`` of a template's power on each shell), by the
        least-squares score of :class:`~.matcher.TemplateMatcher`, ranked in
        :func:`ranking_dtype`."""
        (p, s), n = features.shape[:2], min(n, len(self.grid))
        features = features.reshape(p * s, -1)
        top = torch.full((p, 0), -math.inf, device=features.device)
        index = torch.zeros((p, 0), dtype=torch.int64, device=features.device)
        size = max(1, min(GRID_CHUNK, SCORES_AT_ONCE // (p * s)))
        dtype = ranking_dtype(features.device.type)
        features, shell_weight = features.to(dtype), shell_weight.float()
        for start in range(0, len(self.grid), size):
            rotated, power = self.chunk(template, start, size, dtype)  # (r, 2K), (r, Q)
            power = shell_weight @ power.T  # (p, r)
            cross = (features @ rotated.T).reshape(p, s, -1).amax(dim=1).float()  # (p, r)
            score = cross.clamp(min=0).square_() / power.clamp(min=1e-30)
            found = torch.arange(start, start + len(rotated), device=features.device)
            keep = min(n, top.shape[1] + score.shape[1])
            top, kept = torch.cat([top, score], 1).topk(keep, dim=1)
            index = torch.cat([index, found.expand(p, -1)], 1).gather(1, kept)
        return index

    def shell_power(self, real: torch.Tensor, imag: torch.Tensor) -> torch.Tensor:
        """``(..., Q)``: on each shell of the band, the sum of ``|T|^2`` times the coefficient's
        weight (its multiplicity) of turned templates ``real``, ``imag`` ``(..., K)``."""
        return self.band.shell_sums((real.square() + imag.square()) * self.band.weight)

    def _sample(self, template: int, rotations: torch.Tensor):
        """Turned coefficients ``(r, 2K)`` and their shell powers ``(r, Q)``."""
        real, imag = self.templates.sample(template, rotations, self.band, phased=False)
        return torch.cat([real, imag], -1), self.shell_power(real, imag)
