"""Each particle's centre, found before any rotation is tried.

Why: a picked particle is rarely centred to the voxel, and searching every whole-voxel shift with
every rotation costs the shifts' number (123 within 3 voxels) times the rotations. A template's
spherical average looks the same in every orientation, so a particle's correlation with it, as
measured (wedge, CTF), peaks where the particle's centre sits, over every shift at once by one
inverse FFT, to a fraction of a voxel (:func:`~.fourier.correlation_peaks`). For an elongated
complex that peak can sit a voxel or more off; a caller with a better guess (the encoder's shift
head) confines the search to its neighbourhood.
"""

from __future__ import annotations

import numpy as np
import torch

from cryoavae.geometry.translation import moved
from cryoavae.orientation.fourier import Band, correlation_peaks, radial_average, within_ball

__all__ = ["Centring"]


class Centring:
    """The centring search of templates ``(m, d, d, d)`` on ``band``, for particles whose centres
    sit within ``max_shift_px`` of the box centre (0: particles are centred, nothing searched).

    ``offsets`` ``(m, 3)`` (x, y, z voxels): where each template's own centre sits, and
    ``templates``: the templates moved to put it on the box centre, so that a particle's centre,
    found before its rotation, is where its template's centre went whatever the rotation.
    ``guess_reach_px``: how far from a caller's guess the peak may be; ``guess_offsets_px``
    ``(m, 3)``: where each template's box centre sits in the frame the guesses are made in (a
    decoder draws its particle about its own centre, the templates were moved onto their mass),
    which the unknown rotation turns, so the reach grows by its length (None: the same frame)."""

    def __init__(
        self, templates, band: Band, max_shift_px, guess_reach_px, device, guess_offsets_px=None
    ):
        self.band, self.device = band, device
        self.d = templates.shape[-1]
        self.max_shift_px, self.guess_reach_px = float(max_shift_px), float(guess_reach_px)
        self.offsets = torch.zeros((len(templates), 3), dtype=torch.float64, device=device)
        self.frames = torch.zeros_like(self.offsets)
        if guess_offsets_px is not None:
            frames = np.asarray(guess_offsets_px, dtype=np.float64)
            if frames.shape != (len(templates), 3):
                raise ValueError(
                    f"guess_offsets_px: expected ({len(templates)}, 3), got {frames.shape}"
                )
            self.frames = torch.from_numpy(frames).to(device)
        self.templates, self.radial = templates, None
        if self.max_shift_px > 0:
            self.radial = self._radial_spectra(templates)
            spectra = torch.fft.rfftn(torch.from_numpy(templates), dim=(1, 2, 3)).to(device)
            ones = torch.ones((len(templates), len(band.flat)), device=device)
            every = np.arange(len(templates))
            self.offsets = self.centres(spectra.reshape(len(templates), -1), every, ones)
            self.templates = moved(templates, -self.offsets.cpu().numpy())
            self.radial = self._radial_spectra(self.templates)

    def _radial_spectra(self, templates: np.ndarray) -> torch.Tensor:
        """rfftn ``(m, d, d, d // 2 + 1)`` of each template's spherical average about the box
        centre; like a particle's, its phase origin is voxel 0, so their correlation peaks at
        index ``t`` (mod d) for a particle whose centre sits at ``t``."""
        radial = torch.from_numpy(radial_average(templates))
        return torch.fft.rfftn(radial, dim=(1, 2, 3)).to(self.device)

    def guesses(self, centre_guess_px, n: int) -> torch.Tensor | None:
        """A caller's centre guesses ``(n, 3)`` brought within ``max_shift_px`` of the box
        centre (None without guesses or without a translation search)."""
        if centre_guess_px is None or self.max_shift_px <= 0:
            return None
        guess = torch.as_tensor(np.asarray(centre_guess_px, np.float64), device=self.device)
        if guess.shape != (n, 3):
            raise ValueError(f"centre_guess_px: expected ({n}, 3), got {tuple(guess.shape)}")
        return within_ball(guess, self.max_shift_px + float(self.frames.norm(dim=1).max()))

    def centres(self, spectra: torch.Tensor, template, filters: torch.Tensor, guess=None):
        """Each particle's centre ``(p, 3)`` (x, y, z voxels, within ``max_shift_px`` of where
        its template's centre can go): the peak of its correlation (``spectra`` flattened rfftn
        ``(p, ...)``, times what it measured, ``filters`` ``(p, K)``) with its template's
        spherical average; with a ``guess`` ``(p, 3)``, the peak within ``guess_reach_px`` of it
        plus how far the template's centre sits from the one the guess refers to (its own offset
        and its frame's)."""
        p, d = len(spectra), self.d
        if self.radial is None:
            return torch.zeros((p, 3), dtype=torch.float64, device=self.device)
        band = self.band
        reference = self.radial.reshape(len(self.radial), -1)[:, band.index][template]
        own = self.offsets[template].norm(dim=-1).reshape(-1)
        limit = (self.max_shift_px + own).expand(p)
        full = torch.zeros((p, d * d * (d // 2 + 1)), dtype=spectra.dtype, device=self.device)
        full[:, band.index] = spectra[:, band.index] * reference.conj() * filters
        cc = torch.fft.irfftn(full.reshape(p, d, d, d // 2 + 1), s=(d, d, d), dim=(1, 2, 3))
        if guess is None:
            return correlation_peaks(cc, limit)
        beside = (self.offsets[template] + self.frames[template]).norm(dim=-1).reshape(-1)
        return correlation_peaks(cc, limit, guess, (self.guess_reach_px + beside).expand(p))
