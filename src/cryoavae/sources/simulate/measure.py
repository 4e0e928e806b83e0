"""Rotated volumes measured into particles by the imaging stages composed one by one.

The Fourier path of :mod:`.pipeline` fuses rotation and measurement into one compiled pass. When
the particles are turned in real space instead (``simulation.rotation: real_space``, so that they
are not made by the template matcher's own Fourier-space kernel), the measurement that follows
must be the same, or the two settings would differ in more than their interpolation. So this
module applies the Fourier path's stages in its order, from the shared stage functions:

1. keep the signal inside the sphere the Fourier path fills
   (:func:`cryoavae.geometry.volume_rotation.spectrum_band_limit`);
2. multiply by each particle's CTF (:mod:`cryoavae.geometry.ctf`);
3. add white noise (:func:`.noise.noise_spectrum`, the particle's own seed, so the draws equal
   the fused pass's) scaled so that ``var(W C S) / var(sigma W N) = snr``: both variances of
   what is measured, after the wedge;
4. zero the missing wedge (:mod:`cryoavae.geometry.wedge`) and the mean;
5. one inverse FFT and z-scoring (:func:`.noise.zscore`).
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from cryoavae.geometry.ctf import ctf_radial_table, frequency_squared_index
from cryoavae.geometry.volume_rotation import spectrum_band_limit
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.sources.simulate.config import SimulationConfig
from cryoavae.sources.simulate.noise import noise_spectrum, spectral_variance, zscore

__all__ = ["measure"]


def measure(
    volumes: np.ndarray,
    defocus_um: np.ndarray,
    noise_seeds: np.ndarray,
    config: SimulationConfig,
    voxel_size_angstrom: float,
    threads: int = 1,
) -> np.ndarray:
    """Particles ``(n, d, d, d)`` float32 (zero mean, unit variance) from clean rotated volumes.

    Args:
        volumes: ``(n, d, d, d)`` the particles' clean, rotated and shifted maps.
        defocus_um, noise_seeds: ``(n,)`` each particle's draws from the shard's plan.
        threads: FFT workers and noise threads.
    """
    volumes = np.asarray(volumes, dtype=np.float32)
    d = volumes.shape[-1]
    n = len(volumes)
    tilt = config.wedge_tilt_max_deg
    keep = missing_wedge_mask(d, 90.0 if tilt is None else tilt)
    keep[0, 0, 0] = False  # z-scoring removes the mean
    k2 = frequency_squared_index(d)
    signal = scipy.fft.rfftn(volumes, axes=(1, 2, 3), workers=threads)
    signal *= keep & (k2 <= spectrum_band_limit(d))
    ctf = config.ctf
    if ctf.enabled:
        table = ctf_radial_table(
            d, voxel_size_angstrom, defocus_um, ctf.voltage_kv, ctf.cs_mm, ctf.amplitude_contrast
        )
        for p in range(n):  # one table lookup per particle keeps memory at one batch
            signal[p] *= table[p][k2]
    if config.snr is not None:
        noise = noise_spectrum(d, noise_seeds, keep=keep, threads=threads)
        noise_variance = spectral_variance(noise, d)
        signal_variance = spectral_variance(signal, d)
        sigma = np.sqrt(signal_variance / (float(config.snr) * noise_variance))
        signal += sigma.astype(np.float32)[:, None, None, None] * noise
        del noise
    return zscore(scipy.fft.irfftn(signal, s=(d, d, d), axes=(1, 2, 3), workers=threads))
