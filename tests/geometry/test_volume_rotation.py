"""Rotations: RELION Euler convention both ways, direction of rotation, centre, shift, accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from scipy.spatial.transform import Rotation
from volume_fixtures import D, blobs

from cryoavae.geometry.rotations import random_rotations, relion_angles_to_matrices
from cryoavae.geometry.volume_rotation import (
    band_limited_coefficients,
    padded_spectra,
    rotate_spectra,
    rotate_volumes,
    rotate_volumes_cubic,
    rotated_coefficients,
    spline_coefficients,
)


def blob_volume(d: int, centres_px, sigma_px: float = 1.2) -> np.ndarray:
    """Sum of Gaussian blobs at offsets (x, y, z) from the box centre; array (z, y, x)."""
    z, y, x = np.indices((d, d, d)) - d // 2
    volume = np.zeros((d, d, d))
    for cx, cy, cz in centres_px:
        volume += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * sigma_px**2))
    return volume.astype(np.float32)


ASYMMETRIC = [(0, 0, 0), (4, 0, 0), (0, 2.5, 0), (1, 1, -3)]


def peak(volume: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(np.argmax(volume), volume.shape))


def test_random_rotations_are_proper_uniform_and_seeded():
    matrices = random_rotations(4000, np.random.default_rng(0))
    np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-9)
    # Haar measure: every matrix entry has mean 0 and variance 1/3
    assert np.abs(matrices.mean(axis=0)).max() < 0.03
    np.testing.assert_allclose((matrices**2).mean(axis=0), 1 / 3, atol=0.02)
    again = random_rotations(4000, np.random.default_rng(0))
    np.testing.assert_array_equal(matrices, again)


def test_limited_rotations_stay_within_their_angle_and_spread_evenly():
    limit = 40.0
    matrices = random_rotations(20000, np.random.default_rng(1), max_angle_deg=limit)
    np.testing.assert_allclose(np.linalg.det(matrices), 1.0, atol=1e-9)
    angles = np.degrees(np.arccos(np.clip((np.trace(matrices, axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert angles.max() <= limit + 1e-6
    # Haar measure on the ball: P(angle <= t) = (t - sin t) / (T - sin T), so half the limit
    # holds about 1/8 of the rotations (a uniform angle would put half there)
    half, full = np.radians(limit / 2), np.radians(limit)
    expected = (half - np.sin(half)) / (full - np.sin(full))
    assert np.mean(angles <= limit / 2) == pytest.approx(expected, abs=0.01)
    # axes have no preferred direction: each axis component is uniform on [-1, 1]
    rotvec = Rotation.from_matrix(matrices).as_rotvec()
    axes = rotvec / np.linalg.norm(rotvec, axis=1, keepdims=True)
    for component in axes.T:
        assert stats.kstest(component, "uniform", args=(-1, 2)).pvalue > 0.01
    tiny = random_rotations(1000, np.random.default_rng(3), max_angle_deg=1e-6)
    assert np.isfinite(tiny).all() and np.abs(tiny - np.eye(3)).max() < 1e-7
    np.testing.assert_array_equal(
        random_rotations(3, np.random.default_rng(2), 0.0), np.eye(3)[None].repeat(3, 0)
    )
    with pytest.raises(ValueError, match="max_angle_deg"):
        random_rotations(3, np.random.default_rng(2), 190.0)


def test_the_full_range_draws_what_it_always_drew():
    """180 degrees keeps scipy's uniform draw, so existing studies keep their particles."""
    np.testing.assert_array_equal(
        random_rotations(50, np.random.default_rng(7), 180.0),
        Rotation.random(50, rng=np.random.default_rng(7)).as_matrix(),
    )


@pytest.mark.parametrize("rotate", ["real", "cubic", "fourier"])
def test_rotation_moves_content_to_a_times_its_offset(rotate):
    # rot = 90: A = Rz(-90) sends +x to -y (A^T, as grid_sample would apply, would give +y).
    d, c = 24, 12
    volume = blob_volume(d, [(5, 0, 0)])
    for angles, expected in [([90, 0, 0], (c, c - 5, c)), ([0, 90, 0], (c + 5, c, c))]:
        a = relion_angles_to_matrices(np.array([angles], dtype=float))
        if rotate == "real":
            out = rotate_volumes(volume, a)[0]
        elif rotate == "cubic":
            out = rotate_volumes_cubic(spline_coefficients(volume), a)[0]
        else:
            spectrum = rotate_spectra(padded_spectra(volume), a, d)[0]
            out = np.fft.irfftn(spectrum, s=(d, d, d), axes=(0, 1, 2))
        assert peak(out) == expected


def test_rotate_volumes_matches_scipy_affine_transform():
    d, c = 20, 10
    volume = blob_volume(d, ASYMMETRIC)
    rng = np.random.default_rng(1)
    a = random_rotations(3, rng)
    shift = rng.uniform(-1, 1, (3, 3))
    out = rotate_volumes(volume, a, source_index=np.zeros(3, int), shifts_px=shift)
    reverse = np.eye(3)[::-1]  # (x, y, z) <-> array axes (z, y, x)
    for p in range(3):
        matrix = reverse @ a[p].T @ reverse
        offset = c - matrix @ (c + shift[p, ::-1])
        expected = ndimage.affine_transform(
            volume, matrix, offset=offset, order=1, mode="grid-constant"
        )
        np.testing.assert_allclose(out[p], expected, atol=2e-5)


