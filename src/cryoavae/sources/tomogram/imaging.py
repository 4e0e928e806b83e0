"""The tilt series: tilt angles and their order, the dose, the CTF of each tilt, shot noise.

Image formation (weak-phase approximation; one tilt at a time, batched over tilts):

1. phase ``phi = sigma_e a P`` (rad) from the projected contrast potential ``P`` (volts summed
   over voxels of ``a`` Å), with the relativistic interaction constant
   ``sigma_e = 2 pi / (lambda V) (m c^2 + e V) / (2 m c^2 + e V)`` (6.53e-4 rad/(V Å) at 300 kV);
2. contrast ``c = 2 F^-1[CTF E F[phi]]``: the CTF of the tilt's defocus (teamtomo's
   ``torch-ctf``; positive at low frequency, so protein is bright, the contrast of an inverted
   micrograph) and the exposure filter ``E(k) = exp(-D / (2 N_e(k)))`` for the dose ``D`` the
   specimen received before the middle of this tilt's exposure, ``N_e(k) = 0.245 k^-1.665 +
   2.81`` e/Å^2 (k in 1/Å; Grant & Grigorieff 2015, eLife 4:e06980, fitted at 300 kV);
3. counts: each pixel of area ``a^2`` receives ``N = d_tilt a^2 T`` electrons on average, ``d_tilt``
   the tilt's share of the dose and ``T = exp(-t / (mfp cos theta))`` the fraction an energy
   filter keeps of electrons crossing ice of thickness ``t`` at tilt ``theta``; the recorded
   image is ``1 - counts / N`` with ``counts ~ Poisson(N (1 - c))``: contrast plus shot noise
   of variance ``(1 - c) / N``, close to ``1 / N``.

With the defocus gradient on, the defocus follows the tilted specimen's mid-plane across the
image: ``defocus(x) = defocus_tilt - (x - X // 2) a tan(theta)`` (a column right of the tilt
axis at positive tilt is lower; underfocus is positive). The image is filtered at defocus steps
small enough that the CTF phase at Nyquist moves by at most pi/8 between steps, and each column
takes the linear blend of its two nearest steps (as IMOD's ctfphaseflip works in strips).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch_ctf

from cryoavae.sources.tomogram.config import TomogramConfig

__all__ = [
    "acquisition_rank",
    "contrast_images",
    "electron_interaction_rad_per_v_a",
    "electron_wavelength_angstrom",
    "electrons_per_pixel",
    "exposure_filter",
    "prior_dose_e_per_a2",
    "record_images",
    "tilt_angles_deg",
]

_REST_ENERGY_EV = 510998.95


def tilt_angles_deg(config: TomogramConfig) -> np.ndarray:
    """``-tilt_max_deg, -tilt_max_deg + tilt_step_deg, ...`` up to ``tilt_max_deg``: ``(n,)``."""
    span = 2 * config.tilt_max_deg
    n = int(math.floor(span / config.tilt_step_deg + 1e-9)) + 1
    return -config.tilt_max_deg + config.tilt_step_deg * np.arange(n, dtype=np.float64)


def acquisition_rank(tilt_angles: np.ndarray, order: str) -> np.ndarray:
    """When each tilt is recorded: ``(n,)`` 0-based ranks. ``sequential`` goes from the lowest
    tilt up; ``dose_symmetric`` starts at the tilt nearest 0 and alternates sides, the positive
    side first (0, +3, -3, +6, -6, ...)."""
    angles = np.asarray(tilt_angles, dtype=np.float64)
    if order == "sequential":
        key = np.argsort(angles, kind="stable")
    elif order == "dose_symmetric":
        key = np.lexsort((-np.sign(angles), np.round(np.abs(angles), 6)))
    else:
        raise ValueError(f"tilt_order is {order!r}; expected 'sequential' or 'dose_symmetric'")
    rank = np.empty(len(angles), dtype=np.int64)
    rank[key] = np.arange(len(angles))
    return rank


def prior_dose_e_per_a2(rank: np.ndarray, dose_per_tilt_e_per_a2: float) -> np.ndarray:
    """Dose received before the middle of each tilt's exposure, ``(n,)`` e/Å^2."""
    return (np.asarray(rank, dtype=np.float64) + 0.5) * dose_per_tilt_e_per_a2


