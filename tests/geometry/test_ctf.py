"""CTF: wavelength, zeros where theory puts them, the 3-D volume is CTF(|k|)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cryoavae.geometry.ctf import (
    ctf_1d,
    ctf_radial_table,
    electron_wavelength_angstrom,
    frequency_squared_index,
)

VOLTAGE_KV, CS_MM, AMPLITUDE = 300.0, 2.7, 0.07


def zeros_per_angstrom(defocus_um: float, count: int) -> np.ndarray:
    """Solve chi(k) = n pi - asin(w), a quadratic in k^2, for the first ``count`` zeros."""
    wavelength = float(electron_wavelength_angstrom(VOLTAGE_KV))
    a = 0.5 * math.pi * CS_MM * 1e7 * wavelength**3
    b = math.pi * wavelength * defocus_um * 1e4
    n = np.arange(1, count + 1)
    c = n * math.pi - math.asin(AMPLITUDE)
    k2 = (b - np.sqrt(b**2 - 4 * a * c)) / (2 * a)  # the root that grows with n
    return np.sqrt(k2)


def test_electron_wavelength():
    assert electron_wavelength_angstrom(300.0) == pytest.approx(0.019687, abs=2e-6)
    assert electron_wavelength_angstrom(200.0) == pytest.approx(0.025079, abs=2e-6)
    assert electron_wavelength_angstrom(100.0) == pytest.approx(0.037014, abs=2e-6)


def test_ctf_zeros_fall_where_theory_puts_them():
    zeros = zeros_per_angstrom(3.0, 4)
    assert 1 / zeros[0] == pytest.approx(24.6, abs=0.1)  # SCIENCE-NOTES: 24.6 A at 3 um
    values = ctf_1d(zeros, 3.0, VOLTAGE_KV, CS_MM, AMPLITUDE)
    np.testing.assert_allclose(values, 0.0, atol=1e-9)
    before = ctf_1d(zeros - 1e-4, 3.0, VOLTAGE_KV, CS_MM, AMPLITUDE)
    after = ctf_1d(zeros + 1e-4, 3.0, VOLTAGE_KV, CS_MM, AMPLITUDE)
    assert (np.sign(before) == -np.sign(after)).all()
    assert ctf_1d(0.0, 3.0, VOLTAGE_KV, CS_MM, AMPLITUDE) == pytest.approx(AMPLITUDE)
    # between the origin and the first zero the contrast is positive
    assert (ctf_1d(np.linspace(0, zeros[0] * 0.99, 50), 3.0) > 0).all()


def test_ctf_volume_is_the_radial_ctf_on_the_rfft_grid():
    d, voxel = 32, 10.0
    defocus = np.array([2.0, 3.5])
    table = ctf_radial_table(d, voxel, defocus, VOLTAGE_KV, CS_MM, AMPLITUDE)
    volume = table[:, frequency_squared_index(d)]
    assert volume.shape == (2, d, d, d // 2 + 1) and volume.dtype == np.float32
    kz = np.fft.fftfreq(d, voxel)[:, None, None]
    ky = np.fft.fftfreq(d, voxel)[None, :, None]
    kx = np.fft.rfftfreq(d, voxel)[None, None, :]
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    for p, df in enumerate(defocus):
        np.testing.assert_allclose(volume[p], ctf_1d(k, df), atol=1e-6)
    # the first zero is a sign change across a spherical shell
    first, second = zeros_per_angstrom(3.5, 2)
    assert (volume[1][k < first * 0.98] > 0).all()
    assert (volume[1][(k > first * 1.02) & (k < second * 0.98)] < 0).all()


def test_frequency_index_and_table_cover_the_grid():
    for d in (8, 9):
        index = frequency_squared_index(d)
        table = ctf_radial_table(d, 5.0, [1.0, 2.0])
        assert index.shape == (d, d, d // 2 + 1)
        assert index.max() < table.shape[1]
        assert index[0, 0, 1] == 1 and index[1, 1, 1] == 3 and index[-1, 0, 0] == 1
