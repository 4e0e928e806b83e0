"""The tilt series: order, dose, CTF per tilt, radiation damage, shot noise."""

import numpy as np
import pytest

from cryoavae.geometry.ctf import ctf_1d
from cryoavae.sources.tomogram import TomogramConfig
from cryoavae.sources.tomogram.imaging import (
    acquisition_rank,
    contrast_images,
    electron_interaction_rad_per_v_a,
    electron_wavelength_angstrom,
    electrons_per_pixel,
    exposure_filter,
    prior_dose_e_per_a2,
    record_images,
    tilt_angles_deg,
)


def config(**overrides) -> TomogramConfig:
    return TomogramConfig(size_x_px=128, size_y_px=128, size_z_px=40, **overrides)


def test_default_tilts_run_from_minus_60_to_60_in_3_degree_steps():
    angles = tilt_angles_deg(TomogramConfig())
    assert len(angles) == 41 and angles[0] == -60 and angles[-1] == 60 and angles[20] == 0


def test_dose_symmetric_order_starts_at_zero_and_alternates():
    angles = np.arange(-9.0, 9.1, 3.0)  # -9 .. 9
    rank = acquisition_rank(angles, "dose_symmetric")
    recorded = angles[np.argsort(rank)]
    assert recorded.tolist() == [0, 3, -3, 6, -6, 9, -9]
    assert acquisition_rank(angles, "sequential").tolist() == list(range(7))
    assert prior_dose_e_per_a2(rank, 2.0)[angles == 0] == 1.0  # half its own exposure


def test_physical_constants():
    assert electron_wavelength_angstrom(300) == pytest.approx(0.019687, rel=1e-4)
    assert electron_interaction_rad_per_v_a(300) == pytest.approx(6.526e-4, rel=2e-3)


def test_exposure_filter_keeps_low_frequencies_and_follows_grant_grigorieff():
    shape = (64, 64)
    kept = exposure_filter(shape, 10.0, np.array([0.0, 20.0, 100.0])).numpy()
    assert np.all(kept[0] == 1.0) and np.all(kept[:, 0, 0] == 1.0)
    nyquist = kept[:, 0, 32]  # k = 0.05 / Å
    critical = 0.245 * 0.05**-1.665 + 2.81
    assert nyquist[2] == pytest.approx(np.exp(-100 / (2 * critical)), rel=1e-5)
    assert nyquist[2] < nyquist[1] < 1.0


def test_ctf_per_tilt_matches_the_radial_ctf_of_the_idealised_simulator():
    cfg = config(radiation_damage=False)
    size = 128
    phase = np.zeros((2, size, size), np.float32)
    phase[:, size // 2, size // 2] = 1.0  # a point: its image is the CTF's point spread
    defocus = np.array([2.0, 4.0])
    images = contrast_images(phase, cfg, np.zeros(2), defocus, np.zeros(2), 10.0)
    for i in range(2):
        spectrum = np.fft.rfft2(np.fft.ifftshift(images[i] / 2.0))
        k = np.fft.rfftfreq(size)[: size // 2] / 10.0
        expected = ctf_1d(k, defocus[i])
        # rows of kx along ky = 0 (mirror padding changes the grid only slightly)
        assert np.corrcoef(spectrum[0, : size // 2].real, expected)[0, 1] > 0.99


def test_defocus_gradient_changes_nothing_at_zero_tilt_and_follows_the_tilted_plane():
    rng = np.random.default_rng(3)
    size, voxel = 256, 5.0
    phase = rng.standard_normal((1, size, size)).astype(np.float32) * 0.01
    flat = config(radiation_damage=False)
    tilted = config(radiation_damage=False, defocus_gradient=True)

    def image(cfg, tilt_deg, defocus_um):
        return contrast_images(
            phase, cfg, np.array([tilt_deg]), np.array([defocus_um]), np.zeros(1), voxel
        )[0]

    assert np.allclose(image(flat, 0.0, 3.0), image(tilted, 0.0, 3.0), atol=1e-6)
    gradient = image(tilted, 60.0, 3.0)
    left = slice(0, 12)  # defocus there: 3 um + (size // 2 - 6) voxels * tan(60)
    local = 3.0 + (size // 2 - 6) * voxel * 1e-4 * np.tan(np.radians(60.0))
    r_local = np.corrcoef(gradient[:, left].ravel(), image(flat, 60.0, local)[:, left].ravel())
    r_nominal = np.corrcoef(gradient[:, left].ravel(), image(flat, 60.0, 3.0)[:, left].ravel())
    assert r_local[0, 1] > 0.98 and r_local[0, 1] > r_nominal[0, 1] + 0.05
    centre = slice(size // 2 - 4, size // 2 + 4)
    middle = np.corrcoef(gradient[:, centre].ravel(), image(flat, 60.0, 3.0)[:, centre].ravel())
    assert middle[0, 1] > 0.98


def test_noise_variance_per_pixel_follows_the_dose_within_5_percent():
    cfg = config(inelastic_mean_free_path_nm=350.0)
    angles = tilt_angles_deg(cfg)
    contrast = np.zeros((len(angles), 128, 128), np.float32)
    contrast[:, 40:80, 40:80] = 0.05  # some signal: variance is (1 - c) / N
    for dose in (60.0, 240.0):
        electrons = electrons_per_pixel(config(dose_e_per_a2=dose), angles, 10.0)
        assert electrons[20] == pytest.approx(
            dose / len(angles) * 100.0 * np.exp(-40.0 / 350.0), rel=1e-9
        )
        assert electrons[0] < electrons[20]  # the tilted path through the ice is longer
        images = record_images(contrast, electrons, np.random.default_rng(int(dose)))
        noise = images - contrast
        measured = noise.reshape(len(angles), -1).var(axis=1)
        expected = (1.0 - contrast.reshape(len(angles), -1)).mean(axis=1) / electrons
        assert np.all(np.abs(measured / expected - 1.0) < 0.05)
        assert abs(noise.mean()) < 3 * np.sqrt(expected.mean() / noise.size)
    assert record_images(contrast, None, np.random.default_rng(0)) is not None
    assert np.array_equal(record_images(contrast, None, np.random.default_rng(0)), contrast)
