"""Template matching (cryoavae.orientation.matcher): the grids cover SO(3), and the search finds
known rotations through a missing wedge and a CTF."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from volume_fixtures import blobs, measured

from cryoavae.geometry.rotations import geodesic_deg
from cryoavae.orientation.matcher import CtfModel, TemplateMatcher, local_grid, uniform_grid

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_grids_cover_so3_and_the_neighbourhood_of_the_identity():
    grid = uniform_grid(15.0)
    probes = Rotation.random(300, random_state=1).as_matrix()
    nearest = geodesic_deg(probes[:, None], grid[None]).min(axis=1)
    assert nearest.max() < 15.0  # no rotation is farther than one step from the grid
    local = local_grid(8.0)
    reach = np.abs(Rotation.from_matrix(local).as_rotvec(degrees=True)).max(axis=0)
    np.testing.assert_allclose(reach, [8.0, 8.0, 8.0])  # the same reach about x, y and z
    assert geodesic_deg(local[:1], np.eye(3)[None])[0] < 1e-6  # the identity first


@pytest.mark.parametrize("with_ctf", [False, True])
def test_known_rotations_are_found_through_the_wedge_and_the_ctf(with_ctf):
    rng = np.random.default_rng(2)
    maps = np.stack([blobs(rng), blobs(rng)])
    truth = Rotation.random(10, random_state=rng).as_matrix()
    which = np.arange(10) % 2
    defocus = rng.uniform(2.0, 4.0, 10) if with_ctf else None
    particles = np.concatenate(
        [
            measured(
                maps[c],
                truth[which == c],
                rng,
                defocus_um=None if defocus is None else defocus[which == c],
                snr=1.0,
            )
            for c in (0, 1)
        ]
    )
    order = np.concatenate([np.flatnonzero(which == c) for c in (0, 1)])
    matcher = TemplateMatcher(maps, 60.0, CtfModel(10.0) if with_ctf else None, 15.0, 3)
    found, score = matcher.match(
        particles, which[order], None if defocus is None else defocus[order]
    )
    errors = geodesic_deg(found, truth[order])
    assert np.median(errors) < 3.0 and errors.max() < 5.0
    assert (score > 0).all()


def test_a_wrong_template_finds_no_consistent_orientation():
    """The search is not a tautology: particles of one map matched against another map's template
    do not come out at their true orientations."""
    rng = np.random.default_rng(3)
    first, other = blobs(rng), blobs(rng)
    truth = Rotation.random(10, random_state=rng).as_matrix()
    particles = measured(first, truth, rng, snr=1.0)
    found, _ = TemplateMatcher(other[None], 60.0, None, 15.0, 2).match(particles, np.zeros(10))
    assert np.median(geodesic_deg(found, truth)) > 30.0
