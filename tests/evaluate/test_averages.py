"""FSC and the resolution read off it (cryoavae.evaluate.averages), on known curves."""

from __future__ import annotations

import numpy as np
import pytest

from cryoavae.evaluate.averages import fsc, resolution_angstrom


def test_resolution_at_a_threshold():
    frequency = np.arange(1, 9) / 16.0
    curve = np.array([1.0, 0.9, 0.7, 0.4, 0.2, 0.1, 0.0, 0.0])
    # 0.5 is crossed between shells 3 (0.7) and 4 (0.4): at 3 + 2/3 shells of 16
    assert resolution_angstrom(frequency, curve, 0.5, 10.0) == pytest.approx(10.0 / (11 / 48))
    assert resolution_angstrom(frequency, np.ones(8), 0.5, 10.0) == 20.0  # Nyquist


def test_fsc_is_one_for_a_scaled_copy_minus_one_for_a_negated_one_and_near_zero_for_noise():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 16, 16))
    frequency, same = fsc(a, 3.0 * a)
    np.testing.assert_allclose(frequency, np.arange(1, 9) / 16)  # shells 1 .. d // 2
    np.testing.assert_allclose(same, 1.0)
    np.testing.assert_allclose(fsc(a, -a)[1], -1.0)
    unrelated = fsc(a, rng.standard_normal((16, 16, 16)))[1]
    assert np.abs(unrelated[3:]).max() < 0.15  # shells of hundreds of samples each