def test_cubic_rotation_is_scipys_order_3_affine_transform():
    """The same map, pose and shift convention as the trilinear rotation; only the kernel
    differs: scipy's cubic B-spline, prefiltered once per map."""
    d, c = 20, 10
    volumes = np.stack([blob_volume(d, ASYMMETRIC), blob_volume(d, ASYMMETRIC[:2])])
    rng = np.random.default_rng(1)
    a = random_rotations(3, rng)
    shift = rng.uniform(-1.5, 1.5, (3, 3))
    index = np.array([1, 0, 1])
    coefficients = spline_coefficients(volumes)
    out = rotate_volumes_cubic(coefficients, a, source_index=index, shifts_px=shift)
    threaded = rotate_volumes_cubic(coefficients, a, source_index=index, shifts_px=shift, threads=2)
    np.testing.assert_array_equal(threaded, out)  # each volume written by one thread, whole
    reverse = np.eye(3)[::-1]  # (x, y, z) <-> array axes (z, y, x)
    for p in range(3):
        matrix = reverse @ a[p].T @ reverse
        offset = c - matrix @ (c + shift[p, ::-1])
        expected = ndimage.affine_transform(
            volumes[index[p]].astype(np.float64), matrix, offset=offset, order=3, mode="constant"
        )
        np.testing.assert_allclose(out[p], expected, atol=1e-5)
    trilinear = rotate_volumes(volumes, a, source_index=index, shifts_px=shift)
    for p in range(3):
        assert np.corrcoef(out[p].ravel(), trilinear[p].ravel())[0, 1] > 0.99
    with pytest.raises(ValueError, match="source_index"):
        rotate_volumes_cubic(coefficients, a, source_index=np.array([0, 1, 2]))


@pytest.mark.parametrize("d", [16, 17])
def test_a_point_at_the_box_centre_stays_there(d):
    volume = np.zeros((d, d, d), dtype=np.float32)
    c = d // 2
    volume[c, c, c] = 1.0
    a = random_rotations(20, np.random.default_rng(2))
    out = rotate_volumes(volume, a, source_index=np.zeros(20, int))
    np.testing.assert_allclose(out[:, c, c, c], 1.0, atol=1e-6)
    assert all(peak(o) == (c, c, c) for o in out)
    spectra = rotate_spectra(padded_spectra(volume), a, d, source_index=np.zeros(20, int))
    fourier = np.fft.irfftn(spectra, s=(d, d, d), axes=(1, 2, 3))
    assert all(peak(f) == (c, c, c) for f in fourier)


def test_fourier_rotation_agrees_with_real_space_rotation():
    d = 24
    volume = blob_volume(d, ASYMMETRIC, sigma_px=1.5)
    rng = np.random.default_rng(4)
    a = random_rotations(4, rng)
    shift = rng.uniform(-2, 2, (4, 3))
    index = np.zeros(4, int)
    real = rotate_volumes(volume, a, source_index=index, shifts_px=shift)
    spectra = rotate_spectra(padded_spectra(volume), a, d, source_index=index, shifts_px=shift)
    fourier = np.fft.irfftn(spectra, s=(d, d, d), axes=(1, 2, 3))
    for p in range(4):
        assert np.corrcoef(real[p].ravel(), fourier[p].ravel())[0, 1] > 0.995


def test_fourier_integer_shift_is_a_circular_shift():
    d = 16
    volume = blob_volume(d, ASYMMETRIC)
    a = random_rotations(1, np.random.default_rng(5))
    spectra = padded_spectra(volume)
    base = np.fft.irfftn(rotate_spectra(spectra, a, d), s=(d, d, d), axes=(1, 2, 3))[0]
    moved = rotate_spectra(spectra, a, d, shifts_px=[[1, -2, 3]])
    moved = np.fft.irfftn(moved, s=(d, d, d), axes=(1, 2, 3))[0]
    expected = np.roll(base, (3, -2, 1), axis=(0, 1, 2))
    np.testing.assert_allclose(moved, expected, atol=1e-4 * np.abs(base).max())


def test_rotating_back_with_the_transpose_restores_the_volume():
    d = 24
    volume = blob_volume(d, ASYMMETRIC, sigma_px=1.5)
    a = random_rotations(5, np.random.default_rng(6))
    there = rotate_volumes(volume, a, source_index=np.zeros(5, int))
    back = rotate_volumes(there, a.transpose(0, 2, 1))
    for p in range(5):
        assert np.corrcoef(back[p].ravel(), volume.ravel())[0, 1] > 0.99


def test_rotated_coefficients_are_the_rotated_spectrum_at_those_frequencies():
    rng = np.random.default_rng(0)
    spectra = padded_spectra(blobs(rng))
    rotations = Rotation.random(3, random_state=rng).as_matrix()
    fz = np.rint(np.fft.fftfreq(D) * D)[:, None, None]
    keep = np.broadcast_to(np.abs(fz) <= 5, (D, D, D // 2 + 1))
    flat, frequencies = band_limited_coefficients(D, keep)
    full = rotate_spectra(spectra, rotations, D).reshape(3, -1)
    np.testing.assert_allclose(
        rotated_coefficients(spectra, rotations, D, frequencies), full[:, flat], rtol=0, atol=1e-5
    )