def electron_wavelength_angstrom(voltage_kv: float) -> float:
    """Relativistic electron wavelength (Å) at ``voltage_kv`` (torch-ctf's, in metres)."""
    return float(torch_ctf.calculate_relativistic_electron_wavelength(voltage_kv * 1e3)) * 1e10


def electron_interaction_rad_per_v_a(voltage_kv: float) -> float:
    """Interaction constant ``sigma_e`` (rad per volt Å of projected potential)."""
    volts = voltage_kv * 1e3
    ratio = (_REST_ENERGY_EV + volts) / (2 * _REST_ENERGY_EV + volts)
    return 2 * math.pi / (electron_wavelength_angstrom(voltage_kv) * volts) * ratio


def electrons_per_pixel(
    config: TomogramConfig, tilt_angles: np.ndarray, voxel_size_angstrom: float
):
    """Mean electrons counted per pixel in each tilt ``(n,)``, after the energy filter."""
    angles = np.asarray(tilt_angles, dtype=np.float64)
    counted = np.full(len(angles), config.dose_e_per_a2 / len(angles) * voxel_size_angstrom**2)
    if config.inelastic_mean_free_path_nm is not None:
        thickness_nm = config.size_z_px * voxel_size_angstrom / 10.0
        path = thickness_nm / np.cos(np.deg2rad(angles))
        counted *= np.exp(-path / config.inelastic_mean_free_path_nm)
    return counted


def _frequency_angstrom(shape: tuple[int, int], voxel_size_angstrom: float) -> torch.Tensor:
    """``|k|`` (1/Å) on the rfft2 grid of an image of ``shape``: ``(h, w // 2 + 1)``."""
    ky = torch.fft.fftfreq(shape[0], dtype=torch.float64)[:, None]
    kx = torch.fft.rfftfreq(shape[1], dtype=torch.float64)[None, :]
    return torch.sqrt(ky**2 + kx**2) / voxel_size_angstrom


def exposure_filter(
    shape: tuple[int, int], voxel_size_angstrom: float, dose_e_per_a2: np.ndarray
) -> torch.Tensor:
    """Signal kept after ``dose_e_per_a2`` ``(n,)``: ``(n, h, w // 2 + 1)`` float32 (1 at k = 0)."""
    k = _frequency_angstrom(shape, voxel_size_angstrom)
    critical = 0.245 * torch.where(k > 0, k, 1.0) ** -1.665 + 2.81
    critical = torch.where(k > 0, critical, torch.inf)
    dose = torch.as_tensor(np.asarray(dose_e_per_a2, dtype=np.float64))[:, None, None]
    return torch.exp(-dose / (2.0 * critical)).to(torch.float32)


def _ctf(config: TomogramConfig, defocus_um, shape, voxel_size_angstrom) -> torch.Tensor:
    defocus = torch.as_tensor(np.asarray(defocus_um, dtype=np.float64).reshape(-1))
    return torch_ctf.calculate_ctf_2d(
        defocus=defocus,
        astigmatism=0.0,
        astigmatism_angle=0.0,
        voltage=config.voltage_kv,
        spherical_aberration=config.cs_mm,
        amplitude_contrast=config.amplitude_contrast,
        phase_shift=0.0,
        pixel_size=voxel_size_angstrom,
        image_shape=tuple(shape),
        rfft=True,
        fftshift=False,
    ).to(torch.float32)


def _margin_px(config: TomogramConfig, defocus_um: np.ndarray, voxel_size_angstrom: float) -> int:
    """Padding that holds the CTF's delocalisation ``lambda defocus k_nyquist`` (voxels)."""
    wavelength = electron_wavelength_angstrom(config.voltage_kv)
    reach = wavelength * float(np.max(np.abs(defocus_um))) * 1e4 / (2 * voxel_size_angstrom)
    return int(math.ceil(reach / voxel_size_angstrom)) + 4


