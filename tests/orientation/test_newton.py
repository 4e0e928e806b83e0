"""The Gauss-Newton refinement step (cryoavae.orientation.newton): from a rotation a few degrees
off, one step lands near the truth; from the truth it stays; a template that fits nothing does
not move."""

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from volume_fixtures import blobs

from cryoavae.geometry.rotations import geodesic_deg
from cryoavae.geometry.spectrum_samples import PROBE_SUMS
from cryoavae.geometry.volume_rotation import padded_spectra, rotated_coefficients
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
    turn = newton.offsets(templates.probe_sums(0, probes, band, particles, weight))
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


@pytest.mark.parametrize(("sampler", "tolerance"), [("kernel", 2e-5), ("grid_sample", 1e-2)])
def test_both_samplers_sum_the_probes_as_float64_coefficients_do(sampler, tolerance):
    """The sums a step reads, each particle against its own rotation and probes, as from the
    simulator's coefficients in float64: the differences to the probes are small beside the
    samples (a 0.5 degree turn), so they must be taken before summing, not after; and the probe
    scores follow from the sums as from the probes' own samples. grid_sample's coordinates
    (~3e-4 of a voxel) are a larger part of a probe's 0.2-voxel move than of a sample, hence
    its looser bound on the differences' sums (measured: at most 5e-3 of each sum's size)."""
    rng = np.random.default_rng(9)
    maps = np.stack([blobs(rng), blobs(rng)])
    n, d = 4, maps.shape[-1]
    band = Band.up_to(d, 11.0)
    newton = NewtonStep(5.0)
    turns = torch.from_numpy(Rotation.random(n, random_state=rng).as_matrix())
    probes = (turns[:, None] @ newton.probes(torch.float64, "cpu")[None]).numpy()
    samples = rotated_coefficients(
        padded_spectra(maps), probes.reshape(-1, 3, 3), d, band.frequencies, np.ones(4 * n, int)
    )
    phase = band.centre_cos.numpy() + 1j * band.centre_sin.numpy()
    t = (samples / phase).reshape(n, 4, -1)  # without the phase, as the matcher samples
    x = rng.standard_normal((n, len(band.flat))) + 1j * rng.standard_normal((n, len(band.flat)))
    w = rng.uniform(0.5, 2.0, (n, len(band.flat)))
    diff = t[:, 1:] - t[:, :1]

    def dot(u, v, weight=1.0):
        return (np.real(u * np.conj(v)) * weight).sum(-1)

    pairs = [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]
    expected = np.concatenate(
        [
            dot(t[:, 0], x)[:, None],
            dot(t[:, 0], t[:, 0], w)[:, None],
            dot(diff, x[:, None]),
            dot(diff, t[:, :1], w[:, None]),
            np.stack([dot(diff[:, a], diff[:, b], w) for a, b in pairs], 1),
        ],
        1,
    )
    particles = tuple(torch.from_numpy(part).float() for part in (x.real, x.imag))
    templates = RotatedTemplates(maps, sampler=sampler)
    sums = templates.probe_sums(
        1, torch.from_numpy(probes), band, particles, torch.from_numpy(w).float()
    )
    scale = np.abs(expected).max(axis=0)  # each sum against its own size
    assert sums.shape == (n, len(PROBE_SUMS))
    assert (np.abs(sums.numpy() - expected) <= tolerance * scale).all()
    scores = np.maximum(dot(t, x[:, None]), 0) ** 2 / dot(t, t, w[:, None])
    np.testing.assert_allclose(newton.scores(sums).numpy(), scores, rtol=20 * tolerance)
