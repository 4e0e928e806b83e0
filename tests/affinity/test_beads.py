"""The bead model and the structure kernels behind the SOAP prior."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from cryoavae import affinity as af
from cryoavae.affinity.beads import bead_model, farthest_point_indices
from cryoavae.affinity.kernels import (
    amplitude_features,
    average_similarity,
    cosine_matrix,
    rematch_similarity,
)
from cryoavae.structures import AtomArrays


def _points(seed: int, n: int = 240) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)) * [30.0, 15.0, 10.0]


def test_beads_follow_a_rigid_motion_and_ignore_the_atom_order():
    p = _points(0)
    beads = bead_model(p, atoms_per_bead=8)
    assert beads.shape == (30, 3)
    rotation = Rotation.random(random_state=3).as_matrix()
    moved = bead_model(p @ rotation.T + [5.0, -7.0, 11.0], atoms_per_bead=8)
    np.testing.assert_allclose(moved, beads @ rotation.T + [5.0, -7.0, 11.0], atol=1e-8)
    order = np.random.default_rng(1).permutation(len(p))
    shuffled = bead_model(p[order], atoms_per_bead=8)
    key = np.lexsort(beads.T)
    np.testing.assert_allclose(shuffled[np.lexsort(shuffled.T)], beads[key], atol=1e-8)


def test_farthest_points_start_at_the_centre_and_spread_out():
    p = np.array([[0.0, 0, 0], [1, 0, 0], [10, 0, 0], [-9, 0, 0], [0, 5, 0]])
    assert farthest_point_indices(p, 3).tolist() == [0, 2, 3]  # centroid (0.4, 1, 0)
    assert len(farthest_point_indices(p, 99)) == 5
    assert bead_model(p, atoms_per_bead=100).shape == (1, 3)


def test_amplitudes_are_the_diagonal_of_the_power_spectrum():
    # One SOAP centre: in degree 0 (one m) the power spectrum is an outer product c_n c_n',
    # so p_nn' ^ 2 = p_nn p_n'n' pins which entries are the diagonal ones.
    config = af.SoapConfig(features="power", n_max=4, l_max=2, sigma_angstrom=5.0)
    cloud = AtomArrays(_points(2, n=60), np.full(60, 6), np.full(60, "C"))
    power = af.soap_environments([cloud], config)[0][0]  # ((l_max + 1) * 10,)
    amp = amplitude_features(power, n_max=4, l_max=2)
    assert amp.shape == (12,) and np.all(amp >= 0)
    block = power[:10]
    full = np.zeros((4, 4))
    full[np.triu_indices(4)] = block
    np.testing.assert_allclose(
        full[np.triu_indices(4)] ** 2,
        np.outer(amp[:4] ** 2, amp[:4] ** 2)[np.triu_indices(4)],
        rtol=1e-8,
    )
    with pytest.raises(ValueError, match="not one species"):
        amplitude_features(power, n_max=5, l_max=2)


def test_kernels_are_one_on_the_diagonal_and_average_is_the_cosine_of_means():
    rng = np.random.default_rng(4)
    environments = [rng.random((k, 5)) for k in (3, 7, 4)]
    means = np.stack([e.mean(0) for e in environments])
    np.testing.assert_allclose(
        average_similarity(environments, standardize=False), cosine_matrix(means)
    )
    k = rematch_similarity(environments, alpha=0.05)
    np.testing.assert_array_equal(np.diag(k), 1.0)
    np.testing.assert_array_equal(k, k.T)
    assert np.all(k <= 1.0)
    # Matching the same environments in another order is a perfect match.
    same = rematch_similarity([environments[1], environments[1][::-1]], alpha=0.05)
    assert same[0, 1] == pytest.approx(1.0, abs=1e-9)


def test_angular_weight_scales_the_degrees_above_zero():
    from cryoavae.affinity.kernels import weight_degrees

    x = np.arange(1.0, 13.0)  # l_max 2, 4 per degree
    np.testing.assert_array_equal(weight_degrees(x, 2, 3.0, squared=False)[:4], x[:4])
    np.testing.assert_array_equal(weight_degrees(x, 2, 3.0, squared=False)[4:], 3 * x[4:])
    np.testing.assert_array_equal(weight_degrees(x, 2, 3.0, squared=True)[4:], 9 * x[4:])
    # Amplitudes of weighted power spectra are the weighted amplitudes.
    config = af.SoapConfig(features="power", n_max=4, l_max=2, sigma_angstrom=5.0)
    cloud = AtomArrays(_points(5, n=60), np.full(60, 6), np.full(60, "C"))
    power = af.soap_environments([cloud], config)[0]
    np.testing.assert_allclose(
        amplitude_features(weight_degrees(power, 2, 3.0, squared=True), 4, 2),
        weight_degrees(amplitude_features(power, 4, 2), 2, 3.0, squared=False),
    )
