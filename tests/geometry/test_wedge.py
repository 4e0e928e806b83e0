"""Missing wedge: exactly the region |k_z| > |k_x| tan(tilt_max) is zeroed."""

from __future__ import annotations

import numpy as np
import pytest

from cryoavae.geometry.wedge import missing_wedge_mask


def frequencies(d: int, rfft: bool = True):
    k = np.rint(np.fft.fftfreq(d) * d)
    kx = np.rint(np.fft.rfftfreq(d) * d) if rfft else k
    return np.meshgrid(k, k, kx, indexing="ij")  # (z, y, x)


def test_mask_keeps_exactly_the_measured_angles():
    d, tilt = 16, 60.0
    mask = missing_wedge_mask(d, tilt)
    kz, ky, kx = frequencies(d)
    # angle of k away from the x axis in the x-z plane (the tilt plane); any k_y
    angle = np.degrees(np.arctan2(np.abs(kz), np.abs(kx)))
    np.testing.assert_array_equal(mask, angle <= tilt + 1e-9)
    assert mask[0, 5, 0]  # k_z = 0: kept for every k_y, even k_x = 0
    assert mask[1, 0, 1] and not mask[2, 0, 1]  # 45 deg kept; 63.4 deg missing
    assert not mask[1, 3, 0]  # k_x = 0, k_z != 0: along the beam, missing
    assert mask[0, 0, 0]


def test_boundary_is_inclusive_and_limits():
    mask = missing_wedge_mask(12, 45.0)
    assert mask[3, 0, 3] and mask[-3, 2, 3] and not mask[4, 0, 3]
    assert missing_wedge_mask(12, 90.0).all()
    only_plane = missing_wedge_mask(12, 0.0)
    assert only_plane[0].all() and not only_plane[1:].any()
    with pytest.raises(ValueError, match="tilt_max_deg"):
        missing_wedge_mask(12, 95.0)


def test_fraction_kept_and_symmetry():
    full = missing_wedge_mask(32, 60.0, rfft=False)
    assert full.mean() == pytest.approx(0.71, abs=0.01)  # SCIENCE-NOTES: 71 %
    mirrored = full[np.ix_(*[(-np.arange(32)) % 32] * 3)]
    np.testing.assert_array_equal(full, mirrored)  # k and -k together, so filtering stays real
    np.testing.assert_array_equal(missing_wedge_mask(32, 60.0), full[:, :, :17])


def test_filtering_zeroes_exactly_the_masked_coefficients():
    d = 16
    volume = np.random.default_rng(0).standard_normal((d, d, d))
    mask = missing_wedge_mask(d, 50.0)
    filtered = np.fft.irfftn(np.fft.rfftn(volume) * mask, s=(d, d, d), axes=(0, 1, 2))
    spectrum = np.fft.rfftn(filtered)
    assert np.abs(spectrum[~mask]).max() < 1e-9
    np.testing.assert_allclose(spectrum[mask], np.fft.rfftn(volume)[mask], atol=1e-9)
