"""Calibration of raw similarities onto [-1, 1]: monotone, the documented formulas, the ends."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

from cryoavae import affinity as af
from cryoavae.affinity.calibrate import METHODS
from cryoavae.core.errors import InputError


def _random_similarity(n: int, seed: int) -> np.ndarray:
    """Cosines of random vectors sharing a large common part: all near 1, as SOAP gives."""
    rng = np.random.default_rng(seed)
    x = 5.0 + rng.normal(size=(n, 6))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    s = x @ x.T
    np.fill_diagonal(s, 1.0)
    return s


@pytest.mark.parametrize("method", METHODS)
def test_calibration_is_monotone_from_one_to_minus_one(method):
    s = _random_similarity(9, seed=0)
    a, info = af.calibrate_similarity(s, method)
    iu = np.triu_indices(9, k=1)
    assert info["method"] == method
    np.testing.assert_array_equal(a, a.T)
    np.testing.assert_array_equal(np.diag(a), 1.0)
    assert a[iu].min() == pytest.approx(-1.0)
    assert a[iu].max() < 1.0
    assert spearmanr(a[iu], s[iu]).statistic == pytest.approx(1.0)


def test_power_puts_the_median_pair_at_zero_and_linear_is_its_square_case():
    s = _random_similarity(7, seed=1)  # 21 pairs: the median is one of them
    a, info = af.calibrate_similarity(s, "power")
    iu = np.triu_indices(7, k=1)
    assert np.median(a[iu]) == pytest.approx(0.0, abs=1e-12)
    d = np.sqrt(1 - s[iu])
    assert info["max_distance"] == pytest.approx(d.max())
    assert info["median_distance"] == pytest.approx(np.median(d))
    g = info["exponent"]
    np.testing.assert_allclose(a[iu], 1 - 2 * (d / d.max()) ** g, atol=1e-12)
    linear, _ = af.calibrate_similarity(s, "linear")
    np.testing.assert_allclose(linear, af.spread_similarity(s), atol=1e-15)
    np.testing.assert_allclose(linear[iu], 1 - 2 * (d / d.max()) ** 2, atol=1e-12)


def test_rank_spreads_values_evenly():
    s = _random_similarity(6, seed=2)
    a, _ = af.calibrate_similarity(s, "rank")
    values = np.sort(a[np.triu_indices(6, k=1)])
    np.testing.assert_allclose(values, 1 - 2 * np.arange(15, 0, -1) / 15, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_identical_structures_stay_at_one_and_degenerate_sets_fall_back(method):
    s = _random_similarity(5, seed=3)
    s[0, 4] = s[4, 0] = 1.0 - 1e-15  # a duplicate class, up to rounding
    a, _ = af.calibrate_similarity(s, method)
    assert a[0, 4] == 1.0
    two, info = af.calibrate_similarity(np.array([[1.0, 0.9], [0.9, 1.0]]), method)
    np.testing.assert_array_equal(two, [[1.0, -1.0], [-1.0, 1.0]])
    assert info.get("exponent", 2.0) == 2.0
    np.testing.assert_array_equal(af.calibrate_similarity(np.ones((3, 3)), method)[0], 1.0)
    np.testing.assert_array_equal(af.calibrate_similarity(np.ones((1, 1)), method)[0], 1.0)


def test_unknown_method_and_bad_matrices_are_refused():
    with pytest.raises(InputError, match=r"affinity\.soap\.calibration: 'sigmoid' is not one of"):
        af.calibrate_similarity(np.eye(2), "sigmoid")
    with pytest.raises(InputError, match="must be a square matrix"):
        af.calibrate_similarity(np.ones((2, 3)), "power")
