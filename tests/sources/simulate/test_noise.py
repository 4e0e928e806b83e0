"""Noise: white and real after the inverse FFT, seeded per particle; Parseval variance; z-score."""

from __future__ import annotations

import numpy as np
import pytest

from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.sources.simulate.noise import (
    CONJUGATE,
    REAL,
    draw_noise,
    hermitian_noise_slots,
    noise_spectrum,
    spectral_variance,
    zscore,
)


@pytest.mark.parametrize("d", [16, 15])
def test_noise_spectrum_is_the_spectrum_of_real_white_noise(d):
    seeds = np.arange(40, dtype=np.uint64)
    spectrum = noise_spectrum(d, seeds)
    images = np.fft.irfftn(spectrum, s=(d, d, d), axes=(1, 2, 3))
    # Hermitian-consistent: transforming back reproduces every coefficient (not only the real part)
    np.testing.assert_allclose(np.fft.rfftn(images, axes=(1, 2, 3)), spectrum, atol=1e-2)
    assert images.var() == pytest.approx(1.0, abs=0.03)
    assert abs(images.mean()) < 1e-6  # no DC
    # white: every frequency shell carries the same power on average
    power = (np.abs(spectrum) ** 2).mean(axis=0)
    kz, ky, kx = np.meshgrid(*[np.fft.fftfreq(d)] * 2, np.fft.rfftfreq(d), indexing="ij")
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    for low, high in [(0.05, 0.2), (0.2, 0.35), (0.35, 0.5)]:
        shell = (k >= low) & (k < high)
        assert power[shell].mean() / d**3 == pytest.approx(1.0, abs=0.05)


def test_noise_depends_only_on_each_particles_seed():
    seeds = np.array([5, 6, 7, 8, 9], dtype=np.uint64)
    whole = draw_noise(100, seeds)
    np.testing.assert_array_equal(draw_noise(100, seeds[2:4]), whole[2:4])
    np.testing.assert_array_equal(draw_noise(100, seeds, threads=2), whole)
    assert not np.array_equal(whole[0], whole[1])
    assert np.mean(np.abs(draw_noise(20000, seeds[:1])) ** 2) == pytest.approx(1.0, abs=0.03)


def test_wedge_masked_noise_is_zero_outside_and_still_real():
    d = 12
    keep = missing_wedge_mask(d, 60.0)
    spectrum = noise_spectrum(d, np.arange(3, dtype=np.uint64), keep=keep)
    assert not spectrum[:, ~keep].any()
    images = np.fft.irfftn(spectrum, s=(d, d, d), axes=(1, 2, 3))
    np.testing.assert_allclose(np.fft.rfftn(images, axes=(1, 2, 3)), spectrum, atol=1e-2)


def test_hermitian_slots_on_the_self_mirrored_planes():
    d = 8
    flat = np.arange(d * d * (d // 2 + 1))
    slot, mode, n_slots = hermitian_noise_slots(d, flat)
    kz, ky, kx = np.unravel_index(flat, (d, d, d // 2 + 1))
    self_mirrored = np.isin(kz, [0, 4]) & np.isin(ky, [0, 4]) & np.isin(kx, [0, 4])
    np.testing.assert_array_equal(mode == REAL, self_mirrored)
    # on the k_x = 0 and Nyquist planes, half of the other points borrow their mirror's slot
    on_planes = np.isin(kx, [0, 4])
    assert (mode == CONJUGATE).sum() == (on_planes.sum() - 8) // 2
    assert n_slots == len(flat) - (mode == CONJUGATE).sum()
    with pytest.raises(ValueError, match="not closed"):
        hermitian_noise_slots(d, np.array([d // 2 + 1]))  # (kz, ky, kx) = (0, 1, 0) alone


def test_spectral_variance_is_the_variance_of_the_image():
    for d in (10, 11):
        images = np.random.default_rng(d).standard_normal((3, d, d, d)) * 2 + 5
        spectrum = np.fft.rfftn(images, axes=(1, 2, 3))
        np.testing.assert_allclose(spectral_variance(spectrum, d), images.var(axis=(1, 2, 3)))


def test_zscore():
    images = np.random.default_rng(0).normal(3, 7, (4, 6, 6, 6))
    scored = zscore(images)
    np.testing.assert_allclose(scored.mean(axis=(1, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(scored.std(axis=(1, 2, 3)), 1, atol=1e-5)
