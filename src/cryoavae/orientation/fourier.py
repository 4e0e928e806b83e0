"""The matcher's Fourier-space arithmetic as batched torch work (CPU or CUDA alike).

- :class:`Band`: the rfftn coefficients up to a radius, where they sit and how much they count;
- :class:`RotatedTemplates`: templates turned by many rotations at once, sampled at a band's
  frequencies from their oversampled spectra (trilinear: on a CPU by the simulator's own kernel,
  :mod:`cryoavae.geometry.spectrum_samples`; on CUDA by ``grid_sample``);
- :func:`shift_phases`, :func:`shift_grid`: translations as phase ramps, the shifts searched.

Conventions as in :mod:`cryoavae.geometry.volume_rotation`: a template turned actively by ``A``
has at frequency ``f`` the padded spectrum's value at ``A^T f``; a volume shifted by ``t`` voxels
has its coefficients multiplied by ``exp(-2 pi i f.t / d)``, so multiplying a particle's
coefficients by ``exp(+2 pi i f.t / d)`` moves a particle found at ``t`` back to the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cryoavae.geometry.spectrum_samples import (
    PROBE_PAIRS,
    probe_sums,
    rotated_parts,
    rotated_scores,
)
from cryoavae.geometry.volume_rotation import (
    PAD_FACTOR,
    band_limited_coefficients,
    centre_phases,
    padded_spectra,
)

__all__ = [
    "Band",
    "RotatedTemplates",
    "stored_sums",
    "correlation_peaks",
    "radial_average",
    "shift_grid",
    "shift_phases",
]


@dataclass(frozen=True)
class Band:
    """rfftn coefficients up to a radius: where they sit, their frequencies, their weight, the
    shell (distinct ``|k|``) each lies on, and the same as tensors on the device the work runs on.

    Shells: whatever depends on ``|k|`` alone (a CTF without astigmatism) takes one value per
    shell, and a sum over the coefficients of such a value times something per coefficient is a
    sum over shells of per-shell sums: far fewer terms (137 shells for the 2,910 coefficients
    up to 12.8 cycles of a 32^3 box outside a 60 degree wedge)."""

    flat: np.ndarray  # (K,) int64 into the (d, d, d//2 + 1) rfftn array
    frequencies: np.ndarray  # (K, 3) int64 (x, y, z), cycles per box
    multiplicity: np.ndarray  # (K,) float64: 2, or 1 on the planes kx = 0 and kx = d/2
    index: torch.Tensor  # flat, as a tensor
    frequency: torch.Tensor  # (K, 3) float32
    weight: torch.Tensor  # multiplicity, float32
    centre_cos: torch.Tensor  # (K,) float32: the phase that moves the origin to voxel 0
    centre_sin: torch.Tensor
    shell: np.ndarray  # (K,) int64: which of shell_radius each coefficient lies on
    shell_radius: np.ndarray  # (Q,) float64, ascending: the distinct |k|, cycles per box
    shell_index: torch.Tensor  # shell, as a tensor

    @classmethod
    def up_to(
        cls,
        d: int,
        k_max: float,
        device: torch.device | str = "cpu",
        measured: np.ndarray | None = None,
    ) -> Band:
        """The coefficients with ``|k| <= k_max``; with ``measured`` (an rfftn-shaped boolean
        mask, e.g. the missing wedge every particle shares) only those: a coefficient no particle
        measured adds nothing to any score, so it is not computed at all."""
        fz = np.rint(np.fft.fftfreq(d) * d)[:, None, None]
        fx = np.arange(d // 2 + 1)[None, None, :]
        keep = fx**2 + fz.reshape(1, d, 1) ** 2 + fz**2 <= k_max**2
        if measured is not None:
            keep = keep & measured
        flat, frequencies = band_limited_coefficients(d, keep)
        edge = (frequencies[:, 0] == 0) | (frequencies[:, 0] == d // 2)
        multiplicity = np.where(edge, 1.0, 2.0)
        phase = centre_phases(frequencies, d)
        squared, shell = np.unique((frequencies**2).sum(axis=1), return_inverse=True)

        def tensor(values, dtype=torch.float32):
            return torch.as_tensor(np.ascontiguousarray(values), dtype=dtype, device=device)

        return cls(
            flat,
            frequencies,
            multiplicity,
            tensor(flat, torch.int64),
            tensor(frequencies),
            tensor(multiplicity),
            tensor(phase.real),
            tensor(phase.imag),
            shell.ravel(),
            np.sqrt(squared.astype(np.float64)),
            tensor(shell.ravel(), torch.int64),
        )

    def shell_sums(self, values: torch.Tensor) -> torch.Tensor:
        """Per-coefficient ``values`` ``(..., K)`` summed over each shell -> ``(..., Q)``."""
        out = values.new_zeros((*values.shape[:-1], len(self.shell_radius)))
        return out.index_add_(-1, self.shell_index, values)


class RotatedTemplates:
    """Templates ``(m, d, d, d)`` whose rotated rfftn coefficients are sampled in batches:
    trilinear on their oversampled, gridding-corrected spectra (:func:`padded_spectra`).

    Two samplers of the same interpolation. ``"kernel"`` (a CPU's default) is the simulator's own
    compiled kernel (:func:`~cryoavae.geometry.spectrum_samples.rotated_parts`): one pass per point,
    ~13 ns a point on two cores, 3-6x ``grid_sample`` on the same machine and exact to float32.
    ``"grid_sample"`` (CUDA's, where one kernel spreads every point over the device) keeps the
    spectra as images ``(m, 4, (P + 2)(P + 1), P)``: the z-slices stacked as rows, so that a
    trilinear sample is two bilinear ones and a step between them (``grid_sample``'s 2-D kernel is
    several times faster than its 3-D one); float32 coordinates on an image of ~4,000 rows place a
    point to ~3e-4 of a voxel, so a coefficient is within ~2e-4 of the largest.

    Where a search reads only sums over a turned template's coefficients (a lattice's scores,
    :meth:`correlate`; a Gauss-Newton step's products, :meth:`probe_sums`) the compiled kernel
    adds them up as it samples and stores no coefficient; ``grid_sample`` stores them and sums
    by tensor products.
    """

    def __init__(
        self,
        templates: np.ndarray,
        device: torch.device | str = "cpu",
        sampler: str | None = None,
    ):
        spectra = padded_spectra(np.asarray(templates, np.float32))  # (m, P, P, P) complex64
        self.d = int(np.asarray(templates).shape[-1])
        self.size = p = spectra.shape[-1]
        self.device = torch.device(device)
        self.sampler = sampler or ("grid_sample" if self.device.type == "cuda" else "kernel")
        if self.sampler == "kernel":
            if self.device.type != "cpu":
                raise ValueError("RotatedTemplates: the compiled sampler runs on a CPU only")
            self.spectra = spectra
            return
        if self.sampler != "grid_sample":
            raise ValueError(f"RotatedTemplates: sampler {sampler!r} is not kernel|grid_sample")
        # Each slice with a row of zeros after it and a slice of zeros at both ends, so that a
        # point beside the cube reads zeros, as 3-D zero padding would; each slice's channels hold
        # it (real, imaginary) and the slice above it, so one bilinear read gets both.
        slabs = np.zeros((len(spectra), 4, p + 2, p + 1, p), np.float32)
        slabs[:, 0, 1:-1, :-1] = spectra.real
        slabs[:, 1, 1:-1, :-1] = spectra.imag
        slabs[:, 2:, :-1] = slabs[:, :2, 1:]
        self.rows = (p + 2) * (p + 1)
        self.slabs = torch.from_numpy(slabs.reshape(len(spectra), 4, self.rows, p)).to(self.device)

    def __len__(self) -> int:
        return len(self.spectra if self.sampler == "kernel" else self.slabs)

    def sample(
        self, template: int, rotations: torch.Tensor, band: Band, phased: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Real and imaginary parts ``(r, K)`` float32 of the coefficients at ``band``'s
        frequencies of template ``template`` turned actively by each of ``rotations``
        ``(r, 3, 3)``. (Kept apart: every score is a real sum of their products.) With
        ``phased=False`` the phase that moves the origin to voxel 0 (``band.centre_*``) is left
        out: a score that multiplies the particle by its conjugate instead does that once per
        particle rather than once per rotation."""
        if self.sampler == "kernel":
            turns = rotations.detach().cpu().numpy()
            values = torch.from_numpy(
                rotated_parts(self.spectra[template], turns, band.frequencies)
            )
        else:
            values = self._grid_sample(template, rotations, band)
        if not phased:
            return values[0], values[1]
        cos, sin = band.centre_cos, band.centre_sin
        return values[0] * cos - values[1] * sin, values[0] * sin + values[1] * cos

    def correlate(
        self, template: int, rotations: torch.Tensor, band: Band, particles, power_weight
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For particle ``i`` (real and imaginary parts ``particles`` ``(n, K)`` on ``band``,
        as a score weighs them) and each of its rotations ``rotations[i]`` ``(n, m, 3, 3)``: the
        cross term ``Re sum T conj(x)`` with template ``template`` so turned (``phased=False``)
        and that template's power weighed by ``power_weight`` ``(n, K)``; each ``(n, m)``
        float32. The compiled sampler sums as it samples (the turned coefficients are never
        stored: a lattice scores many rotations per particle and keeps none of them)."""
        (xr, xi), (n, m) = particles, rotations.shape[:2]
        if self.sampler == "kernel":
            turns = rotations.detach().cpu().numpy()
            rows = [a.detach().cpu().numpy() for a in (xr, xi, power_weight)]
            cross, power = rotated_scores(self.spectra[template], turns, band.frequencies, *rows)
            return torch.from_numpy(cross), torch.from_numpy(power)
        tr, ti = self.sample(template, rotations.reshape(n * m, 3, 3), band, phased=False)
        return stored_sums((tr.reshape(n, m, -1), ti.reshape(n, m, -1)), particles, power_weight)

    def probe_sums(
        self, template: int, rotations: torch.Tensor, band: Band, particles, power_weight
    ) -> torch.Tensor:
        """For particle ``i`` (as in :meth:`correlate`) and its rotation and three probes
        ``rotations[i]`` ``(n, 4, 3, 3)``: the sums a Gauss-Newton step reads
        (:data:`~cryoavae.geometry.spectrum_samples.PROBE_SUMS`, in that order) ``(n, 14)``
        float64."""
        (xr, xi), n = particles, len(rotations)
        if self.sampler == "kernel":
            turns = rotations.detach().cpu().numpy()
            rows = [a.detach().cpu().numpy() for a in (xr, xi, power_weight)]
            sums = probe_sums(self.spectra[template], turns, band.frequencies, *rows)
            return torch.from_numpy(sums)
        tr, ti = self.sample(template, rotations.reshape(n * 4, 3, 3), band, phased=False)
        tr, ti = tr.reshape(n, 4, -1), ti.reshape(n, 4, -1)
        dr, di = tr[:, 1:] - tr[:, :1], ti[:, 1:] - ti[:, :1]  # (n, 3, K)
        t, d = (tr[:, :1], ti[:, :1]), (dr, di)

        def dot(u, v, weight=None):  # sum over K of Re(u conj(v)) (times the weight)
            product = u[0][:, :, None] * v[0][:, None] + u[1][:, :, None] * v[1][:, None]
            return (product if weight is None else product * weight[:, None, None]).sum(-1)

        x = (xr[:, None], xi[:, None])
        normal = dot(d, d, power_weight)  # (n, 3, 3)
        a, b = (torch.tensor(index) for index in PROBE_PAIRS)
        parts = [dot(t, x)[:, 0], dot(t, t, power_weight)[:, 0], dot(d, x)[:, :, 0]]
        parts += [dot(d, t, power_weight)[:, :, 0], normal[:, a, b]]
        return torch.cat(parts, 1).double()

    def _grid_sample(self, template: int, rotations: torch.Tensor, band: Band) -> torch.Tensor:
        """The real and imaginary parts ``(2, r, K)``: two bilinear reads of the stacked slices."""
        p, rows = self.size, self.rows
        # grid_sample spreads its batch over the CPU's threads, not one item's points: the
        # rotations go in as that many batch items (one on a GPU, which spreads everything)
        r = len(rotations)
        parts = 1 if self.device.type == "cuda" else max(1, min(torch.get_num_threads(), r))
        padded = -(-r // parts) * parts
        turns = rotations.to(self.device, torch.float32)
        if padded > r:
            turns = torch.cat([turns, turns[-1:].expand(padded - r, -1, -1)])
        # The sample index of frequency f is PAD_FACTOR * A^T f + P // 2 on each axis (x, y, z);
        # x and y come out as grid_sample's [-1, 1] coordinates (align_corners), z as an index.
        to_x, to_row = 2.0 / (p - 1), 2.0 / (rows - 1)
        scale = torch.tensor([to_x, to_row, 1.0], device=self.device) * PAD_FACTOR
        start = torch.tensor([(p // 2) * to_x - 1.0, (p // 2) * to_row - 1.0, p // 2])
        # the offset as a fourth row of each matrix against a column of ones: added by the
        # product itself (a broadcast add over a last axis of 3 costs more than the product)
        affine = torch.cat([turns * scale, start.to(self.device).expand(padded, 1, 3)], 1)
        ones = torch.ones((len(band.flat), 1), device=self.device)
        index = torch.matmul(torch.cat([band.frequency, ones], 1), affine)  # (padded, K, 3)
        z = index[..., 2].clamp_(-1.0, p - 1e-3)  # (padded, K); no band reaches past the cube
        below = torch.floor(z)
        weight = (z - below).reshape(parts, 1, padded // parts, -1)  # of the slice above
        # y's row in the slice below the point (the image's slice below + 1)
        index[..., 1].add_(below + 1.0, alpha=to_row * (p + 1))
        values = F.grid_sample(
            self.slabs[template : template + 1].expand(parts, -1, -1, -1),
            index[..., :2].reshape(parts, padded // parts, -1, 2),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )  # (part, below: re, im, above: re, im, r / parts, K)
        values = torch.lerp(values[:, :2], values[:, 2:], weight)  # (part, re/im, r/p, K)
        return values.transpose(0, 1).reshape(2, padded, -1)[:, :r]


def shift_grid(max_shift_px: float, step_px: float) -> np.ndarray:
    """Shifts ``(S, 3)`` voxels (x, y, z) on a cubic lattice of ``step_px`` within a ball of
    ``max_shift_px``, no shift first: the translations a search tries."""
    if max_shift_px <= 0:
        return np.zeros((1, 3))
    reach = int(math.floor(max_shift_px / step_px + 1e-9))
    steps = np.arange(-reach, reach + 1) * step_px
    lattice = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    lattice = lattice[np.linalg.norm(lattice, axis=1) <= max_shift_px + 1e-9]
    return lattice[np.argsort(np.linalg.norm(lattice, axis=1), kind="stable")]


def stored_sums(templates, particles, power_weight) -> tuple[torch.Tensor, torch.Tensor]:
    """Turned templates' coefficients (real, imaginary ``(n, m, K)``) against their particles
    (real, imaginary ``(n, K)``): the cross terms and the powers weighed by ``power_weight``
    ``(n, K)``, each ``(n, m)``, by tensor products."""
    (tr, ti), (xr, xi) = templates, particles
    cross = torch.bmm(tr, xr[:, :, None]) + torch.bmm(ti, xi[:, :, None])
    power = torch.bmm(tr * tr + ti * ti, power_weight[:, :, None])
    return cross[..., 0], power[..., 0]


def shift_phases(band: Band, shifts: torch.Tensor, d: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine ``(..., K)`` of ``2 pi f.t / d`` for shifts ``t`` ``(..., 3)`` voxels: the
    phase ``exp(+2 pi i f.t / d)`` that, multiplied into a particle's coefficients, brings a
    particle that sits at ``t`` back to the centre."""
    angle = torch.matmul(shifts.to(band.frequency), band.frequency.T) * (2 * math.pi / d)
    return torch.cos(angle), torch.sin(angle)


def radial_average(volumes: np.ndarray) -> np.ndarray:
    """Each volume ``(m, d, d, d)`` averaged over all rotations about voxel ``d // 2``: its mean
    on each shell of whole-voxel radius, interpolated linearly between shells. It is the same in
    every orientation, so a particle's shift can be found against it before its rotation."""
    volumes = np.asarray(volumes, dtype=np.float64)
    d = volumes.shape[-1]
    c = np.arange(d) - d // 2
    radius = np.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    shell = np.rint(radius).astype(np.int64).ravel()
    counts = np.bincount(shell)
    averages = [
        np.interp(radius, np.arange(len(counts)), np.bincount(shell, v.ravel()) / counts)
        for v in volumes
    ]
    return np.stack(averages).astype(np.float32)


def correlation_peaks(
    cc: torch.Tensor,
    limit: torch.Tensor,
    around: torch.Tensor | None = None,
    reach: torch.Tensor | None = None,
) -> torch.Tensor:
    """Where each correlation ``cc`` ``(p, d, d, d)`` (index ``t`` mod ``d``: a shift by ``t``)
    peaks within ``limit`` ``(p,)`` voxels of no shift (and, given ``around`` ``(p, 3)`` x, y, z
    voxels, within ``reach`` ``(p,)`` of it): ``(p, 3)`` x, y, z voxels, float64, to a fraction of
    a voxel by a parabola through the peak and its neighbours on each axis."""
    p, d = len(cc), cc.shape[-1]
    signed = torch.fft.fftfreq(d, 1.0 / d, device=cc.device)  # voxel index -> offset
    z, y, x = torch.meshgrid(signed, signed, signed, indexing="ij")
    outside = (x * x + y * y + z * z)[None] > limit.reshape(-1, 1, 1, 1).float() ** 2 + 1e-9
    if around is not None:
        a = around.float().reshape(-1, 3, 1, 1, 1)
        apart = (x - a[:, 0]) ** 2 + (y - a[:, 1]) ** 2 + (z - a[:, 2]) ** 2
        near = outside | (apart > reach.reshape(-1, 1, 1, 1).float() ** 2 + 1e-9)
        # a guess with no whole voxel both near it and within the limit: the limit alone
        empty = near.reshape(p, -1).all(dim=1)
        outside = torch.where(empty.reshape(-1, 1, 1, 1), outside, near)
    flat = cc.reshape(p, -1)
    peak = cc.masked_fill(outside, -math.inf).reshape(p, -1).argmax(dim=1)
    index = torch.stack(torch.unravel_index(peak, (d, d, d)), dim=1)  # (p, 3): z, y, x
    everyone = torch.arange(p, device=cc.device)
    at = flat[everyone, peak]
    fraction = []
    for axis in (2, 1, 0):  # x, y, z
        neighbours = []
        for step in (-1, 1):
            moved_index = index.clone()
            moved_index[:, axis] = (moved_index[:, axis] + step) % d
            where = (moved_index[:, 0] * d + moved_index[:, 1]) * d + moved_index[:, 2]
            neighbours.append(flat[everyone, where])
        below, above = neighbours
        curvature = below - 2 * at + above
        offset = torch.where(curvature < 0, 0.5 * (below - above) / curvature, 0.0)
        fraction.append(offset.clamp(-0.5, 0.5))
    whole = torch.stack([signed[index[:, 2]], signed[index[:, 1]], signed[index[:, 0]]], 1)
    centres = (whole + torch.stack(fraction, dim=1)).double()
    return within_ball(centres, limit.double().to(cc.device)[:, None])


def within_ball(points: torch.Tensor, radius) -> torch.Tensor:
    """``points`` ``(n, 3)``, each outside the ball of ``radius`` (a number or ``(n, 1)``)
    about the origin moved radially onto its surface."""
    norm = points.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return points * (radius / norm).clamp(max=1.0)
