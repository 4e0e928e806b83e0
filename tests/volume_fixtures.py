"""Asymmetric test maps, and particles measured from them as the simulator makes them.

Shared by the tests of template matching (tests/orientation/) and of Fourier-space volume
rotation (tests/geometry/test_volume_rotation.py).
"""

import numpy as np
import scipy.fft

from cryoavae.geometry.ctf import ctf_radial_table, frequency_squared_index
from cryoavae.geometry.volume_rotation import padded_spectra, rotate_spectra
from cryoavae.geometry.wedge import missing_wedge_mask

D = 24


def blobs(rng: np.random.Generator, n: int = 7) -> np.ndarray:
    """An asymmetric map: Gaussian blobs of different sizes around the centre, (D, D, D)."""
    c = np.arange(D) - D // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    volume = np.zeros((D, D, D), np.float32)
    for centre, width in zip(rng.uniform(-6, 6, (n, 3)), rng.uniform(1.0, 2.0, n), strict=True):
        r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
        volume += np.exp(-r2 / (2 * width**2)).astype(np.float32)
    return volume


def measured(volume, rotations, rng, defocus_um=None, snr=None, tilt=60.0, shifts_px=None):
    """Particles as the simulator makes them: the map turned (Fourier space) and shifted by
    ``shifts_px`` ``(n, 3)`` voxels (x, y, z; None: centred), the missing wedge removed, times a
    CTF at 10 A per voxel, plus white noise at ``snr``."""
    spectra = rotate_spectra(padded_spectra(volume), rotations, D, shifts_px=shifts_px)
    spectra = spectra * missing_wedge_mask(D, tilt)
    if defocus_um is not None:
        spectra = spectra * ctf_radial_table(D, 10.0, defocus_um)[:, frequency_squared_index(D)]
    out = scipy.fft.irfftn(spectra, s=(D, D, D), axes=(1, 2, 3)).astype(np.float32)
    if snr is not None:
        sd = np.sqrt(out.reshape(len(out), -1).var(axis=1) / snr)
        out += (sd[:, None, None, None] * rng.standard_normal(out.shape)).astype(np.float32)
    return out
