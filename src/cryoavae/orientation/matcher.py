"""Each particle's orientation (and position) by matching it against the model's own particle.

Why: over all of SO(3) the encoder's orientation, even corrected by the 24-offset search of
:mod:`cryoavae.model.pose_search`, is right for a few classes only, while matching the same
SHREC'21 particles against their class's noise-free map over a uniform grid finds every class's
orientation to within 1-3 degrees at SNR 1 and at SNR 0.1 (docs/science.md): the data hold the
orientation, a single regression does not find it. So, as subtomogram averaging finds
orientations, the model's decoder supplies the reference and a search supplies the pose:

1. Templates: the decoder renders ``z`` in its canonical frame (the identity pose). The caller
   chooses which ``z`` (:mod:`cryoavae.orientation.templates`: k-means centres of the
   particles' ``mu``).
2. Global search over a near-uniform grid of SO(3) (teamtomo's ``torch-so3``, Hopf fibration),
   on the Fourier coefficients below a low pass, and, with ``max_shift_px``, over whole-voxel
   shifts within that radius: a picked particle is rarely centred to the voxel. A template turned
   by ``R`` is sampled at the rotated frequencies (:class:`~.fourier.RotatedTemplates`) and
   compared with the particle as it was measured: each template coefficient is multiplied by the
   particle's filter ``G`` (0 in the missing wedge; its CTF when one is given), each particle
   coefficient by the phase that undoes a shift. The score is the least-squares fit with a free
   positive scale, ``max(0, <G T_R, X_t>)^2 / |G T_R|^2``.
3. Local refinement around each particle's best, at the full band, on successively finer
   lattices of rotations (each half the previous step; :func:`local_grid`), each followed by a
   finer lattice of shifts (half a voxel, then a quarter, ...).

The work is batched tensor work in torch (particles x rotations x shifts as matrix products), the
same on a CPU and on CUDA. Scores and filters are real: an rfftn coefficient of a real volume
stands for itself and its conjugate, so each is counted twice (once on the planes ``kx = 0`` and
``kx = d/2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cryoavae.geometry.ctf import ctf_1d
from cryoavae.geometry.volume_rotation import spectrum_band_limit
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.orientation.fourier import Band, RotatedTemplates, shift_grid, shift_phases

__all__ = ["CtfModel", "Matches", "TemplateMatcher", "local_grid", "uniform_grid"]

GRID_CHUNK = 2048  # grid rotations scored at once
SCORES_AT_ONCE = 2**24  # (particles x shifts x rotations) scores held at once (64 MB)
LOCAL_CHUNK = 2048  # candidate rotations sampled at once in the local refinement
# the global grid's template coefficients are kept across batches of particles up to this size
GRID_CACHE_BYTES = 512 * 2**20


def uniform_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(N, 3, 3)`` covering SO(3) with about ``step_deg`` between neighbours."""
    import torch_so3

    angles = torch_so3.get_uniform_euler_angles(psi_step=step_deg, theta_step=step_deg)
    return Rotation.from_euler("ZYZ", angles.numpy(), degrees=True).as_matrix()


def local_grid(step_deg: float) -> np.ndarray:
    """Rotations ``(33, 3, 3)`` near the identity (which is first): rotation vectors on a cubic
    lattice of spacing ``step_deg / 2`` within ``step_deg``, the same reach about every axis.

    (torch-so3's local grid samples tilts about axes near y only, reaching under 2 degrees about
    x, so a refinement on it cannot correct an error about x.)
    """
    steps = np.arange(-2, 3)
    lattice = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), -1).reshape(-1, 3)
    lattice = lattice[np.einsum("ij,ij->i", lattice, lattice) <= 4]
    lattice = lattice[np.argsort(np.abs(lattice).sum(axis=1), kind="stable")]  # identity first
    return Rotation.from_rotvec(lattice * (step_deg / 2), degrees=True).as_matrix()


@dataclass(frozen=True)
class CtfModel:
    """The microscope whose CTF (at each particle's defocus) the particles carry."""

    voxel_size_angstrom: float
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07


@dataclass(frozen=True)
class Matches:
    """What matching found per particle: ``rotations`` ``(n, 3, 3)`` (the particle is its
    template turned actively by it, :mod:`cryoavae.geometry.rotations`), ``shifts_px`` ``(n, 3)``
    (x, y, z voxels: where the particle's centre sits relative to the box centre), ``scores``
    ``(n,)`` and the ``templates`` ``(n,)`` matched."""

    rotations: np.ndarray
    shifts_px: np.ndarray
    scores: np.ndarray
    templates: np.ndarray

    FIELDS = ("rotations", "shifts_px", "scores", "templates")


