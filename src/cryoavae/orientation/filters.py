"""What each particle measured of a band's coefficients, as the matcher's scores weigh them: the
missing wedge every particle shares (0 or 1) times the particle's own CTF at its defocus."""

from __future__ import annotations

import numpy as np
import torch

from cryoavae.geometry.ctf import CtfModel, ctf_1d
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.orientation.fourier import Band

__all__ = ["ParticleFilters"]


class ParticleFilters:
    """The filters of ``d``-voxel particles that lack the missing wedge of a tilt series through
    ``wedge_tilt_max_deg`` (None: nothing missing) and carry ``ctf`` (None: no CTF), on the
    device the work runs on."""

    def __init__(
        self,
        d: int,
        wedge_tilt_max_deg: float | None,
        ctf: CtfModel | None,
        device: torch.device,
    ):
        self.d, self.ctf, self.device = d, ctf, device
        self.measured = None
        if wedge_tilt_max_deg is not None:
            self.measured = missing_wedge_mask(d, wedge_tilt_max_deg)

    def on(self, band: Band, rows: torch.Tensor, defocus_um) -> torch.Tensor:
        """``(len(rows), K)`` float32: what each particle ``rows`` measured of each coefficient
        of ``band``."""
        measured = np.ones(len(band.flat))
        if self.measured is not None:
            measured = self.measured.ravel()[band.flat]
        ctf = self._ctf(band, rows, defocus_um)
        if ctf is None:
            values = np.broadcast_to(measured, (len(rows), len(band.flat)))
        else:
            values = ctf[:, band.shell] * measured
        return torch.from_numpy(np.array(values, dtype=np.float32)).to(self.device)

    def shell_weights(self, band: Band, rows: torch.Tensor, defocus_um) -> torch.Tensor:
        """``(len(rows), Q)`` float32: the weight of a template's power on each of ``band``'s
        shells in each particle's score, its filter squared: the CTF's square (1 without one).
        The wedge, the filter's other factor, is 0 or 1 and the matcher's bands hold only the
        coefficients it keeps, so on those bands it is 1."""
        ctf = self._ctf(band, rows, defocus_um)
        values = np.ones((len(rows), len(band.shell_radius))) if ctf is None else ctf**2
        return torch.from_numpy(values.astype(np.float32)).to(self.device)

    def _ctf(self, band: Band, rows: torch.Tensor, defocus_um) -> np.ndarray | None:
        """``(len(rows), Q)`` float64: each particle's CTF on each of ``band``'s shells (it
        depends on ``|k|`` alone); None without a CTF."""
        if self.ctf is None or defocus_um is None:
            return None
        c = self.ctf
        radius = band.shell_radius / (self.d * c.voxel_size_angstrom)
        focus = np.asarray(defocus_um)[rows.cpu().numpy(), None]
        return ctf_1d(radius, focus, c.voltage_kv, c.cs_mm, c.amplitude_contrast)
