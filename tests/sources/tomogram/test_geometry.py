"""Tilt geometry: projection and weighted back-projection (physics that could fail)."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from tomogram_fixtures import density_map
from torch_fourier_slice import project_3d_to_2d

from cryoavae.evaluate.averages import fsc
from cryoavae.sources.tomogram.geometry import (
    angular_weights_rad,
    backproject,
    project,
    radial_weights,
    tilt_matrix,
    weighted_backprojection,
)
from cryoavae.sources.tomogram.sample import SamplePlan, contrast_potential, render_sample

TILTS = np.arange(-60.0, 60.0 + 1e-9, 3.0)


def centred_particle(size: int, rotation=None) -> np.ndarray:
    """One 1bxn particle at the centre of a ``size``^3 sample, ``(Z, X, Y)``."""
    potential = contrast_potential(density_map("1bxn")[None], 10.0, 4.5, 7.9)
    plan = SamplePlan(
        np.array([0]),
        np.full((1, 3), float(size // 2)),
        (np.eye(3) if rotation is None else rotation)[None],
    )
    return render_sample(potential, plan, (size, size, size)).numpy()


def frequencies(size: int):
    k = np.fft.fftfreq(size) * size  # cycles per box, FFT order
    return np.meshgrid(k, k, k, indexing="ij")  # kz, ky, kx for (Z, Y, X) arrays


def test_projection_at_tilt_zero_sums_along_z_and_is_the_adjoint_of_backprojection():
    rng = np.random.default_rng(0)
    volume = rng.standard_normal((12, 20, 16)).astype(np.float32)  # (Z, X, Y)
    matrix = tilt_matrix((20, 16, 12), np.array([0.0, 25.0, -40.0]))
    projections = project(volume, matrix)  # (3, Y, X)
    assert np.allclose(projections[0], volume.sum(axis=0).T, atol=1e-4)
    images = rng.standard_normal(projections.shape).astype(np.float32)
    lhs = float((projections.astype(np.float64) * images).sum())
    rhs = float((volume.astype(np.float64) * backproject(images, matrix, 12)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_tilted_projection_of_a_rotated_map_matches_torch_fourier_slice():
    """Our sample (map rotated by A) projected at tilt theta equals teamtomo's projection of
    the map rotated by Ry(theta) A: the rotation and tilt conventions agree."""
    size = 48
    a = Rotation.from_euler("ZYZ", [30.0, 50.0, -70.0], degrees=True).as_matrix()
    volume = centred_particle(size, a)
    theta = 30.0
    ours = project(volume, tilt_matrix((size, size, size), np.array([theta])))[0]
    potential = np.zeros((size, size, size), np.float32)
    lo = size // 2 - 16
    potential[lo : lo + 32, lo : lo + 32, lo : lo + 32] = contrast_potential(
        density_map("1bxn")[None], 10.0, 4.5, 7.9
    )[0]
    tilt = Rotation.from_euler("y", theta, degrees=True).as_matrix()
    total = tilt @ a
    # project_3d_to_2d(v, M) projects v rotated by M^T (pinned by the next test)
    reference = project_3d_to_2d(
        torch.from_numpy(potential), torch.from_numpy(total.T.astype(np.float32))[None]
    )[0].numpy()
    r = np.corrcoef(ours.ravel(), reference.ravel())[0, 1]
    assert r > 0.98
    assert ours.sum() == pytest.approx(reference.sum(), rel=0.02)
    wrong = project_3d_to_2d(
        torch.from_numpy(potential), torch.from_numpy((tilt.T @ a).T.astype(np.float32))[None]
    )[0].numpy()
    assert np.corrcoef(ours.ravel(), wrong.ravel())[0, 1] < r - 0.1  # the test can tell


def test_torch_fourier_slice_projects_the_volume_rotated_by_the_transpose():
    volume = np.zeros((32, 32, 32), np.float32)
    volume[16, 16, 22] = 1.0  # x offset +6
    quarter = Rotation.from_euler("z", 90, degrees=True).as_matrix().astype(np.float32)
    image = project_3d_to_2d(torch.from_numpy(volume), torch.from_numpy(quarter)[None])[0]
    y, x = np.unravel_index(int(image.argmax()), image.shape)
    assert (y, x) == (10, 16)  # rotated by R^T: +x went to -y


def test_noise_free_backprojection_has_fsc_above_half_to_half_nyquist_outside_the_wedge():
    size = 64
    truth_zxy = centred_particle(size)
    matrix = tilt_matrix((size, size, size), TILTS)
    reconstruction = weighted_backprojection(project(truth_zxy, matrix), TILTS, matrix, size)
    truth = truth_zxy.transpose(0, 2, 1)  # (Z, Y, X)
    kz, _, kx = frequencies(size)
    measured = np.abs(kz) * np.cos(np.radians(60)) <= np.abs(kx) * np.sin(np.radians(60))
    _, curve = fsc(reconstruction, truth, mask=measured)
    half_nyquist = curve[: size // 4]  # shells 1 .. size/4: up to 0.25 cycles/voxel
    assert (half_nyquist >= 0.5).all(), half_nyquist


def test_reconstruction_is_empty_inside_the_missing_wedge():
    """Energy more than 2 Fourier samples inside the wedge of +-60 degrees (Hann-windowed, so
    the box's edges do not leak) is below 1e-3 of the total; the map itself has > 1e-2 there."""
    size = 64
    truth_zxy = centred_particle(size, Rotation.from_euler("x", 40, degrees=True).as_matrix())
    matrix = tilt_matrix((size, size, size), TILTS)
    reconstruction = weighted_backprojection(project(truth_zxy, matrix), TILTS, matrix, size)
    hann = np.hanning(size)
    window = hann[:, None, None] * hann[None, None, :] * np.ones((1, size, 1))
    kz, _, kx = frequencies(size)
    depth = np.abs(kz) * np.cos(np.radians(60)) - np.abs(kx) * np.sin(np.radians(60))
    wedge = depth > 2
    for volume, bound in ((reconstruction, None), (truth_zxy.transpose(0, 2, 1), 1e-2)):
        power = np.abs(np.fft.fftn(volume * window)) ** 2
        fraction = power[wedge].sum() / power.sum()
        if bound is None:
            assert fraction < 1e-3
        else:
            assert fraction > bound


def test_radial_weights_are_a_ramp_rolled_off_above_the_cutoff():
    w = radial_weights(256, 0.35, 0.035)
    k = np.fft.rfftfreq(256)
    band = (k > 0.02) & (k < 0.3)
    assert np.allclose(w[band], k[band], rtol=0.02)
    assert 0 < w[0] < w[1]  # Kak & Slaney: no zero DC
    assert w[-1] < 1e-3 * k[-1]
    assert np.all(radial_weights(256, 0.2, 0.0)[k > 0.2] == 0)


def test_angular_weights_sum_to_the_covered_range():
    weights = angular_weights_rad(TILTS)
    assert weights.sum() == pytest.approx(np.radians(120 + 3))
    assert angular_weights_rad(np.array([10.0])).tolist() == [1.0]
