"""Contrast transfer function of the microscope, as a 3-D filter for subtomograms.

Formulas (weak-phase approximation, no astigmatism, no envelope):

- electron wavelength ``lambda = 12.2643 / sqrt(V (1 + 0.978466e-6 V))`` Å for ``V`` in volts
  (0.01969 Å at 300 kV);
- phase ``chi(k) = pi lambda df k^2 - (pi / 2) Cs lambda^3 k^4`` with ``k`` in 1/Å, defocus ``df``
  in Å (positive = underfocus) and ``Cs`` in Å;
- ``CTF(k) = sqrt(1 - w^2) sin(chi) + w cos(chi)`` for amplitude contrast ``w`` (``CTF(0) = w > 0``:
  protein keeps positive contrast at low resolution).

The 3-D CTF of a subtomogram is ``CTF(|k|)``: each tilt image's CTF fills the central slice it
contributes, and the in-plane frequency of a 3-D point on that slice has magnitude ``|k|``. (The
defocus gradient across a tilted specimen is ignored.) Volumes use numpy's ``rfftn`` layout over
the last three axes ``(z, y, x)``: shape ``(d, d, d // 2 + 1)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "CtfModel",
    "ctf_1d",
    "ctf_radial_table",
    "electron_wavelength_angstrom",
    "frequency_squared_index",
]


@dataclass(frozen=True)
class CtfModel:
    """The microscope whose CTF (at each particle's defocus) the particles carry."""

    voxel_size_angstrom: float
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07


def electron_wavelength_angstrom(voltage_kv: float | np.ndarray) -> np.ndarray:
    """Relativistic electron wavelength (Å) at an acceleration voltage in kV."""
    volts = np.asarray(voltage_kv, dtype=np.float64) * 1e3
    return 12.2643 / np.sqrt(volts * (1.0 + 0.978466e-6 * volts))


def ctf_1d(
    frequency_per_angstrom,
    defocus_um,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
):
    """CTF at spatial frequencies ``|k|`` (1/Å); arguments broadcast against each other. NumPy
    arrays give float64; torch tensors (both arguments) keep their device and dtype, so a model
    computes each batch's CTF where its particles are."""
    xp = torch if isinstance(frequency_per_angstrom, torch.Tensor) else np
    if xp is np:
        frequency_per_angstrom = np.asarray(frequency_per_angstrom, dtype=np.float64)
        defocus_um = np.asarray(defocus_um, dtype=np.float64)
    k2 = frequency_per_angstrom**2
    wavelength = float(electron_wavelength_angstrom(voltage_kv))
    defocus_angstrom = defocus_um * 1e4
    cs_angstrom = cs_mm * 1e7
    chi = (
        np.pi * wavelength * defocus_angstrom * k2
        - 0.5 * np.pi * cs_angstrom * wavelength**3 * k2**2
    )
    return np.sqrt(1.0 - amplitude_contrast**2) * xp.sin(chi) + amplitude_contrast * xp.cos(chi)


def frequency_squared_index(box_size_px: int) -> np.ndarray:
    """Integer ``kx^2 + ky^2 + kz^2`` (frequency in cycles per box) on the rfftn grid ``(d, d, h)``.

    The CTF depends on ``|k|`` only, so a filter for the whole grid is a lookup into a table of at
    most ``3 (d/2)^2 + 1`` values (see :func:`ctf_radial_table`).
    """
    d = int(box_size_px)
    full = np.rint(np.fft.fftfreq(d) * d).astype(np.int32) ** 2  # (d,) for z and y
    half = np.arange(d // 2 + 1, dtype=np.int32) ** 2  # (h,) for x
    return full[:, None, None] + full[None, :, None] + half[None, None, :]


def ctf_radial_table(
    box_size_px: int,
    voxel_size_angstrom: float,
    defocus_um: np.ndarray,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
) -> np.ndarray:
    """CTF per particle at every integer ``|k|^2`` of the grid: ``(n, 3 (d//2)^2 + 1)`` float32.

    ``table[:, frequency_squared_index(d)]`` is each particle's 3-D CTF in rfftn layout,
    ``(n, d, d, d // 2 + 1)``; the simulator looks entries up instead of building that volume.
    """
    d = int(box_size_px)
    k2_index = np.arange(3 * (d // 2) ** 2 + 1)
    frequency = np.sqrt(k2_index) / (d * voxel_size_angstrom)  # 1/Å
    defocus = np.atleast_1d(np.asarray(defocus_um, dtype=np.float64))[:, None]
    return ctf_1d(frequency, defocus, voltage_kv, cs_mm, amplitude_contrast).astype(np.float32)
