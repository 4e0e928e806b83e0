"""Template matching (cryoavae.orientation.matcher): the grids cover SO(3), and the search finds
known rotations through a missing wedge and a CTF."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation
from volume_fixtures import blobs, measured

from cryoavae.geometry.ctf import CtfModel
from cryoavae.geometry.rotations import geodesic_deg
from cryoavae.geometry.translation import moved
from cryoavae.geometry.volume_rotation import padded_spectra, rotate_spectra, rotated_coefficients
from cryoavae.orientation import grids
from cryoavae.orientation.averaging import centre_on_mass
from cryoavae.orientation.fourier import (
    Band,
    RotatedTemplates,
    correlation_peaks,
    shift_grid,
    shift_phases,
)
from cryoavae.orientation.grids import local_grid, uniform_grid
from cryoavae.orientation.matcher import TemplateMatcher

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_grids_cover_so3_and_the_neighbourhood_of_the_identity():
    grid = uniform_grid(15.0)
    probes = Rotation.random(300, random_state=1).as_matrix()
    nearest = geodesic_deg(probes[:, None], grid[None]).min(axis=1)
    assert nearest.max() < 15.0  # no rotation is farther than one step from the grid
    local = local_grid(8.0)
    reach = np.abs(Rotation.from_matrix(local).as_rotvec(degrees=True)).max(axis=0)
    np.testing.assert_allclose(reach, [4.0, 4.0, 4.0])  # the same reach about x, y and z
    assert geodesic_deg(local[:1], np.eye(3)[None])[0] < 1e-6  # the identity first


@pytest.mark.parametrize("refinement", ["lattice", "newton", "lattice_newton"])
@pytest.mark.parametrize("with_ctf", [False, True])
def test_known_rotations_are_found_through_the_wedge_and_the_ctf(with_ctf, refinement):
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
    ctf = CtfModel(10.0) if with_ctf else None
    matcher = TemplateMatcher(maps, 60.0, ctf, 15.0, 3, refinement=refinement)
    found = matcher.match(particles, which[order], None if defocus is None else defocus[order])
    errors = geodesic_deg(found.rotations, truth[order])
    assert np.median(errors) < 3.0 and errors.max() < 5.0
    assert (found.scores > 0).all()
    np.testing.assert_array_equal(found.shifts_px, 0.0)  # no shift searched, none reported


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_grid_ranks_in_either_precision_to_the_same_orientations(dtype, monkeypatch):
    """bfloat16 only ranks the grid: the candidates it passes on are scored and refined in
    float32, so both precisions find the same orientations and scores (the machine's own choice,
    :func:`ranking_dtype`, is one of the two)."""
    rng = np.random.default_rng(5)
    maps = np.stack([blobs(rng), blobs(rng)])
    truth = Rotation.random(8, random_state=rng).as_matrix()
    which = np.arange(8) % 2
    particles = np.concatenate([measured(maps[c], truth[which == c], rng, snr=1.0) for c in (0, 1)])
    order = np.concatenate([np.flatnonzero(which == c) for c in (0, 1)])
    found, machines = {}, grids.ranking_dtype
    for kind in (torch.float32, dtype):
        monkeypatch.setattr(grids, "ranking_dtype", lambda device, kind=kind: kind)
        found[kind] = TemplateMatcher(maps, 60.0, None, 15.0, 3).match(particles, which[order])
    assert geodesic_deg(found[dtype].rotations, found[torch.float32].rotations).max() < 0.5
    np.testing.assert_allclose(found[dtype].scores, found[torch.float32].scores, rtol=1e-4)
    assert geodesic_deg(found[dtype].rotations, truth[order]).max() < 5.0
    assert machines("cuda") == torch.bfloat16
    assert machines("cpu") in (torch.float32, torch.bfloat16)


def test_a_wrong_template_finds_no_consistent_orientation():
    """The search is not a tautology: particles of one map matched against another map's template
    do not come out at their true orientations."""
    rng = np.random.default_rng(3)
    first, other = blobs(rng), blobs(rng)
    truth = Rotation.random(10, random_state=rng).as_matrix()
    particles = measured(first, truth, rng, snr=1.0)
    found = TemplateMatcher(other[None], 60.0, None, 15.0, 2).match(particles, np.zeros(10))
    assert np.median(geodesic_deg(found.rotations, truth)) > 30.0


@pytest.mark.parametrize("refinement", ["lattice", "newton", "lattice_newton"])
@pytest.mark.parametrize("with_ctf", [False, True])
def test_shifted_particles_are_found_at_their_offset_with_their_orientation(with_ctf, refinement):
    """Picks off centre by up to two voxels: the search finds each particle's offset to within
    half a voxel and its orientation as well as for centred particles. (The template is centred
    on its mass, as the pipeline's are when it searches shifts.)"""
    rng = np.random.default_rng(4)
    maps = centre_on_mass(blobs(rng)[None])
    truth = Rotation.random(12, random_state=rng).as_matrix()
    offsets = rng.uniform(-1.4, 1.4, (12, 3))  # |t| up to 2.4 voxels
    defocus = rng.uniform(2.0, 4.0, 12) if with_ctf else None
    particles = measured(maps[0], truth, rng, defocus, snr=1.0, shifts_px=offsets)
    ctf = CtfModel(10.0) if with_ctf else None
    matcher = TemplateMatcher(maps, 60.0, ctf, 15.0, 3, max_shift_px=3.0, refinement=refinement)
    found = matcher.match(particles, np.zeros(12), defocus)
    assert np.abs(found.shifts_px - offsets).max() < 0.5
    errors = geodesic_deg(found.rotations, truth)
    assert np.median(errors) < 3.0 and errors.max() < 5.0
    centred_only = TemplateMatcher(maps, 60.0, ctf, 15.0, 3).match(particles, np.zeros(12), defocus)
    assert np.median(geodesic_deg(centred_only.rotations, truth)) > np.median(errors)


def test_a_centre_guess_confines_the_peak_search_to_its_neighbourhood():
    """A correlation with a stronger peak 3 voxels along x and a weaker one 1 voxel the other
    way: without a guess the stronger wins; with a guess near the weaker, the weaker, to a
    fraction of a voxel."""
    d = 16
    signed = np.fft.fftfreq(d, 1.0 / d)
    z, y, x = np.meshgrid(signed, signed, signed, indexing="ij")
    cc = 2.0 * np.exp(-((x - 3) ** 2 + y**2 + z**2) / 2) + np.exp(
        -((x + 1.2) ** 2 + (y - 0.3) ** 2 + z**2) / 2
    )
    cc = torch.from_numpy(cc[None])
    limit = torch.tensor([5.0])
    anywhere = correlation_peaks(cc, limit)[0].numpy()
    assert np.abs(anywhere - [3, 0, 0]).max() < 0.25
    guess = torch.tensor([[-1.5, 0.0, 0.5]], dtype=torch.float64)
    near = correlation_peaks(cc, limit, guess, torch.tensor([1.0]))[0].numpy()
    assert np.abs(near - [-1.2, 0.3, 0.0]).max() < 0.25
    # a guess with no whole voxel within reach of it and the limit is not followed blindly
    # to the box centre: the limit alone decides
    lost = torch.tensor([[4.6, 0.0, 2.0]], dtype=torch.float64)
    alone = correlation_peaks(cc, torch.tensor([3.2]), lost, torch.tensor([0.3]))[0].numpy()
    assert np.abs(alone - [3, 0, 0]).max() < 0.25


@pytest.mark.parametrize("guess_sd_px", [0.0, 0.4])
def test_matching_from_a_centre_guess_finds_the_offset_and_the_orientation(guess_sd_px):
    """Picks off centre by up to 2.4 voxels, the matcher told where each centre roughly is (as
    the encoder's shift head says, to a few tenths of a voxel): each offset is found to within
    half a voxel, each orientation as without the guess. The guess cannot pass for the answer:
    with a guess off by 0.4 voxel sd the found offsets are closer to the truth than it is."""
    rng = np.random.default_rng(4)
    maps = centre_on_mass(blobs(rng)[None])
    truth = Rotation.random(12, random_state=rng).as_matrix()
    offsets = rng.uniform(-1.4, 1.4, (12, 3))
    particles = measured(maps[0], truth, rng, snr=0.3, shifts_px=offsets)
    guess = offsets + rng.normal(0.0, guess_sd_px, offsets.shape)
    found = TemplateMatcher(maps, 60.0, None, 15.0, 3, max_shift_px=3.0).match(
        particles, np.zeros(12), centre_guess_px=guess
    )
    errors = np.linalg.norm(found.shifts_px - offsets, axis=1)
    assert errors.max() < 0.5
    if guess_sd_px > 0:
        assert np.median(errors) < 0.5 * np.median(np.linalg.norm(guess - offsets, axis=1))
    rotation_errors = geodesic_deg(found.rotations, truth)
    assert np.median(rotation_errors) < 3.0 and rotation_errors.max() < 5.0


def test_a_centre_guess_in_the_decoders_frame_is_followed_through_the_templates_move():
    """The encoder's shift head says where the decoder's box centre went; the templates were
    moved onto their centre of mass, here 3.4 voxels from the decoder's centre. Told that offset,
    the centring looks for each particle's centre as far from the guess as the offset, turned by
    the particle's rotation, can take it, and the matcher finds the centre of mass and the
    orientation; not told, the centring stays within a voxel of the guess."""
    rng = np.random.default_rng(5)
    maps = centre_on_mass(blobs(rng)[None])
    frame = np.array([[2.0, -2.5, 1.0]])
    drawn = moved(maps, frame)[0]  # as the decoder draws it: its mass 3.4 voxels off
    truth = Rotation.random(12, random_state=rng).as_matrix()
    offsets = rng.uniform(-0.8, 0.8, (12, 3))  # where the decoder's centre sits in each box
    particles = measured(drawn, truth, rng, snr=1.0, shifts_px=offsets)
    mass = offsets + truth @ frame[0]

    def matched(guess_offsets_px):
        matcher = TemplateMatcher(
            maps, 60.0, None, 15.0, 3, max_shift_px=5.0, guess_offsets_px=guess_offsets_px
        )
        everyone = torch.arange(12)
        centres = matcher.centring.centres(
            matcher._spectra(particles),
            0,
            matcher.filters.on(matcher.centring.band, everyone, None),
            matcher.centring.guesses(offsets, 12),
        )
        found = matcher.match(particles, np.zeros(12), centre_guess_px=offsets)
        coarse = matcher.match(particles, np.zeros(12), centre_guess_px=offsets, refine=False)
        return SimpleNamespace(
            found=found,
            coarse=coarse,
            resumed=matcher.refine(particles, coarse),
            from_guess=np.linalg.norm(centres.numpy() - offsets, axis=1),
            own=float(matcher.centring.offsets[0].norm()),
        )

    told, not_told = matched(frame), matched(None)
    assert np.linalg.norm(told.found.shifts_px - mass, axis=1).max() < 0.5
    assert np.median(geodesic_deg(told.found.rotations, truth)) < 3.0
    # the centre the rotation search starts from: not told, its whole voxel confined to a voxel
    # (plus the template's own centring offset) of the guess and its fraction at most half a
    # voxel per axis, well short of the particle's mass 3.4 voxels away; told, free to go as far
    # as the offset can turn
    assert not_told.from_guess.max() <= 1.0 + not_told.own + 0.5 * np.sqrt(3)
    assert np.median(told.from_guess) > 2.5
    # the global search alone, then refined: where one call ends (the shifts in one frame)
    for run in (told, not_told):
        assert np.isnan(run.coarse.fits).all() and np.isfinite(run.found.fits).all()
        np.testing.assert_allclose(run.resumed.shifts_px, run.found.shifts_px, atol=1e-4)
        np.testing.assert_allclose(run.resumed.rotations, run.found.rotations, atol=1e-5)
        np.testing.assert_allclose(run.resumed.fits, run.found.fits, rtol=1e-4)
        assert np.median(np.linalg.norm(run.coarse.shifts_px - run.found.shifts_px, axis=1)) < 1


@pytest.mark.parametrize(("sampler", "tolerance"), [("kernel", 1e-6), ("grid_sample", 2e-4)])
def test_both_samplers_are_the_simulators_kernel(sampler, tolerance):
    """The matcher samples rotated templates as the simulator turns particles (trilinear on the
    oversampled spectrum): on a CPU with that very kernel, exactly; with ``grid_sample`` (CUDA's
    sampler, run here on the CPU) to the precision of its coordinates: float32 on an image of the
    spectrum's 66 x 65 rows places a point to ~3e-4 of a voxel, so a coefficient is within 2e-4
    of the largest (a wrong axis or turn is off by the coefficients themselves)."""
    rng = np.random.default_rng(5)
    maps = np.stack([blobs(rng), blobs(rng)])
    rotations = Rotation.random(20, random_state=rng).as_matrix()
    band = Band.up_to(maps.shape[-1], 11.0)
    expected = rotated_coefficients(
        padded_spectra(maps), rotations, maps.shape[-1], band.frequencies, np.ones(20, int)
    )
    templates = RotatedTemplates(maps, sampler=sampler)
    real, imag = templates.sample(1, torch.from_numpy(rotations), band)
    found = real.numpy() + 1j * imag.numpy()
    assert np.abs(found - expected).max() < tolerance * np.abs(expected).max()


@pytest.mark.parametrize(("sampler", "tolerance"), [("kernel", 1e-5), ("grid_sample", 5e-4)])
def test_both_samplers_correlate_as_the_sums_of_their_samples(sampler, tolerance):
    """A lattice's scores need only two sums per turned template, its cross term with the
    particle and its weighed power, which the compiled sampler adds up as it samples: both
    samplers give those of the simulator's own coefficients, summed in float64, each particle
    against its own rotations (a particle read against another's rotations, or a real part
    against an imaginary one, is off by the sums themselves)."""
    rng = np.random.default_rng(6)
    maps = np.stack([blobs(rng), blobs(rng)])
    n, m, d = 5, 3, maps.shape[-1]
    rotations = Rotation.random(n * m, random_state=rng).as_matrix()
    band = Band.up_to(d, 11.0)
    coefficients = rotated_coefficients(
        padded_spectra(maps), rotations, d, band.frequencies, np.zeros(n * m, int)
    )  # the phase that moves the origin to voxel 0 taken off again: the matcher's convention
    phase = band.centre_cos.numpy() + 1j * band.centre_sin.numpy()
    turned = (coefficients / phase).reshape(n, m, -1)
    real, imag, weight = (rng.standard_normal((n, len(band.flat))) for _ in range(3))
    weight = weight**2
    cross = (turned.real * real[:, None] + turned.imag * imag[:, None]).sum(-1)
    power = (np.abs(turned) ** 2 * weight[:, None]).sum(-1)
    templates = RotatedTemplates(maps, sampler=sampler)
    found = templates.correlate(
        0,
        torch.from_numpy(rotations.reshape(n, m, 3, 3)),
        band,
        (torch.from_numpy(real).float(), torch.from_numpy(imag).float()),
        torch.from_numpy(weight).float(),
    )
    assert [tuple(f.shape) for f in found] == [(n, m), (n, m)]
    assert np.abs(found[0].numpy() - cross).max() < tolerance * np.abs(cross).max()
    assert np.abs(found[1].numpy() - power).max() < tolerance * power.max()


def test_an_unknown_sampler_is_refused():
    with pytest.raises(ValueError, match="kernel|grid_sample"):
        RotatedTemplates(np.zeros((1, 8, 8, 8), np.float32), sampler="nearest")


def test_a_phase_ramp_undoes_a_shift():
    rng = np.random.default_rng(6)
    volume = blobs(rng)
    d = volume.shape[-1]
    shift = np.array([[1.5, -0.5, 2.0]])
    moved = rotate_spectra(padded_spectra(volume), np.eye(3)[None], d, shifts_px=shift)
    still = rotate_spectra(padded_spectra(volume), np.eye(3)[None], d)
    band = Band.up_to(d, 8.0)
    cos, sin = shift_phases(band, torch.from_numpy(shift), d)
    back = moved.reshape(-1)[band.flat] * (cos.numpy() + 1j * sin.numpy())[0]
    np.testing.assert_allclose(back, still.reshape(-1)[band.flat], rtol=1e-4, atol=1e-3)


def test_the_shift_grid_is_a_ball_with_no_shift_first():
    grid = shift_grid(2.0, 1.0)
    assert np.array_equal(grid[0], [0, 0, 0]) and np.linalg.norm(grid, axis=1).max() <= 2.0
    assert len(grid) == 33  # the integer points of a ball of radius 2
    assert shift_grid(0.0, 1.0).shape == (1, 3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_the_matcher_finds_the_same_on_cuda_as_on_the_cpu():
    rng = np.random.default_rng(8)
    maps = centre_on_mass(blobs(rng)[None])
    truth = Rotation.random(6, random_state=rng).as_matrix()
    offsets = rng.uniform(-1.0, 1.0, (6, 3))
    particles = measured(maps[0], truth, rng, snr=1.0, shifts_px=offsets)
    found = {
        device: TemplateMatcher(maps, 60.0, None, 15.0, 2, max_shift_px=2.0, device=device).match(
            particles, np.zeros(6)
        )
        for device in ("cpu", "cuda")
    }
    assert geodesic_deg(found["cpu"].rotations, found["cuda"].rotations).max() < 0.5
    np.testing.assert_allclose(found["cpu"].shifts_px, found["cuda"].shifts_px, atol=0.1)


def test_the_grid_cache_keeps_the_newest_templates_within_its_budget(monkeypatch):
    """With room for one template's turned grid the cache keeps the one asked for last (not the
    first, which left every later template to be sampled again for each batch of particles), and
    a cached grid reads as a freshly sampled one to bfloat16 precision, and its shell powers as
    the weighted power of the fresh samples summed over each shell."""
    from cryoavae.orientation import grids
    from cryoavae.orientation.fourier import Band, RotatedTemplates

    rng = np.random.default_rng(12)
    templates = RotatedTemplates(np.stack([blobs(rng), blobs(rng), blobs(rng)]))
    band = Band.up_to(templates.d, 4.0)
    rotations = torch.from_numpy(uniform_grid(30.0))
    each = len(rotations) * (2 * len(band.flat) * 2 + len(band.shell_radius) * 4)
    monkeypatch.setattr(grids, "GRID_CACHE_BYTES", each + 1)
    cache = grids.GridTemplates(templates, rotations, band)
    for template in (0, 1, 2):
        read, power = cache.chunk(template, 0, len(rotations))
        assert list(cache._cache) == [template]
        real, imag = templates.sample(template, rotations, band, phased=False)
        fresh = torch.cat([real, imag], -1)
        np.testing.assert_allclose(read, fresh, rtol=1e-2, atol=1e-2 * float(fresh.abs().max()))
        weighted = ((real**2 + imag**2) * band.weight).numpy()
        shells = np.stack([weighted[:, band.shell == q].sum(1) for q in range(power.shape[1])], 1)
        np.testing.assert_allclose(power, shells, rtol=1e-5, atol=1e-6 * shells.max())


def test_a_particle_fits_its_own_template_better_than_another_maps_particle_does():
    """``fits``: the share of a particle's measured power its matched template explains. Particles
    of the template's own map fit it far better than particles of another map matched against it
    (the evidence a new class leaves); every fit lies in [0, 1]."""
    rng = np.random.default_rng(14)
    own, other = blobs(rng), blobs(rng)
    turns = Rotation.random(8, random_state=rng).as_matrix()
    matcher = TemplateMatcher(own[None], 60.0, None, 20.0, 2)
    mine = matcher.match(measured(own, turns, rng, snr=1.0), np.zeros(8, int)).fits
    theirs = matcher.match(measured(other, turns, rng, snr=1.0), np.zeros(8, int)).fits
    assert ((0 <= mine) & (mine <= 1) & (0 <= theirs) & (theirs <= 1)).all()
    assert mine.min() > 0.6 > 0.45 > theirs.max(), (mine, theirs)


def test_a_templates_power_summed_by_shell_is_its_power_under_each_particles_filter():
    """The global search divides by a turned template's power under each particle's filter (the
    wedge times its CTF at its own defocus), summed over the band's shells rather than over its
    coefficients: the same sum, for particles of different defoci. Fails if a shell's CTF or a
    coefficient's multiplicity is left out."""
    from cryoavae.orientation.fourier import RotatedTemplates

    rng = np.random.default_rng(21)
    matcher = TemplateMatcher(blobs(rng)[None], 60.0, CtfModel(10.0), 30.0, 1, low_pass_px=8.0)
    band = matcher.low
    templates = RotatedTemplates(blobs(rng)[None])
    turned = torch.from_numpy(Rotation.random(5, random_state=rng).as_matrix()).float()
    real, imag = templates.sample(0, turned, band, phased=False)
    defocus_um = np.array([1.0, 2.5, 4.0])
    rows = torch.arange(3)
    filters = matcher.filters.on(band, rows, defocus_um).double()
    explicit = (filters**2 * band.weight.double()) @ (real.double() ** 2 + imag.double() ** 2).T
    cache = grids.GridTemplates(templates, turned, band)
    by_shell = (
        matcher.filters.shell_weights(band, rows, defocus_um) @ cache.shell_power(real, imag).T
    )
    assert len(band.shell_radius) < len(band.flat) / 5
    assert not np.allclose(explicit[0], explicit[2], rtol=1e-2)  # the defoci differ
    np.testing.assert_allclose(by_shell.double(), explicit, rtol=1e-4)