def contrast_images(
    phase: np.ndarray,
    config: TomogramConfig,
    tilt_angles: np.ndarray,
    defocus_um: np.ndarray,
    prior_dose: np.ndarray,
    voxel_size_angstrom: float,
) -> np.ndarray:
    """Image contrast ``c = 2 F^-1[CTF E F[phi]]`` per tilt: ``(n, Y, X)`` float32 from the
    phase images ``phi`` ``(n, Y, X)``. Images are mirror-padded by the CTF's reach first."""
    phi = torch.from_numpy(np.ascontiguousarray(phase, dtype=np.float32))
    n, size_y, size_x = phi.shape
    extreme = np.concatenate([np.asarray(defocus_um, dtype=np.float64), [0.0]])
    if config.defocus_gradient:
        half_width = (size_x // 2 + 1) * voxel_size_angstrom * 1e-4
        tilt_tan = np.abs(np.tan(np.deg2rad(tilt_angles)))
        extreme = np.concatenate([extreme, np.asarray(defocus_um) + half_width * tilt_tan])
    margin = _margin_px(config, extreme, voxel_size_angstrom) if config.ctf else 0
    margin = min(margin, size_x - 1, size_y - 1)
    padded = torch.nn.functional.pad(phi[:, None], (margin,) * 4, mode="reflect")[:, 0]
    shape = tuple(padded.shape[-2:])
    spectrum = torch.fft.rfft2(padded)  # (n, h, w // 2 + 1)
    if config.radiation_damage:
        spectrum = spectrum * exposure_filter(shape, voxel_size_angstrom, prior_dose)
    if not config.ctf:
        images = torch.fft.irfft2(spectrum, s=shape)
    elif not config.defocus_gradient:
        images = torch.fft.irfft2(
            spectrum * _ctf(config, defocus_um, shape, voxel_size_angstrom), s=shape
        )
    else:
        images = torch.stack(
            [
                _gradient_image(
                    spectrum[i],
                    config,
                    float(defocus_um[i]),
                    float(tilt_angles[i]),
                    shape,
                    margin,
                    voxel_size_angstrom,
                )
                for i in range(n)
            ]
        )
    images = images[:, margin : margin + size_y, margin : margin + size_x]
    return (2.0 * images).numpy().astype(np.float32, copy=False)


def _gradient_image(spectrum, config, defocus_um, tilt_deg, shape, margin, voxel_size_angstrom):
    """One tilt filtered with the mid-plane's defocus gradient (see the module docstring)."""
    size_x = shape[1]
    columns = torch.arange(size_x, dtype=torch.float64) - margin
    centre = (size_x - 2 * margin) // 2
    local = defocus_um - (columns - centre) * voxel_size_angstrom * 1e-4 * math.tan(
        math.radians(tilt_deg)
    )
    wavelength = electron_wavelength_angstrom(config.voltage_kv)
    nyquist = 0.5 / voxel_size_angstrom
    step_um = 1.0 / (8.0 * wavelength * nyquist**2) * 1e-4  # pi/8 of CTF phase at Nyquist
    low, high = float(local.min()), float(local.max())
    steps = max(2, int(math.ceil((high - low) / step_um)) + 1)
    levels = np.linspace(low, high, steps)
    filtered = torch.fft.irfft2(
        spectrum[None] * _ctf(config, levels, shape, voxel_size_angstrom), s=shape
    )
    position = (local - low) / max(high - low, 1e-12) * (steps - 1)  # (w,) in steps
    lower = torch.clamp(position.floor().long(), 0, steps - 2)
    w = (position - lower).to(torch.float32)
    columns_index = torch.arange(size_x)
    return (
        filtered[lower, :, columns_index].T * (1 - w) + filtered[lower + 1, :, columns_index].T * w
    )


def record_images(
    contrast: np.ndarray, electrons: np.ndarray | None, rng: np.random.Generator
) -> np.ndarray:
    """Recorded images ``1 - counts / N`` (``(n, Y, X)`` float32), counts Poisson with mean
    ``N (1 - c)`` for ``electrons`` ``N`` ``(n,)``; None records the contrast without noise."""
    if electrons is None:
        return np.asarray(contrast, dtype=np.float32)
    out = np.empty_like(contrast, dtype=np.float32)
    for i, n_i in enumerate(np.asarray(electrons, dtype=np.float64)):
        rate = n_i * np.clip(1.0 - contrast[i].astype(np.float64), 0.0, None)
        out[i] = 1.0 - rng.poisson(rate) / n_i
    return out
