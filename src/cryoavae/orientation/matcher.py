"""Each particle's orientation by matching it against the model's own canonical particle.

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
   on the Fourier coefficients below a low pass. A template turned by ``R`` is sampled at the
   rotated frequencies (the simulator's own kernel,
   :func:`~cryoavae.geometry.volume_rotation.rotated_coefficients`), and compared with the particle
   as it was measured: each template coefficient is multiplied by the particle's filter ``G`` (0 in
   the missing wedge; its CTF when one is given).
   The score is the least-squares fit with a free positive scale,
   ``max(0, <G T_R, X>)^2 / |G T_R|^2``.
3. Local refinement around each particle's best, at the full band, on successively finer
   lattices of rotations (each half the previous step; :func:`local_grid`).

Scores and filters are real: an rfftn coefficient of a real volume stands for itself and its
conjugate, so each is counted twice (once on the planes ``kx = 0`` and ``kx = d/2``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.fft
from scipy.spatial.transform import Rotation

from cryoavae.geometry.ctf import ctf_1d
from cryoavae.geometry.volume_rotation import (
    band_limited_coefficients,
    padded_spectra,
    rotated_coefficients,
    spectrum_band_limit,
)
from cryoavae.geometry.wedge import missing_wedge_mask

__all__ = ["CtfModel", "TemplateMatcher", "local_grid", "uniform_grid"]

GRID_CHUNK = 2048  # grid rotations scored at once (a (particles, chunk) score matrix)
LOCAL_CHUNK = 2048  # candidate rotations sampled at once in the local refinement (~130 MB)


def _spectra(volumes: np.ndarray) -> np.ndarray:
    """rfftn of each volume, flattened ``(n, d * d * (d // 2 + 1))``."""
    volumes = np.asarray(volumes, np.float32)
    return scipy.fft.rfftn(volumes, axes=(1, 2, 3)).reshape(len(volumes), -1)


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
class _Band:
    """rfftn coefficients up to a radius: where they sit, their frequencies, their weight."""

    flat: np.ndarray  # (K,) int64 into the (d, d, d//2 + 1) rfftn array
    frequencies: np.ndarray  # (K, 3) int64 (x, y, z), cycles per box
    multiplicity: np.ndarray  # (K,) float64: 2, or 1 on the planes kx = 0 and kx = d/2

    @classmethod
    def up_to(cls, d: int, k_max: float) -> _Band:
        fz = np.rint(np.fft.fftfreq(d) * d)[:, None, None]
        fx = np.arange(d // 2 + 1)[None, None, :]
        keep = fx**2 + fz.reshape(1, d, 1) ** 2 + fz**2 <= k_max**2
        flat, frequencies = band_limited_coefficients(d, keep)
        edge = (frequencies[:, 0] == 0) | (frequencies[:, 0] == d // 2)
        return cls(flat, frequencies, np.where(edge, 1.0, 2.0))


class TemplateMatcher:
    """Orientations of particles against templates ``(m, d, d, d)`` (real space, centred on
    voxel ``d // 2``, in the model's canonical frame).

    ``wedge_tilt_max_deg``: the particles lack the missing wedge of a tilt series about y through
    that angle (None: nothing missing). ``ctf``: they carry a CTF at the defocus given to
    :meth:`match` (None: no CTF). ``low_pass_px``: radius (cycles per box) of the global search;
    default ``d / 4``.
    """

    def __init__(
        self,
        templates: np.ndarray,
        wedge_tilt_max_deg: float | None = None,
        ctf: CtfModel | None = None,
        grid_step_deg: float = 10.0,
        refinement_levels: int = 3,
        low_pass_px: float | None = None,
    ):
        templates = np.asarray(templates, dtype=np.float32)
        if templates.ndim != 4 or len(set(templates.shape[1:])) != 1:
            raise ValueError(
                f"TemplateMatcher: expected (m, d, d, d) templates, got {templates.shape}"
            )
        self.d = d = templates.shape[-1]
        self.spectra = padded_spectra(templates)
        self.wedge_tilt_max_deg = wedge_tilt_max_deg
        self.ctf = ctf
        self.low = _Band.up_to(d, low_pass_px if low_pass_px is not None else d / 4)
        self.full = _Band.up_to(d, math.sqrt(spectrum_band_limit(d)))
        self.grid = uniform_grid(grid_step_deg)
        self.local = [local_grid(grid_step_deg / 2**level) for level in range(refinement_levels)]

    def match(
        self,
        volumes: np.ndarray,
        template_index: np.ndarray,
        defocus_um: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each particle's best rotation ``(n, 3, 3)`` of its template (``template_index``
        ``(n,)``) and its score ``(n,)``: the particle is that template turned actively by it
        (:mod:`cryoavae.geometry.rotations`)."""
        n = len(volumes)
        template_index = np.asarray(template_index, dtype=np.int64)
        spectra = _spectra(volumes)
        best = np.empty((n, 3, 3))
        for c in np.unique(template_index):
            rows = np.flatnonzero(template_index == c)
            filters = self._filters(self.low, rows, defocus_um)
            best[rows], _ = self._global(spectra[rows], c, filters)
        return self._refine_all(spectra, template_index, best, defocus_um)

    def match_any(
        self, volumes: np.ndarray, defocus_um: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each particle searched against every template (multi-reference alignment): the
        template whose best grid rotation explains most of the particle wins (the scores are
        comparable: each is the particle's energy its template explains, with a free scale), and
        that rotation is refined as in :meth:`match`. Returns rotations ``(n, 3, 3)``, scores
        ``(n,)`` and the winning template ``(n,)``; the global search costs once per template."""
        n = len(volumes)
        spectra = _spectra(volumes)
        filters = self._filters(self.low, np.arange(n), defocus_um)
        best, top = np.empty((n, 3, 3)), np.full(n, -np.inf)
        template_index = np.zeros(n, dtype=np.int64)
        for c in range(len(self.spectra)):
            rotation, score = self._global(spectra, c, filters)
            better = score > top
            best[better], top[better], template_index[better] = rotation[better], score[better], c
        rotations, score = self._refine_all(spectra, template_index, best, defocus_um)
        return rotations, score, template_index

    def _refine_all(self, spectra, template_index, best, defocus_um):
        """The local refinements, level after level, from each particle's ``best``."""
        filters = self._filters(self.full, np.arange(len(best)), defocus_um)
        score = np.zeros(len(best))
        for offsets in self.local:
            best, score = self._refine(spectra, template_index, filters, best, offsets)
        return best, score

    def _filters(self, band: _Band, rows: np.ndarray, defocus_um) -> np.ndarray:
        """``(len(rows), K)``: what each particle measured of each coefficient of ``band``."""
        measured = np.ones(len(band.flat))
        if self.wedge_tilt_max_deg is not None:
            measured = missing_wedge_mask(self.d, self.wedge_tilt_max_deg).ravel()[band.flat]
        if self.ctf is None or defocus_um is None:
            return np.broadcast_to(measured.astype(np.float64), (len(rows), len(band.flat)))
        radius = np.linalg.norm(band.frequencies, axis=1) / (self.d * self.ctf.voxel_size_angstrom)
        c = self.ctf
        ctf = ctf_1d(
            radius, np.asarray(defocus_um)[rows, None], c.voltage_kv, c.cs_mm, c.amplitude_contrast
        )
        return ctf * measured

    def _global(self, spectra: np.ndarray, template: int, filters: np.ndarray):
        """Best grid rotation ``(p, 3, 3)`` and its score ``(p,)`` per particle (rows of
        ``spectra`` all matched to ``template``)."""
        x = spectra[:, self.low.flat] * (filters * self.low.multiplicity)  # (p, K): w G X
        x_features = np.concatenate([x.real, x.imag], axis=1).astype(np.float32)  # (p, 2K)
        power_weight = (filters**2 * self.low.multiplicity).astype(np.float32)  # (p, K)
        top = np.full(len(spectra), -np.inf)
        best = np.zeros(len(spectra), dtype=np.int64)
        source = np.full(GRID_CHUNK, template)
        for start in range(0, len(self.grid), GRID_CHUNK):
            rotations = self.grid[start : start + GRID_CHUNK]
            t = rotated_coefficients(
                self.spectra, rotations, self.d, self.low.frequencies, source[: len(rotations)]
            )
            cross = x_features @ np.concatenate([t.real, t.imag], axis=1).T  # (p, chunk)
            power = power_weight @ (np.abs(t) ** 2).T
            score = np.maximum(cross, 0) ** 2 / np.maximum(power, 1e-30)
            j = score.argmax(axis=1)
            value = score[np.arange(len(j)), j]
            better = value > top
            top[better], best[better] = value[better], start + j[better]
        return self.grid[best], top

    def _refine(self, spectra, template_index, filters, best, offsets):
        """Each particle's best among ``best @ offsets`` (the identity first), full band."""
        n, m = len(best), len(offsets)
        x = spectra[:, self.full.flat] * (filters * self.full.multiplicity)  # (n, K)
        power_weight = filters**2 * self.full.multiplicity
        new, score = np.empty_like(best), np.empty(n)
        per = max(1, LOCAL_CHUNK // m)
        for start in range(0, n, per):
            rows = slice(start, start + per)
            k = len(best[rows])
            candidates = (best[rows, None] @ offsets[None]).reshape(k * m, 3, 3)
            t = rotated_coefficients(
                self.spectra,
                candidates,
                self.d,
                self.full.frequencies,
                np.repeat(template_index[rows], m),
            ).reshape(k, m, -1)
            cross = np.einsum("pk,pmk->pm", x[rows].real, t.real) + np.einsum(
                "pk,pmk->pm", x[rows].imag, t.imag
            )
            power = np.einsum("pk,pmk->pm", power_weight[rows], np.abs(t) ** 2)
            s = np.maximum(cross, 0) ** 2 / np.maximum(power, 1e-30)
            j = s.argmax(axis=1)
            new[rows] = candidates.reshape(k, m, 3, 3)[np.arange(k), j]
            score[rows] = s[np.arange(k), j]
        return new, score
