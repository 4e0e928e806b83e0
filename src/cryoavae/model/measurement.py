"""What a subtomogram measures of a volume: its Fourier components outside the missing wedge, each
multiplied by the microscope's CTF at the particle's defocus.

The missing wedge. A subtomogram lacks the double wedge of frequencies the tilt range never sampled
(:func:`cryoavae.geometry.wedge.missing_wedge_mask`: tilt axis y, beam z), in the frame of the
tomogram, whatever the particle's orientation. A decoder that renders the whole particle is
compared with data that lack that wedge: under a squared error the rendering's power inside the
wedge counts as error, and how much power falls there depends on the orientation, so the loss
and the pose search prefer orientations that hide the particle's power in the wedge rather than
the true one. Masking the rendering as the data are masked (the constrained correlation of
subtomogram averaging) compares only what was measured.

The CTF. A particle is its density filtered by the CTF of its defocus (:mod:`cryoavae.geometry.ctf`:
a function of ``|k|``, so the same in every orientation). A decoder compared with such particles
learns their CTF-filtered average (at 2-4 um and 10 Å voxels: the low frequencies damped five to
ten times, a band past the first zero inverted), and its class means then fit their maps worse
than a shapeless blob of the same radial profile does. Filtering each rendering by its particle's
CTF before the comparison leaves the decoder to model the density itself: the defocus spread fills
each particle's zeros with another's.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cryoavae.geometry.ctf import CtfModel, ctf_1d, frequency_squared_index
from cryoavae.geometry.wedge import missing_wedge_mask


class Measurement(nn.Module):
    """Volumes ``(n, ..., d, d, d)`` -> what the data measure of them: the missing wedge of a tilt
    series through ``+-tilt_max_deg`` about y removed (None: no wedge), and each volume filtered by
    the CTF of ``microscope`` at its particle's defocus (None: no CTF). For a box of ``d`` and of
    ``d // 2``, the pose search's half-size grid (the same physical frequencies: its voxels are
    twice as large)."""

    def __init__(
        self, box_size_px: int, tilt_max_deg: float | None, microscope: CtfModel | None = None
    ):
        super().__init__()
        self.box_size_px, self.microscope = box_size_px, microscope
        self.with_wedge = tilt_max_deg is not None
        for name, size in (("full", box_size_px), ("half", box_size_px // 2)):
            if self.with_wedge:
                mask = torch.from_numpy(missing_wedge_mask(size, tilt_max_deg)).float()
                self.register_buffer(f"mask_{name}", mask, persistent=False)
            if microscope is not None:
                # |k| in 1/Å at each rfftn voxel: index k cycles per box of d voxels of size a
                # (or d/2 of 2a) is the frequency k / (d a) on both grids
                cycles = np.sqrt(frequency_squared_index(size))
                frequency = cycles / (box_size_px * microscope.voxel_size_angstrom)
                self.register_buffer(
                    f"frequency_{name}", torch.from_numpy(frequency).float(), persistent=False
                )

    def _grid(self, what: str, d: int) -> torch.Tensor:
        name = "full" if d == self.box_size_px else "half"
        if d not in (self.box_size_px, self.box_size_px // 2):
            raise ValueError(f"Measurement: no {what} for a box of {d}")
        return getattr(self, f"{what}_{name}")

    def ctf(self, d: int, defocus_um: torch.Tensor) -> torch.Tensor:
        """Each particle's CTF ``(n, d, d, d // 2 + 1)`` on the rfftn grid of a box of ``d``."""
        m = self.microscope
        frequency = self._grid("frequency", d)
        defocus = defocus_um.to(frequency).reshape(-1, 1, 1, 1)
        return ctf_1d(frequency, defocus, m.voltage_kv, m.cs_mm, m.amplitude_contrast)

    def forward(
        self, volumes: torch.Tensor, defocus_um: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``defocus_um`` ``(n,)``: each volume's particle's defocus (µm), needed with a CTF;
        volumes beyond the first axis of ``n`` (e.g. a channel) share their particle's."""
        d = volumes.shape[-1]
        spectrum = torch.fft.rfftn(volumes.float(), dim=(-3, -2, -1))
        if self.with_wedge:
            spectrum = spectrum * self._grid("mask", d)
        if self.microscope is not None:
            if defocus_um is None:
                raise ValueError("Measurement: the CTF needs each particle's defocus")
            ctf = self.ctf(d, defocus_um)  # (n, d, d, h): one per leading index of volumes
            shared = [1] * (volumes.dim() - 4)  # e.g. a channel axis
            spectrum = spectrum * ctf.reshape(len(ctf), *shared, *ctf.shape[1:])
        out = torch.fft.irfftn(spectrum, s=(d, d, d), dim=(-3, -2, -1))
        return out.to(volumes.dtype)