class TemplateMatcher:
    """Orientations of particles against templates ``(m, d, d, d)`` (real space, centred on
    voxel ``d // 2``, in the model's canonical frame).

    ``wedge_tilt_max_deg``: the particles lack the missing wedge of a tilt series about y through
    that angle (None: nothing missing). ``ctf``: they carry a CTF at the defocus given to
    :meth:`match` (None: no CTF). ``low_pass_px``: radius (cycles per box) of the global search;
    default ``d / 4``. ``max_shift_px``: how far (voxels) a particle's centre may sit from the
    box centre (0: particles are centred, rotations only), searched in steps of ``shift_step_px``
    in the global search. ``device``: where the work runs.
    """

    def __init__(
        self,
        templates: np.ndarray,
        wedge_tilt_max_deg: float | None = None,
        ctf: CtfModel | None = None,
        grid_step_deg: float = 10.0,
        refinement_levels: int = 3,
        low_pass_px: float | None = None,
        max_shift_px: float = 0.0,
        device: torch.device | str = "cpu",
        shift_step_px: float = 1.0,
    ):
        templates = np.asarray(templates, dtype=np.float32)
        if templates.ndim != 4 or len(set(templates.shape[1:])) != 1:
            raise ValueError(
                f"TemplateMatcher: expected (m, d, d, d) templates, got {templates.shape}"
            )
        self.d = d = templates.shape[-1]
        self.device = torch.device(device)
        self.templates = RotatedTemplates(templates, self.device)
        self.wedge_tilt_max_deg = wedge_tilt_max_deg
        self.ctf = ctf
        low = low_pass_px if low_pass_px is not None else d / 4
        measured = None  # the coefficients outside every particle's wedge are never computed
        if wedge_tilt_max_deg is not None:
            measured = missing_wedge_mask(d, wedge_tilt_max_deg)
        self.low = Band.up_to(d, low, self.device, measured)
        self.full = Band.up_to(d, math.sqrt(spectrum_band_limit(d)), self.device, measured)
        self.grid = torch.from_numpy(uniform_grid(grid_step_deg)).to(self.device)
        self.local = [
            torch.from_numpy(local_grid(grid_step_deg / 2**level)).to(self.device)
            for level in range(refinement_levels)
        ]
        self._grid_cache: dict[int, torch.Tensor] = {}
        self.max_shift_px = float(max_shift_px)
        global_shifts = shift_grid(self.max_shift_px, shift_step_px)
        self.shifts = torch.from_numpy(global_shifts).to(self.device)

    def match(
        self,
        volumes: np.ndarray,
        template_index: np.ndarray,
        defocus_um: np.ndarray | None = None,
    ) -> Matches:
        """Each particle's best rotation and shift of its template (``template_index`` ``(n,)``)."""
        n = len(volumes)
        template_index = np.asarray(template_index, dtype=np.int64)
        spectra = self._spectra(volumes)
        rotations = torch.empty((n, 3, 3), dtype=torch.float64, device=self.device)
        shifts = torch.zeros((n, 3), dtype=torch.float64, device=self.device)
        for c in np.unique(template_index):
            rows = torch.from_numpy(np.flatnonzero(template_index == c)).to(self.device)
            filters = self._filters(self.low, rows, defocus_um)
            rotations[rows], shifts[rows], _ = self._global(spectra[rows], int(c), filters)
        return self._refine_all(spectra, template_index, rotations, shifts, defocus_um)

    def match_any(self, volumes: np.ndarray, defocus_um: np.ndarray | None = None) -> Matches:
        """Each particle searched against every template (multi-reference alignment): the
        template whose best grid rotation explains most of the particle wins (the scores are
        comparable: each is the particle's energy its template explains, with a free scale), and
        that pose is refined as in :meth:`match`; the global search costs once per template."""
        n = len(volumes)
        spectra = self._spectra(volumes)
        filters = self._filters(self.low, torch.arange(n, device=self.device), defocus_um)
        rotations = torch.empty((n, 3, 3), dtype=torch.float64, device=self.device)
        shifts = torch.zeros((n, 3), dtype=torch.float64, device=self.device)
        top = torch.full((n,), -math.inf, dtype=torch.float64, device=self.device)
        template_index = np.zeros(n, dtype=np.int64)
        for c in range(len(self.templates)):
            rotation, shift, score = self._global(spectra, c, filters)
            better = score > top
            rotations[better], shifts[better], top[better] = (
                rotation[better],
                shift[better],
                score[better],
            )
            template_index[better.cpu().numpy()] = c
        return self._refine_all(spectra, template_index, rotations, shifts, defocus_um)

    def _spectra(self, volumes: np.ndarray) -> torch.Tensor:
        """rfftn of each volume, flattened ``(n, d * d * (d // 2 + 1))`` complex64."""
        x = torch.as_tensor(np.asarray(volumes, np.float32), device=self.device)
        return torch.fft.rfftn(x, dim=(1, 2, 3)).reshape(len(x), -1)

    def _filters(self, band: Band, rows: torch.Tensor, defocus_um) -> torch.Tensor:
        """``(len(rows), K)`` float32: what each particle measured of each coefficient of
        ``band``."""
        measured = np.ones(len(band.flat))
        if self.wedge_tilt_max_deg is not None:
            measured = missing_wedge_mask(self.d, self.wedge_tilt_max_deg).ravel()[band.flat]
        if self.ctf is None or defocus_um is None:
            values = np.broadcast_to(measured, (len(rows), len(band.flat)))
        else:
            c = self.ctf
            radius = np.linalg.norm(band.frequencies, axis=1) / (self.d * c.voxel_size_angstrom)
            focus = np.asarray(defocus_um)[rows.cpu().numpy(), None]
            values = ctf_1d(radius, focus, c.voltage_kv, c.cs_mm, c.amplitude_contrast) * measured
        return torch.from_numpy(np.array(values, dtype=np.float32)).to(self.device)

    def _weighted(self, spectra: torch.Tensor, band: Band, filters: torch.Tensor):
        """The particles' coefficients on ``band`` as the scores weigh them (``w G X``), real and
        imaginary parts ``(p, K)``, and the weight ``w G^2`` of a template's power ``(p, K)``."""
        x = spectra[:, band.index] * (filters * band.weight)
        return x.real.contiguous(), x.imag.contiguous(), filters**2 * band.weight

    def _global(self, spectra: torch.Tensor, template: int, filters: torch.Tensor):
        """Best grid rotation ``(p, 3, 3)``, whole-voxel shift ``(p, 3)`` and score ``(p,)`` per
        particle (rows of ``spectra``, all matched to ``template``)."""
        band, p, s = self.low, len(spectra), len(self.shifts)
        xr, xi, power_weight = self._weighted(spectra, band, filters)
        cos, sin = shift_phases(band, self.shifts, self.d)  # (S, K)
        centred_r = xr[:, None] * cos - xi[:, None] * sin  # (p, S, K): the particle at each shift
        centred_i = xr[:, None] * sin + xi[:, None] * cos
        features = torch.cat([centred_r, centred_i], dim=-1).reshape(p * s, -1)  # (p S, 2K)
        top = torch.full((p,), -math.inf, dtype=torch.float64, device=self.device)
        best = torch.zeros(p, dtype=torch.int64, device=self.device)
        best_shift = torch.zeros(p, dtype=torch.int64, device=self.device)
        chunk = max(1, min(GRID_CHUNK, SCORES_AT_ONCE // (p * s)))
        for start in range(0, len(self.grid), chunk):
            rotated = self._grid_template(template, start, chunk)  # (r, 2K): real, imaginary
            cross = (features @ rotated.T).reshape(p, s, -1)  # (p, S, r)
            power = power_weight @ rotated.square().reshape(len(rotated), 2, -1).sum(1).T
            score = cross.clamp(min=0).square_() / power.clamp(min=1e-30)[:, None, :]
            value, where = score.reshape(p, -1).max(dim=1)
            better = value.double() > top
            top[better] = value.double()[better]
            best[better] = start + where[better] % score.shape[-1]
            best_shift[better] = where[better] // score.shape[-1]
        return self.grid[best], self.shifts[best_shift], top

    def _grid_template(self, template: int, start: int, chunk: int) -> torch.Tensor:
        """Template ``template`` turned by grid rotations ``start:start + chunk``, real and
        imaginary parts side by side ``(r, 2K)``; the whole grid is sampled once per template and
        kept (within ``GRID_CACHE_BYTES``), so batches of particles after the first reuse it."""
        if template not in self._grid_cache:
            size = len(self.grid) * 2 * len(self.low.flat) * 4
            if size * (len(self._grid_cache) + 1) > GRID_CACHE_BYTES:
                real, imag = self.templates.sample(
                    template, self.grid[start : start + chunk], self.low
                )
                return torch.cat([real, imag], dim=-1)
            parts = [
                torch.cat(
                    self.templates.sample(template, self.grid[i : i + GRID_CHUNK], self.low), -1
                )
                for i in range(0, len(self.grid), GRID_CHUNK)
            ]
            self._grid_cache[template] = torch.cat(parts)
        return self._grid_cache[template][start : start + chunk]

    def _refine_all(self, spectra, template_index, rotations, shifts, defocus_um) -> Matches:
        """The local refinements, level after level, from each particle's global best: a finer
        lattice of rotations, then (when shifts are searched) a finer lattice of shifts."""
        band = self.full
        filters = self._filters(band, torch.arange(len(rotations), device=self.device), defocus_um)
        xr, xi, power_weight = self._weighted(spectra, band, filters)
        score = torch.zeros(len(rotations), dtype=torch.float64, device=self.device)
        for level, offsets in enumerate(self.local):
            cos, sin = shift_phases(band, shifts, self.d)  # (n, K)
            centred = (xr * cos - xi * sin, xr * sin + xi * cos)
            rotations, template, score = self._refine_rotations(
                centred, power_weight, template_index, rotations, offsets
            )
            if self.max_shift_px > 0:
                shifts, score = self._refine_shifts(
                    (xr, xi), template, power_weight, shifts, 0.5 / 2**level
                )
        return Matches(
            rotations.cpu().numpy(),
            shifts.cpu().numpy(),
            score.cpu().numpy(),
            np.asarray(template_index, dtype=np.int64),
        )

    def _refine_rotations(self, x, power_weight, template_index, best, offsets):
        """Each particle's best among ``best @ offsets`` (the identity first), full band; also
        the winning template coefficients (real, imaginary ``(n, K)``)."""
        (xr, xi), n, m = x, len(best), len(offsets)
        new = torch.empty_like(best)
        chosen = (torch.empty_like(xr), torch.empty_like(xi))
        score = torch.empty(n, dtype=torch.float64, device=self.device)
        per = max(1, LOCAL_CHUNK // m)
        for c in np.unique(template_index):
            members = torch.from_numpy(np.flatnonzero(template_index == c)).to(self.device)
            for rows in members.split(per):
                k = len(rows)
                candidates = (best[rows, None] @ offsets[None]).reshape(k * m, 3, 3)
                tr, ti = self.templates.sample(int(c), candidates, self.full)
                tr, ti = tr.reshape(k, m, -1), ti.reshape(k, m, -1)
                cross = torch.bmm(tr, xr[rows, :, None]) + torch.bmm(ti, xi[rows, :, None])
                power = torch.bmm(tr * tr + ti * ti, power_weight[rows, :, None])
                s = (cross.clamp(min=0).square_() / power.clamp(min=1e-30))[..., 0]  # (k, m)
                value, j = s.max(dim=1)
                new[rows] = candidates.reshape(k, m, 3, 3)[torch.arange(k), j]
                chosen[0][rows], chosen[1][rows] = tr[torch.arange(k), j], ti[torch.arange(k), j]
                score[rows] = value.double()
        return new, chosen, score

    def _refine_shifts(self, x, template, power_weight, shifts, step_px):
        """Each particle's best shift among ``shifts`` plus a lattice of ``step_px`` (within
        ``max_shift_px`` of the centre), its template at the rotation just found."""
        (xr, xi), (tr, ti) = x, template
        lattice = torch.from_numpy(shift_grid(math.sqrt(3) * step_px + 1e-6, step_px))
        candidates = shifts[:, None, :] + lattice.to(self.device)[None]  # (n, S, 3)
        inside = candidates.norm(dim=-1) <= self.max_shift_px + 1e-9
        qr, qi = xr * tr + xi * ti, xi * tr - xr * ti  # x conj(t)
        cos, sin = shift_phases(self.full, candidates, self.d)  # (n, S, K)
        cross = torch.bmm(cos, qr[:, :, None]) - torch.bmm(sin, qi[:, :, None])  # (n, S, 1)
        power = (power_weight * (tr * tr + ti * ti)).sum(-1)[:, None]
        score = cross[..., 0].clamp(min=0).square_() / power.clamp(min=1e-30)
        score = torch.where(inside, score, -1.0)
        value, j = score.max(dim=1)
        return candidates[torch.arange(len(xr)), j], value.double()
