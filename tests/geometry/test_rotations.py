"""RELION Euler angles and rotation matrices: RELION's own convention, both ways, gimbal lock;
the orientation error after the best global alignment, with and without symmetry."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoavae.geometry.rotations import (
    align_rotations,
    geodesic_deg,
    matrices_to_relion_angles,
    relion_angles_to_matrices,
)


def test_angles_to_matrix_is_relion_euler_angles2matrix():
    # RELION: A = Rz(-psi) Ry(-tilt) Rz(-rot), the transpose of scipy's intrinsic ZYZ rotation.
    angles = np.array([[30.0, 40.0, 50.0], [-170.0, 120.0, 10.0]])
    expected = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix().transpose(0, 2, 1)
    np.testing.assert_allclose(relion_angles_to_matrices(angles), expected, atol=1e-12)
    # one entry written out from RELION's euler.cpp: A(0, 2) = -cos(psi) sin(tilt)
    a = relion_angles_to_matrices(angles[0])
    assert a[0, 2] == pytest.approx(-np.cos(np.radians(50)) * np.sin(np.radians(40)))


def test_angles_round_trip_both_ways():
    rng = np.random.default_rng(3)
    matrices = Rotation.random(200, rng=rng).as_matrix()
    np.testing.assert_allclose(
        relion_angles_to_matrices(matrices_to_relion_angles(matrices)), matrices, atol=1e-9
    )
    angles = np.column_stack(
        [rng.uniform(-179, 179, 50), rng.uniform(1, 179, 50), rng.uniform(-179, 179, 50)]
    )
    np.testing.assert_allclose(
        matrices_to_relion_angles(relion_angles_to_matrices(angles)), angles, atol=1e-9
    )
    # gimbal lock: tilt 0 or 180 keeps only one in-plane angle; RELION sets rot = 0
    for tilt in (0.0, 180.0):
        a = relion_angles_to_matrices([25.0, tilt, 40.0])
        back = matrices_to_relion_angles(a)
        assert back[0] == 0 and back[1] == tilt
        np.testing.assert_allclose(relion_angles_to_matrices(back), a, atol=1e-12)


def test_the_aligned_error_is_zero_for_one_fixed_rotation_and_132_for_random_guesses():
    rng = np.random.default_rng(3)
    true = Rotation.random(3000, rng=rng).as_matrix()
    offset = Rotation.random(rng=rng).as_matrix()
    _, errors = align_rotations(true @ offset.T, true)
    assert errors.max() < 1e-4
    _, random = align_rotations(Rotation.random(3000, rng=rng).as_matrix(), true)
    assert 128 < np.median(random) < 136  # 132.35 for no information at all


def test_a_symmetric_copy_is_not_counted_as_an_error():
    rng = np.random.default_rng(4)
    true = Rotation.random(500, rng=rng).as_matrix()
    group = Rotation.create_group("D2").as_matrix()
    seen_as = true @ group[rng.integers(0, 4, 500)]  # each particle seen as any of 4 copies
    assert np.median(align_rotations(seen_as, true)[1]) > 30
    assert align_rotations(seen_as, true, "D2")[1].max() < 1e-4


def test_the_frame_is_the_one_most_particles_agree_on_not_a_compromise_with_a_wrong_group():
    """60 % of a class seen in the model's frame (3° of noise), 40 % matched consistently wrong
    (one 125° turn about an axis of the particle, as a near-symmetric template does): the right
    particles keep their 3° errors. A least-squares frame over all of them (every particle an
    inlier) counts them about 30° off."""
    rng = np.random.default_rng(5)
    true = Rotation.random(1000, rng=rng).as_matrix()
    frame = Rotation.random(rng=rng).as_matrix()
    noise = Rotation.from_rotvec(rng.normal(size=(1000, 3)) * np.radians(3.0) / 1.6).as_matrix()
    seen = noise @ true @ frame.T  # P_i with P_i Q = A_i, Q = frame
    wrong = np.arange(1000) < 400
    turn = Rotation.from_rotvec([np.radians(125.0), 0.0, 0.0]).as_matrix()
    seen[wrong] = seen[wrong] @ turn
    q, errors = align_rotations(seen, true)
    assert geodesic_deg(q, frame) < 1.0
    assert np.median(errors[~wrong]) < 5.0 and np.median(errors[wrong]) > 100.0
    _, compromise = align_rotations(seen, true, inlier_deg=180.0)
    assert np.median(compromise[~wrong]) > 20.0
