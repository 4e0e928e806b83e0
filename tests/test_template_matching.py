"""Orientations by template matching: the grid covers SO(3), the search finds known rotations
through a missing wedge and a CTF, and embedding reports them."""

import numpy as np
import pandas as pd
import pytest
import scipy.fft
from scipy.spatial.transform import Rotation

from cryoavae import particles
from cryoavae.embed import embed_particles
from cryoavae.model import ModelConfig
from cryoavae.orientations import align_rotations, geodesic_deg
from cryoavae.pose_matching import OrientationConfig, match_with_references, template_centres
from cryoavae.simulate.ctf import ctf_radial_table, frequency_squared_index
from cryoavae.simulate.rotation import (
    band_limited_coefficients,
    padded_spectra,
    rotate_spectra,
    rotated_coefficients,
)
from cryoavae.template_matching import CtfModel, TemplateMatcher, local_grid, uniform_grid
from cryoavae.train import TrainingConfig, train_model
from cryoavae.wedge import missing_wedge_mask

pytestmark = pytest.mark.usefixtures("one_thread")

D = 24


def _blobs(rng: np.random.Generator, n: int = 7) -> np.ndarray:
    """An asymmetric map: Gaussian blobs of different sizes around the centre, (D, D, D)."""
    c = np.arange(D) - D // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    volume = np.zeros((D, D, D), np.float32)
    for centre, width in zip(rng.uniform(-6, 6, (n, 3)), rng.uniform(1.0, 2.0, n), strict=True):
        r2 = (x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2
        volume += np.exp(-r2 / (2 * width**2)).astype(np.float32)
    return volume


def _measured(volume, rotations, rng, defocus_um=None, snr=None, tilt=60.0):
    """Particles as the simulator makes them: the map turned (Fourier space), the missing wedge
    removed, times a CTF at 10 A per voxel, plus white noise at ``snr``."""
    spectra = rotate_spectra(padded_spectra(volume), rotations, D)
    spectra = spectra * missing_wedge_mask(D, tilt)
    if defocus_um is not None:
        spectra = spectra * ctf_radial_table(D, 10.0, defocus_um)[:, frequency_squared_index(D)]
    out = scipy.fft.irfftn(spectra, s=(D, D, D), axes=(1, 2, 3)).astype(np.float32)
    if snr is not None:
        sd = np.sqrt(out.reshape(len(out), -1).var(axis=1) / snr)
        out += (sd[:, None, None, None] * rng.standard_normal(out.shape)).astype(np.float32)
    return out


def test_rotated_coefficients_are_the_rotated_spectrum_at_those_frequencies():
    rng = np.random.default_rng(0)
    spectra = padded_spectra(_blobs(rng))
    rotations = Rotation.random(3, random_state=rng).as_matrix()
    fz = np.rint(np.fft.fftfreq(D) * D)[:, None, None]
    keep = np.broadcast_to(np.abs(fz) <= 5, (D, D, D // 2 + 1))
    flat, frequencies = band_limited_coefficients(D, keep)
    full = rotate_spectra(spectra, rotations, D).reshape(3, -1)
    np.testing.assert_allclose(
        rotated_coefficients(spectra, rotations, D, frequencies), full[:, flat], rtol=0, atol=1e-5
    )


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
    maps = np.stack([_blobs(rng), _blobs(rng)])
    truth = Rotation.random(10, random_state=rng).as_matrix()
    which = np.arange(10) % 2
    defocus = rng.uniform(2.0, 4.0, 10) if with_ctf else None
    particles = np.concatenate(
        [
            _measured(
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
    first, other = _blobs(rng), _blobs(rng)
    truth = Rotation.random(10, random_state=rng).as_matrix()
    particles = _measured(first, truth, rng, snr=1.0)
    found, _ = TemplateMatcher(other[None], 60.0, None, 15.0, 2).match(particles, np.zeros(10))
    assert np.median(geodesic_deg(found, truth)) > 30.0


@pytest.fixture(scope="module")
def splat_study(tmp_path_factory):
    """A 3-D Gaussian-splat model trained for one epoch, and its particles' table and images."""
    root = tmp_path_factory.mktemp("matching")
    rng = np.random.default_rng(4)
    volumes = np.stack([_blobs(rng)[4:20, 4:20, 4:20] for _ in range(12)])
    names = ["a", "b"] * 6
    table = pd.DataFrame(
        {
            particles.IMAGE: [particles.image_reference(i, "s.mrcs") for i in range(12)],
            particles.CLASS_NUMBER: [1, 2] * 6,
            **{angle: rng.uniform(0, 180, 12) for angle in particles.ANGLES},
            particles.CLASS_NAME: names,
            particles.SPLIT: ["train"] * 10 + ["val"] * 2,
            particles.DEFOCUS: rng.uniform(2e4, 4e4, 12),
        }
    )
    particles.write_stack(root / "s.mrcs", volumes, 10.0)
    particles.write_particle_table(root / "particles.star", table)
    table = particles.read_particle_table(root / "particles.star")
    images = particles.ParticleImages(table, root / "particles.star")
    config = ModelConfig(
        ndim=3,
        box_size_px=16,
        channels=(4, 8),
        latent_dims=3,
        pose_dims=6,
        pose_encoding="rotation6d",
        decoder="gaussian_splat",
        n_gaussians=8,
        wedge_tilt_max_deg=60.0,
    )
    train_model(
        table,
        images,
        np.eye(2),
        config,
        TrainingConfig(epochs=1, batch_size=4),
        0,
        root / "model.pt",
        root / "history.tsv",
        root / "work",
        threads=1,
    )
    return root / "model.pt", table, images


def test_embedding_reports_matched_orientations_and_their_templates(splat_study):
    checkpoint, table, images = splat_study
    matching = OrientationConfig(
        method="template_matching", grid_step_deg=20.0, refinement_levels=1
    )
    first = embed_particles(
        checkpoint, table, images, orientation=matching, seed=3, ctf=CtfModel(10.0)
    )
    again = embed_particles(
        checkpoint, table, images, orientation=matching, seed=3, ctf=CtfModel(10.0)
    )
    encoder = embed_particles(checkpoint, table, images)
    angles = ["inferred_rot", "inferred_tilt", "inferred_psi"]
    assert set(first["orientation_template"]) <= {0, 1}  # one template per seen class
    assert np.isfinite(first[angles].to_numpy()).all()
    pd.testing.assert_frame_equal(first, again)  # seeded: the same orientations again
    assert "orientation_template" not in encoder.columns
    np.testing.assert_allclose(first[["mu_0", "mu_1", "mu_2"]], encoder[["mu_0", "mu_1", "mu_2"]])
    assert not np.allclose(first[angles], encoder[angles])  # the search replaced the encoder's


def test_reference_iterations_turn_a_blurred_reference_into_the_particles_own(tmp_path):
    """A reference that has lost its detail (the decoder's blur) misplaces particles; averaging
    the particles by their matched orientations and matching again recovers them."""
    rng = np.random.default_rng(5)
    truth_map = _blobs(rng, n=9)
    spectrum = scipy.fft.rfftn(truth_map)
    k2 = frequency_squared_index(D)
    blurred = scipy.fft.irfftn(spectrum * np.exp(-k2 / (2 * 1.0**2)), s=(D, D, D)).astype(
        np.float32
    )
    truth = Rotation.random(60, random_state=rng).as_matrix()
    images = _image_set(tmp_path, _measured(truth_map, truth, rng, snr=1.0))
    errors = {}
    for iterations in (0, 2):
        config = OrientationConfig(grid_step_deg=15.0, reference_iterations=iterations)
        found, _ = match_with_references(blurred[None], np.zeros(60), images, 60.0, config)
        _, errors[iterations] = align_rotations(found, truth)
    assert np.median(errors[0]) > 3 * np.median(errors[2])  # measured: 7.5 against 1.0 deg
    assert np.median(errors[2]) < 2.0


def _image_set(tmp_path, volumes):
    n = len(volumes)
    table = pd.DataFrame(
        {
            particles.IMAGE: [particles.image_reference(i, "s.mrcs") for i in range(n)],
            particles.CLASS_NUMBER: 1,
            **{angle: 0.0 for angle in particles.ANGLES},
            particles.CLASS_NAME: "a",
            particles.SPLIT: "train",
        }
    )
    particles.write_stack(tmp_path / "s.mrcs", volumes, 10.0)
    particles.write_particle_table(tmp_path / "p.star", table)
    return particles.ParticleImages(
        particles.read_particle_table(tmp_path / "p.star"), tmp_path / "p.star"
    )


def test_best_match_puts_each_particle_with_its_own_map_whatever_its_first_template(tmp_path):
    """Multi-reference alignment: particles of two maps, every third one first given the other
    map's template. With ``best_match`` each ends with its own map and its orientation; with
    ``nearest_centre`` the misassigned ones keep the wrong template and a wrong orientation."""
    rng = np.random.default_rng(6)
    maps = np.stack([_blobs(rng), _blobs(rng)])
    which = np.arange(24) % 2
    truth = Rotation.random(24, random_state=rng).as_matrix()
    volumes = np.concatenate([_measured(maps[c], truth[which == c], rng, snr=1.0) for c in (0, 1)])
    order = np.concatenate([np.flatnonzero(which == c) for c in (0, 1)])
    which, truth = which[order], truth[order]
    first = np.where(np.arange(24) % 3 == 0, 1 - which, which)
    images = _image_set(tmp_path, volumes)
    errors, chosen = {}, {}
    for assignment in ("nearest_centre", "best_match"):
        config = OrientationConfig(
            grid_step_deg=15.0, reference_iterations=0, assignment=assignment
        )
        found, chosen[assignment] = match_with_references(maps, first, images, 60.0, config)
        errors[assignment] = geodesic_deg(found, truth)
    np.testing.assert_array_equal(chosen["best_match"], which)
    assert np.median(errors["best_match"]) < 3.0 and errors["best_match"].max() < 5.0
    np.testing.assert_array_equal(chosen["nearest_centre"], first)
    assert np.median(errors["nearest_centre"][first != which]) > 30.0
    _, _, template = TemplateMatcher(maps, 60.0, None, 15.0, 3).match_any(volumes)
    np.testing.assert_array_equal(template, which)  # the matcher itself, without the averages


def test_cosine_centres_keep_classes_whose_lengths_differ_many_fold_apart():
    """The avae's |mu| can differ 50x between classes (the affinity term sets only cosines):
    Euclidean k-means then splits the long class along its length and merges the two short
    ones near the origin; on directions each class is one centre of its own mean length."""
    rng = np.random.default_rng(0)
    axes = np.eye(3)
    lengths = [rng.uniform(4.0, 16.0, 200), np.full(200, 0.3), np.full(200, 0.3)]
    mu = np.concatenate(
        [
            length[:, None] * (axis + 0.05 * rng.standard_normal((200, 3)))
            for axis, length in zip(axes, lengths, strict=True)
        ]
    )
    truth = np.repeat(np.arange(3), 200)
    rows = np.arange(len(mu))

    def purity(labels):
        return sum(np.bincount(truth[labels == c]).max() for c in np.unique(labels)) / len(labels)

    _, euclidean = template_centres(mu, rows, 3, "euclidean", seed=1)
    centres, cosine = template_centres(mu, rows, 3, "cosine", seed=1)
    assert purity(euclidean) < 0.8  # the two short classes share a centre
    assert purity(cosine) == 1.0
    order = [np.bincount(cosine[truth == c]).argmax() for c in range(3)]
    np.testing.assert_allclose(
        np.linalg.norm(centres[order], axis=1),
        [mu[truth == c].mean(0) @ axes[c] for c in range(3)],
        rtol=0.05,
    )
