"""The Gauss-Newton refinement step (cryoavae.orientation.newton): from a rotation a few degrees
off, one step lands near the truth; from the truth it stays; a template that fits nothing does
not move."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from volume_fixtures import blobs

from cryoavae.geometry.rotations import geodesic_deg
from cryoavae.orientation.fourier import Band, RotatedTemplates
from cryoavae.orientation.grids import QuadraticPeak, rotation_matrices
from cryoavae.orientation.newton import NewtonStep, level_steps

pytestmark = pytest.mark.usefixtures("one_thread")


def _step(template: np.ndarray, truth: np.ndarray, start: np.ndarray, reach_deg=10.0, sign=1.0):
    """The rotations one step reaches from ``start`` for noise-free particles of ``template``
    turned by ``truth`` (``sign`` -1: the particles' contrast inverted)."""
    band = Band.up_to(template.shape[-1], 8.0)
    templates = RotatedTemplates(template[None])
    xr, xi = templates.sample(0, torch.from_numpy(truth).float(), band, phased=False)
    weight = band.weight.expand_as(xr)
    particles = (sign * xr * weight, sign * xi * weight)  # weighed as the matcher weighs them
    newton = NewtonStep(reach_deg)
    probes = torch.from_numpy(start)[:, None] @ newton.probes(torch.float64, "cpu")[None]
    tr, ti = templates.sample(0, probes.reshape(-1, 3, 3).float(), band, phased=False)
    tr, ti = tr.reshape(len(start), 4, -1), ti.reshape(len(start), 4, -1)
    turn = newton.offsets((tr, ti), particles, weight)
    return (torch.from_numpy(start) @ rotation_matrices(turn)).numpy(), turn


def test_one_step_from_a_few_degrees_off_lands_near_the_truth():
    rng = np.random.default_rng(7)
    template = blobs(rng)
    truth = Rotation.random(12, random_state=rng).as_matrix()
    off = Rotation.from_rotvec(rng.normal(size=(12, 3)) * np.radians(2.5))
    start = (Rotation.from_matrix(truth) * off).as_matrix()
    before = geodesic_deg(start, truth)
    reached, _ = _step(template, truth, start)
    after = geodesic_deg(reached, truth)
    assert before.min() > 1.0
    assert np.median(after) < 0.2 * np.median(before) and after.max() < 0.5 * before.max()


def test_a_step_is_bounded_by_the_reach_and_zero_at_the_truth_or_without_a_fit():
    rng = np.random.default_rng(8)
    template = blobs(rng)
    truth = Rotation.random(6, random_state=rng).as_matrix()
    _, at_truth = _step(template, truth, truth)
    assert np.degrees(float(at_truth.norm(dim=1).max())) < 0.1
    far = (Rotation.from_matrix(truth) * Rotation.from_rotvec([0.0, 0.0, 0.5])).as_matrix()
    _, bounded = _step(template, truth, far, reach_deg=2.0)
    assert np.degrees(float(bounded.norm(dim=1).max())) <= 2.0 + 1e-9
    _, inverted = _step(template, truth, far, sign=-1.0)  # no positive scale fits
    assert torch.equal(inverted, torch.zeros_like(inverted))


def test_lattice_newton_takes_the_lattice_at_the_first_level_only():
    steps, local = level_steps("lattice_newton", [10.0, 5.0, 2.5], torch.device("cpu"))
    assert isinstance(steps[0], QuadraticPeak)
    assert [type(step) for step in steps[1:]] == [NewtonStep, NewtonStep]
    assert [len(turns) for turns in local] == [15, 4, 4]
    with pytest.raises(ValueError, match="lattice\\|newton\\|lattice_newton"):
        level_steps("newtonian", [10.0], torch.device("cpu"))
