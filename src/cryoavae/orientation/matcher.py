"""Each particle's orientation (and position) by matching it against the model's own particle.

Why: over all of SO(3) the encoder's orientation, even corrected by the 24-offset search of
:mod:`cryoavae.model.pose_search`, is right for a few classes only, while matching the same
SHREC'21 particles against their class's noise-free map over a uniform grid finds every class's
orientation to within 1-3 degrees at SNR 1 and at SNR 0.1 (docs/science.md): the data hold the
orientation, a single regression does not find it. So, as subtomogram averaging finds
orientations, the model's decoder supplies the reference and a search supplies the pose:

1. Templates: the decoder renders ``z`` in its canonical frame (the identity pose). The caller
   chooses which ``z`` (:mod:`cryoavae.orientation.templates`: each class's mean ``mu``, or
   k-means centres of the particles' ``mu``).
2. Centre: with ``max_shift_px``, each particle's centre is first found before any rotation
   (:mod:`.centring`: against its template's spherical average, near a caller's guess if given).
3. Global search over a near-uniform grid of SO(3) (teamtomo's ``torch-so3``, Hopf fibration),
   on the Fourier coefficients below a low pass, with the whole-voxel shifts within
   ``shift_reach_px`` of that centre. A template turned by ``R`` is sampled at the rotated
   frequencies (:class:`~.fourier.RotatedTemplates`) and compared with the particle as it was
   measured: each template coefficient is multiplied by the particle's filter ``G`` (0 in the
   missing wedge; its CTF when one is given), each particle coefficient by the phase that undoes
   a shift. The score is the least-squares fit with a free positive scale,
   ``max(0, <G T_R, X_t>)^2 / |G T_R|^2``; ``G``'s CTF depends on ``|k|`` alone, so the
   denominator is each turned template's power per shell of ``|k|`` (kept with the grid) against
   the particle's CTF squared per shell (:mod:`.filters`).
4. Local refinement around each particle's best on successively finer lattices of rotations
   (:func:`~.grids.local_grid`, each half the previous step, each on the band that can tell its
   points apart), the peak of a quadratic fitted to each lattice's scores
   (:class:`~.grids.QuadraticPeak`), or a Gauss-Newton step from four samples
   (:class:`~.newton.NewtonStep`, ``refinement="newton"``), each followed by a finer lattice of
   shifts (a voxel and half a voxel, then a quarter, ...).

The work is batched tensor work in torch (particles x rotations x shifts as matrix products), on
a CPU or CUDA (turned templates sampled as :class:`~.fourier.RotatedTemplates` says). Scores and
filters are real: an rfftn coefficient of a real volume stands for itself and its conjugate, so
each is counted twice (once on the planes ``kx = 0`` and ``kx = d/2``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cryoavae.geometry.ctf import CtfModel
from cryoavae.geometry.volume_rotation import spectrum_band_limit
from cryoavae.orientation.centring import Centring
from cryoavae.orientation.filters import ParticleFilters
from cryoavae.orientation.fourier import (
    Band,
    RotatedTemplates,
    shift_grid,
    shift_phases,
    stored_sums,
    within_ball,
)
from cryoavae.orientation.grids import GridTemplates, rotation_matrices, uniform_grid
from cryoavae.orientation.matches import Matches
from cryoavae.orientation.newton import NewtonStep, level_steps

__all__ = ["TemplateMatcher"]

GRID_CANDIDATES = 64  # the grid rotations that go on to the shift search
RANKING_SHIFTS = 7  # the shifts they are ranked at: the centre and a voxel along each axis
# the global search tries whole-voxel shifts within this radius of each particle's centre, as
# found against its template's spherical average
SHIFT_REACH_PX = 1.5
# a centre guess (the encoder's shift head) confines the centring search to this radius of it
GUESS_REACH_PX = 1.0
REFINEMENT_CYCLES = 1.0
CENTRING_CYCLES = 8.0
LOCAL_CHUNK = 512  # candidate rotations sampled at once in the local refinement


class TemplateMatcher:
    """Orientations of particles against templates ``(m, d, d, d)`` (real space, centred on
    voxel ``d // 2``, in the model's canonical frame).

    ``wedge_tilt_max_deg``: the particles lack the missing wedge of a tilt series about y through
    that angle (None: nothing missing). ``ctf``: they carry a CTF at the defocus given to
    :meth:`match` (None: no CTF). ``low_pass_px``: radius (cycles per box) of the global search;
    default ``d / 4``. ``max_shift_px``: how far (voxels) a particle's centre may sit from the
    box centre (0: particles are centred, rotations only); the global search tries whole-voxel
    shifts within ``shift_reach_px`` of each particle's centre (found against the template's
    spherical average) and each refinement a finer lattice. ``refinement_cycles``: each
    refinement level works on the coefficients up to that many cycles per radian of its lattice
    spacing (at least the global search's band, at most the full band). ``device``: where the
    work runs. ``guess_reach_px`` and ``guess_offsets_px`` ``(m, 3)``: how far a caller's centre
    guess is trusted, and where each template's box centre sits in the guesses' frame
    (:class:`~.centring.Centring`). ``refinement``: how each level turns a rotation,
    ``"lattice"`` (15 samples and a fitted quadratic), ``"newton"`` (4 and a Gauss-Newton step) or
    ``"lattice_newton"`` (the lattice at the first level, the step at the others)."""

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
        shift_reach_px: float = SHIFT_REACH_PX,
        refinement_cycles: float = REFINEMENT_CYCLES,
        guess_reach_px: float = GUESS_REACH_PX,
        guess_offsets_px: np.ndarray | None = None,
        refinement: str = "lattice",
    ):
        templates = np.asarray(templates, dtype=np.float32)
        if templates.ndim != 4 or len(set(templates.shape[1:])) != 1:
            raise ValueError(
                f"TemplateMatcher: expected (m, d, d, d) templates, got {templates.shape}"
            )
        self.d = d = templates.shape[-1]
        self.device = torch.device(device)
        low = low_pass_px if low_pass_px is not None else d / 4
        self.filters = ParticleFilters(d, wedge_tilt_max_deg, ctf, self.device)
        # the coefficients outside every particle's wedge are never computed
        measured = self.filters.measured
        self.low = Band.up_to(d, low, self.device, measured)
        full = math.sqrt(spectrum_band_limit(d))
        # a refinement level tells apart rotations one lattice spacing apart, which moves the
        # coefficients at radius k by k * spacing (radians) cycles: beyond about
        # REFINEMENT_CYCLES / spacing they add work, not information
        radii = [
            min(full, max(low, refinement_cycles / math.radians(grid_step_deg / 2 ** (level + 1))))
            for level in range(refinement_levels)
        ]
        bands = {k: Band.up_to(d, k, self.device, measured) for k in set(radii)}
        self.level_bands = [bands[k] for k in radii]
        self.grid = torch.from_numpy(uniform_grid(grid_step_deg)).to(self.device)
        steps = [grid_step_deg / 2**level for level in range(refinement_levels)]
        self.steps, self.local = level_steps(refinement, steps, self.device)
        self.max_shift_px = float(max_shift_px)
        reach = min(self.max_shift_px, shift_reach_px)
        self.shifts = torch.from_numpy(shift_grid(reach, 1.0)).to(self.device)
        band = Band.up_to(d, min(full, CENTRING_CYCLES), self.device, measured)
        self.centring = Centring(
            templates, band, max_shift_px, guess_reach_px, self.device, guess_offsets_px
        )
        self.offsets, templates = self.centring.offsets, self.centring.templates
        self.templates = RotatedTemplates(templates, self.device)
        self.grid_templates = GridTemplates(self.templates, self.grid, self.low)

    def match(
        self,
        volumes: np.ndarray,
        template_index: np.ndarray,
        defocus_um: np.ndarray | None = None,
        centre_guess_px: np.ndarray | None = None,
        refine: bool = True,
    ) -> Matches:
        """Each particle's best rotation and shift of its template (``template_index`` ``(n,)``);
        ``centre_guess_px`` ``(n, 3)``: where each particle's centre is thought to be (x, y, z
        voxels, e.g. the encoder's shift head), the centring search then confined near it. With
        ``refine=False``, the global search's best only (scores on its band, ``fits`` NaN), for
        :meth:`refine` to take up: a caller weighing several templates per particle refines the
        one that fits best, as classification with adaptive oversampling does."""
        n = len(volumes)
        template_index = np.asarray(template_index, dtype=np.int64)
        spectra = self._spectra(volumes)
        guess = self.centring.guesses(centre_guess_px, n)
        rotations = torch.empty((n, 3, 3), dtype=torch.float64, device=self.device)
        shifts = torch.zeros((n, 3), dtype=torch.float64, device=self.device)
        score = torch.zeros(n, dtype=torch.float64, device=self.device)
        for c in np.unique(template_index):
            rows = torch.from_numpy(np.flatnonzero(template_index == c)).to(self.device)
            filters = self.filters.on(self.low, rows, defocus_um)
            weights = self.filters.shell_weights(self.low, rows, defocus_um)
            centring = self.filters.on(self.centring.band, rows, defocus_um)
            near = None if guess is None else guess[rows]
            centres = self.centring.centres(spectra[rows], int(c), centring, near)
            found = self._global(spectra[rows], int(c), filters, weights, centres)
            rotations[rows], shifts[rows], score[rows] = found
        if not refine:
            return self._unrefined(template_index, rotations, shifts, score)
        return self._refine_all(spectra, template_index, rotations, shifts, defocus_um, score)

    def refine(self, volumes: np.ndarray, start: Matches, defocus_um=None) -> Matches:
        """The local refinements of :meth:`match` from ``start``: these particles' global search
        (``refine=False``), each against its ``start.templates``."""
        rotations = torch.from_numpy(start.rotations).to(self.device, torch.float64)
        shifts = torch.from_numpy(start.shifts_px).to(self.device, torch.float64)
        if self.max_shift_px > 0:  # back to the frame of the templates on their centres
            shifts = shifts + self._moved_centres(start.templates, rotations)
        score = torch.from_numpy(start.scores).to(self.device, torch.float64)
        spectra = self._spectra(volumes)
        return self._refine_all(spectra, start.templates, rotations, shifts, defocus_um, score)

    def _moved_centres(self, template_index, rotations: torch.Tensor) -> torch.Tensor:
        """Where each template's given box centre goes ``(n, 3)``, measured from its centre of
        mass (the search frame), when the template is turned by ``rotations``."""
        own = self.offsets[torch.from_numpy(np.asarray(template_index)).to(self.device)]
        return (rotations @ own[..., None])[..., 0]

    def _unrefined(self, template_index, rotations, shifts, score) -> Matches:
        """The global search's result as :class:`Matches`, shifts for the templates as given."""
        if self.max_shift_px > 0:
            shifts = shifts - self._moved_centres(template_index, rotations)
        return Matches(
            rotations.cpu().numpy(),
            shifts.cpu().numpy(),
            score.cpu().numpy(),
            template_index,
            np.full(len(score), np.nan),
        )

    def match_any(
        self,
        volumes: np.ndarray,
        defocus_um: np.ndarray | None = None,
        centre_guess_px: np.ndarray | None = None,
    ) -> Matches:
        """Each particle searched against every template (multi-reference alignment): the
        template whose best grid rotation explains most of the particle wins (the scores are
        comparable: each is the particle's energy its template explains, with a free scale), and
        that pose is refined as in :meth:`match`; the global search costs once per template."""
        n = len(volumes)
        spectra = self._spectra(volumes)
        guess = self.centring.guesses(centre_guess_px, n)
        everyone = torch.arange(n, device=self.device)
        filters = self.filters.on(self.low, everyone, defocus_um)
        weights = self.filters.shell_weights(self.low, everyone, defocus_um)
        centring = self.filters.on(self.centring.band, everyone, defocus_um)
        rotations = torch.empty((n, 3, 3), dtype=torch.float64, device=self.device)
        shifts = torch.zeros((n, 3), dtype=torch.float64, device=self.device)
        top = torch.full((n,), -math.inf, dtype=torch.float64, device=self.device)
        template_index = np.zeros(n, dtype=np.int64)
        for c in range(len(self.templates)):
            centres = self.centring.centres(spectra, c, centring, guess)
            rotation, shift, score = self._global(spectra, c, filters, weights, centres)
            better = score > top
            rotations[better], shifts[better], top[better] = (
                rotation[better],
                shift[better],
                score[better],
            )
            template_index[better.cpu().numpy()] = c
        return self._refine_all(spectra, template_index, rotations, shifts, defocus_um, top)

    def _spectra(self, volumes: np.ndarray) -> torch.Tensor:
        """rfftn of each volume, flattened ``(n, d * d * (d // 2 + 1))`` complex64."""
        x = torch.as_tensor(np.asarray(volumes, np.float32), device=self.device)
        return torch.fft.rfftn(x, dim=(1, 2, 3)).reshape(len(x), -1)

    def _weighted(self, spectra: torch.Tensor, band: Band, filters: torch.Tensor):
        """The particles' coefficients on ``band`` as the scores weigh them (``w G X``), real and
        imaginary parts ``(p, K)``, and the weight ``w G^2`` of a template's power ``(p, K)``."""
        x = spectra[:, band.index] * (filters * band.weight)
        # times the conjugate of the phase that moves the origin to voxel 0: the templates are
        # then compared as sampled (``phased=False``), without that phase on every rotation
        x = x * torch.complex(band.centre_cos, -band.centre_sin)
        return x.real.contiguous(), x.imag.contiguous(), filters**2 * band.weight

    def _global(self, spectra, template: int, filters, shell_weight, centres: torch.Tensor):
        """Best grid rotation ``(p, 3, 3)``, shift ``(p, 3)`` and score ``(p,)`` per particle
        (rows of ``spectra``, all matched to ``template``; ``filters`` and ``shell_weight`` on
        the low band): every grid rotation scored with the particle at its centre, then the
        ``GRID_CANDIDATES`` best of them with every shift around it (``shift_reach_px``)."""
        band, p = self.low, len(spectra)
        xr, xi, _ = self._weighted(spectra, band, filters)
        cos, sin = shift_phases(band, centres, self.d)  # (p, K)
        xr, xi = xr * cos - xi * sin, xr * sin + xi * cos  # each particle at its centre
        # the phase of centre + shift is the product of the two phases
        cos, sin = (c[None] for c in shift_phases(band, self.shifts, self.d))  # (1, S, K)
        features = torch.cat(
            [xr[:, None] * cos - xi[:, None] * sin, xr[:, None] * sin + xi[:, None] * cos], -1
        )  # (p, S, 2K), the shifts nearest the centre first
        ranked = features[:, :RANKING_SHIFTS]
        candidates = self.grid_templates.best(template, ranked, shell_weight, GRID_CANDIDATES)
        rotated, shell_power = self.grid_templates.rows(template, candidates)  # (p, N, 2K|Q)
        cross = torch.bmm(features, rotated.transpose(1, 2))  # (p, S, N)
        power = (shell_power * shell_weight[:, None]).sum(-1)  # (p, N)
        score = _fit(cross, power[:, None, :])
        tried = centres[:, None, :] + self.shifts[None]  # (p, S, 3)
        reach = self.max_shift_px + float(self.offsets[template].norm())
        score.masked_fill_(~(tried.norm(dim=-1) <= reach + 1e-9)[:, :, None], -1.0)
        value, where = score.reshape(p, -1).max(dim=1)
        everyone = torch.arange(p, device=self.device)
        best = candidates[everyone, where % candidates.shape[1]]
        return self.grid[best], tried[everyone, where // candidates.shape[1]], value.double()

    def _refine_all(self, spectra, template_index, rotations, shifts, defocus_um, score) -> Matches:
        """The local refinements, level after level, from each particle's global best (``score``:
        the global search's, reported when there is no refinement level): a finer lattice of
        rotations, then (when shifts are searched) a finer lattice of shifts, each level on its
        own band (:attr:`level_bands`). Shifts are found for the templates moved to their centres
        and reported for the templates as given."""
        everyone = torch.arange(len(rotations), device=self.device)
        if self.max_shift_px > 0:  # the global search's shift, brought within max_shift_px
            origin = self._moved_centres(template_index, rotations)
            shifts = within_ball(shifts - origin, self.max_shift_px) + origin
        for level, band in enumerate(self.level_bands):
            filters = self.filters.on(band, everyone, defocus_um)
            xr, xi, power_weight = self._weighted(spectra, band, filters)
            cos, sin = shift_phases(band, shifts, self.d)  # (n, K)
            centred = (xr * cos - xi * sin, xr * sin + xi * cos)
            rotations, template, score = self._refine_rotations(
                centred, power_weight, template_index, rotations, level, band
            )
            if self.max_shift_px > 0:
                origin = self._moved_centres(template_index, rotations)
                # the first level also steps whole voxels: the centre the global search started
                # from may be off by more than the finer steps add up to
                for step in (1.0, 0.5) if level == 0 else (0.5 / 2**level,):
                    shifts, score = self._refine_shifts(
                        (xr, xi), template, power_weight, shifts - origin, step, band, origin
                    )
        if self.max_shift_px > 0:
            shifts = shifts - self._moved_centres(template_index, rotations)
        fits = torch.full_like(score, math.nan)  # no refinement level: no score to share
        if self.level_bands:  # the particle's power where it was measured, weighed as the
            # score weighs it: by Cauchy-Schwarz no template explains more of it than all
            power = spectra[:, band.index].abs().square() * (filters != 0) * band.weight
            fits = score / power.sum(-1).double().clamp(min=1e-30)
        return Matches(
            rotations.cpu().numpy(),
            shifts.cpu().numpy(),
            score.cpu().numpy(),
            np.asarray(template_index, dtype=np.int64),
            fits.clamp(0.0, 1.0).cpu().numpy(),
        )

    def _refine_rotations(self, x, power_weight, template_index, best, level, band):
        """Each particle's best among ``best @ offsets`` (the identity first) or, where it scores
        higher, the turn its level's step proposes (:class:`QuadraticPeak`'s fitted peak or
        :class:`NewtonStep`'s step); also the winning template coefficients (real, imaginary
        ``(n, K)``)."""
        offsets, step, n = self.local[level], self.steps[level], len(best)
        new = torch.empty_like(best)
        chosen = (torch.empty_like(x[0]), torch.empty_like(x[1]))
        score = torch.empty(n, dtype=torch.float64, device=self.device)
        per = max(1, LOCAL_CHUNK // (len(offsets) + 1))
        for c in np.unique(template_index):
            members = torch.from_numpy(np.flatnonzero(template_index == c)).to(self.device)
            for rows in members.split(per):
                everyone = torch.arange(len(rows), device=self.device)
                lattice = best[rows, None] @ offsets[None]  # (k, m, 3, 3)
                particles, weight = (x[0][rows], x[1][rows]), power_weight[rows]
                if isinstance(step, NewtonStep):  # the step reads sums over the probes
                    sums = self.templates.probe_sums(int(c), lattice, band, particles, weight)
                    s, turn = step.scores(sums), step.offsets(sums)
                else:  # the quadratic reads the lattice's scores
                    s = _fit(*self.templates.correlate(int(c), lattice, band, particles, weight))
                    turn = step.offsets(s)
                value, j = s.max(dim=1)
                fitted = best[rows] @ rotation_matrices(turn).to(best.dtype)  # (k, 3, 3)
                # the turn and the best of those sampled (neither kept): their coefficients
                tried = torch.stack([fitted, lattice[everyone, j]], 1)
                f, (fr, fi) = self._scores(int(c), tried, particles, weight, band)
                use = f[:, 0] > value
                new[rows] = torch.where(use[:, None, None], fitted, lattice[everyone, j])
                chosen[0][rows] = torch.where(use[:, None], fr[:, 0], fr[:, 1])
                chosen[1][rows] = torch.where(use[:, None], fi[:, 0], fi[:, 1])
                score[rows] = torch.maximum(value, f[:, 0]).double()
        return new, chosen, score

    def _scores(self, template: int, rotations, particles, power_weight, band):
        """Scores ``(k, m)`` of particles ``(k, K)`` (real, imaginary) against ``template``
        turned by each of ``rotations`` ``(k, m, 3, 3)``, with those turned templates'
        coefficients (real, imaginary ``(k, m, K)``)."""
        k, m = rotations.shape[:2]
        tr, ti = self.templates.sample(template, rotations.reshape(k * m, 3, 3), band, phased=False)
        tr, ti = tr.reshape(k, m, -1), ti.reshape(k, m, -1)
        return _fit(*stored_sums((tr, ti), particles, power_weight)), (tr, ti)

    def _refine_shifts(self, x, template, power_weight, shifts, step_px, band, origin):
        """Each particle's best shift among ``shifts`` plus a lattice of ``step_px`` (within
        ``max_shift_px`` of the centre), its template at the rotation just found; the search
        frame's shifts are these plus ``origin`` (where the template's own centre went)."""
        (xr, xi), (tr, ti) = x, template
        lattice = torch.from_numpy(shift_grid(math.sqrt(3) * step_px + 1e-6, step_px))
        candidates = shifts[:, None, :] + lattice.to(self.device)[None]  # (n, S, 3)
        inside = candidates.norm(dim=-1) <= self.max_shift_px + 1e-9
        qr, qi = xr * tr + xi * ti, xi * tr - xr * ti  # x conj(t)
        cos, sin = shift_phases(band, shifts + origin, self.d)  # (n, K)
        qr, qi = qr * cos - qi * sin, qr * sin + qi * cos  # at the current shift
        cos, sin = shift_phases(band, lattice.to(self.device), self.d)  # (S, K), shared
        cross = qr @ cos.T - qi @ sin.T  # (n, S)
        power = (power_weight * (tr * tr + ti * ti)).sum(-1)[:, None]
        score = torch.where(inside, _fit(cross, power), -1.0)
        value, j = score.max(dim=1)
        return candidates[torch.arange(len(xr)), j] + origin, value.double()


def _fit(cross: torch.Tensor, power: torch.Tensor) -> torch.Tensor:
    """The least-squares score with a free positive scale, ``max(0, cross)^2 / power``."""
    return cross.clamp(min=0).square_() / power.clamp(min=1e-30)
