"""The sample: contrast against ice, packing without overlap, particles where the list says."""

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.spatial.transform import Rotation
from tomogram_fixtures import density_map, maps

from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import random_rotations
from cryoavae.sources.tomogram.sample import (
    HEAVY_Z_PER_A3,
    SamplePlan,
    class_radii_px,
    contrast_potential,
    place_particles,
    render_sample,
)


def test_contrast_is_relative_to_ice_and_integrates_to_the_displaced_volume():
    m = density_map("1bxn").astype(np.float64)
    voxel = 10.0
    potential = contrast_potential(m[None], voxel, 4.5, 7.9)[0].astype(np.float64)
    volume_a3 = m.sum() / HEAVY_Z_PER_A3  # the protein's volume (Å^3)
    integral = potential.sum() * voxel**3
    assert integral == pytest.approx((7.9 - 4.5) * volume_a3, rel=1e-3)  # nothing clipped here
    vacuum = contrast_potential(m[None], voxel, 0.0, 7.9)[0]
    assert vacuum.sum() > potential.sum() > 0  # ice lowers the contrast
    denser_ice = contrast_potential(m[None], voxel, 7.9, 7.9)[0]
    assert np.abs(denser_ice).max() < 1e-3 * np.abs(vacuum).max()  # ice as dense: no contrast


def test_radii_enclose_the_maps_and_grow_with_the_protein():
    radii = class_radii_px(maps("3qm1", "1s3x", "1qvr"))
    assert radii[0] < radii[1] < radii[2] < 16


def test_placement_packs_without_overlap_inside_the_margins():
    rng = np.random.default_rng(0)
    radii = np.repeat([3.0, 5.0, 8.0], [120, 50, 12])
    margin = np.full(len(radii), 10.0)
    positions = place_particles(radii, (160, 128, 64), margin, 1.0, rng)
    distance = squareform(pdist(positions))
    contact = radii[:, None] + radii[None, :] + 1.0
    np.fill_diagonal(distance, np.inf)
    assert (distance >= contact).all()
    assert (positions >= 10.0).all() and (positions <= np.array([149, 117, 53])).all()
    # sub-voxel positions
    assert np.abs(positions - np.rint(positions)).max() > 0.4
    again = place_particles(radii, (160, 128, 64), margin, 1.0, np.random.default_rng(0))
    assert np.array_equal(positions, again)


def test_too_crowded_a_sample_is_refused_in_one_line():
    radii = np.full(400, 6.0)
    with pytest.raises(InputError, match="lower tomograms.particles_per_class") as info:
        place_particles(radii, (64, 64, 32), np.full(400, 8.0), 0.0, np.random.default_rng(0))
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="too small"):
        place_particles(np.ones(1), (16, 16, 16), np.full(1, 9.0), 0.0, np.random.default_rng(0))


def test_orientations_are_uniform_over_so3():
    r = random_rotations(20000, np.random.default_rng(1))
    assert np.allclose(np.einsum("nii->n", r @ r.transpose(0, 2, 1)), 3.0)
    assert np.abs(r.mean(axis=0)).max() < 0.02  # Haar: every entry averages 0
    # rotation angles follow (1 - cos t) / pi
    angles = Rotation.from_matrix(r).magnitude()
    assert np.mean(angles) == pytest.approx(np.pi / 2 + 2 / np.pi, abs=0.02)


def test_rendered_particles_sit_at_their_sub_voxel_positions():
    potential = contrast_potential(maps("1bxn", "3qm1"), 10.0, 0.0, 7.9)
    d = potential.shape[-1]
    centre = np.indices((d, d, d))[::-1].reshape(3, -1) - d // 2  # (x, y, z) offsets
    mass = potential.reshape(2, -1)
    map_centroid = (mass @ centre.T) / mass.sum(axis=1)[:, None]  # (2, 3) xyz, ~0
    positions = np.array([[20.3, 30.7, 20.5], [60.6, 41.2, 22.9]])
    rotations = Rotation.from_euler("ZYZ", [[0, 0, 0], [40, 70, -20]], degrees=True)
    plan = SamplePlan(np.array([0, 1]), positions, rotations.as_matrix())
    sample = render_sample(potential, plan, (80, 64, 44)).numpy()  # (Z, X, Y)
    z, x, y = np.indices(sample.shape)
    for p in range(2):
        near = (np.abs(x - positions[p, 0]) < 16) & (np.abs(y - positions[p, 1]) < 16)
        weights = sample * near
        found = np.array([(weights * a).sum() for a in (x, y, z)]) / weights.sum()
        expected = positions[p] + plan.rotations[p] @ map_centroid[p]
        assert np.allclose(found, expected, atol=0.05)
    assert sample.sum() == pytest.approx(potential.sum(), rel=1e-3)
