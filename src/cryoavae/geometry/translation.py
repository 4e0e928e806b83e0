"""Volumes moved by sub-voxel shifts, as Fourier phase ramps.

A volume shifted by ``t`` voxels (``(x, y, z)``) has its coefficients multiplied by
``exp(-2 pi i f.t / d)``: exact for band-limited content, the box wrapping around. The matcher
moves its templates this way, averaging moves particles onto their found centres, and particle
images re-centred by an earlier model's shifts are read this way. The model's torch versions
import torch when first called: reading particles (which re-centres them with :func:`moved`)
should not cost a process torch's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["moved", "moved_tensor", "shift_ramp"]


def moved(volumes: np.ndarray, shifts_px: np.ndarray) -> np.ndarray:
    """Each volume ``(m, d, d, d)`` moved by its shift ``(m, 3)`` (x, y, z voxels) as a Fourier
    phase: exact to a fraction of a voxel, the box wrapping around. float32 out."""
    volumes = np.asarray(volumes, dtype=np.float64)
    d = volumes.shape[-1]
    shifts = np.asarray(shifts_px, dtype=np.float64).reshape(-1, 3, 1, 1, 1)
    kz, ky = np.fft.fftfreq(d)[:, None, None], np.fft.fftfreq(d)[None, :, None]
    kx = np.fft.rfftfreq(d)[None, None, :]
    phase = np.exp(-2j * np.pi * (kx * shifts[:, 0] + ky * shifts[:, 1] + kz * shifts[:, 2]))
    spectra = np.fft.rfftn(volumes, axes=(1, 2, 3)) * phase
    return np.fft.irfftn(spectra, s=(d, d, d), axes=(1, 2, 3)).astype(np.float32)


def shift_ramp(grid: tuple[int, ...], shifts_px: torch.Tensor) -> torch.Tensor:
    """The phases ``(n, 1, *rfft grid)`` complex64 that move images of ``grid`` (cubic, 2-D or
    3-D) by ``shifts_px`` ``(n, ndim)`` (voxels, ``(x, y[, z])``) when they multiply the images'
    ``rfftn``; on the shifts' device."""
    import torch

    device = shifts_px.device
    shape = (*grid[:-1], grid[-1] // 2 + 1)
    phase = torch.zeros(len(shifts_px), *shape, device=device)
    for axis, size in enumerate(grid):  # array axes (z, y, x) / (y, x): the shift's reversed
        last = axis == len(grid) - 1
        frequency = (torch.fft.rfftfreq if last else torch.fft.fftfreq)(size, device=device)
        along = [1] * len(grid)
        along[axis] = -1
        component = shifts_px[:, len(grid) - 1 - axis].float()
        phase = phase + component.view(-1, *[1] * len(grid)) * frequency.view(1, *along)
    return torch.polar(torch.ones_like(phase), -2 * torch.pi * phase)[:, None]


def moved_tensor(images: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Each image ``(n, 1, *box)`` (2-D or 3-D, cubic) moved by its shift ``(n, ndim)``
    (voxels, ``(x, y[, z])``) as a Fourier phase, as :func:`moved` does for numpy volumes;
    differentiable, on the images' device, in their dtype."""
    import torch

    grid = tuple(images.shape[2:])
    dims = tuple(range(2, images.dim()))
    spectrum = torch.fft.rfftn(images.float(), dim=dims)  # (n, 1, ..., d // 2 + 1)
    ramp = shift_ramp(grid, shifts_px.to(images.device))
    return torch.fft.irfftn(spectrum * ramp, s=grid, dim=dims).to(images.dtype)
