"""Orientations by matching the model's templates (cryoavae.orientation.templates): embedding
reports them, reference iterations sharpen a blurred template, multi-reference assignment, and the
template centres of the latent space."""

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.fft
import torch
from rule_scripts import run_rule
from scipy.spatial.transform import Rotation
from volume_fixtures import D, blobs, measured

from cryoavae import particles
from cryoavae.geometry.ctf import CtfModel, frequency_squared_index
from cryoavae.geometry.rotations import align_rotations, geodesic_deg, relion_angles_to_matrices
from cryoavae.inference.embed import embed_particles
from cryoavae.inference.latents import INFERRED_SHIFTS
from cryoavae.model.config import ModelConfig
from cryoavae.orientation import matching as matching_module
from cryoavae.orientation.averaging import centre_on_mass
from cryoavae.orientation.matcher import TemplateMatcher
from cryoavae.orientation.matches import Matches
from cryoavae.orientation.templates import (
    OrientationConfig,
    References,
    class_centres,
    fit_references,
    match_references,
    match_with_references,
    template_centres,
)
from cryoavae.train import TrainingConfig, train_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def splat_study(tmp_path_factory):
    """A 3-D Gaussian-splat model trained for one epoch, and its particles' table and images."""
    root = tmp_path_factory.mktemp("matching")
    rng = np.random.default_rng(4)
    volumes = np.stack([blobs(rng)[4:20, 4:20, 4:20] for _ in range(12)])
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
        method="template_matching",
        grid_step_deg=20.0,
        refinement_levels=1,
        wedge_tilt_max_deg=60.0,
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
    train = table[particles.SPLIT] == "train"
    classes = sorted(set(table.loc[train, particles.CLASS_NAME].astype(str)))
    # each template names its class: the particle's class is the one its orientation is in
    assert list(first["orientation_class"]) == [classes[t] for t in first["orientation_template"]]
    assert np.isfinite(first[angles].to_numpy()).all()
    pd.testing.assert_frame_equal(first, again)  # seeded: the same orientations again
    assert "orientation_template" not in encoder.columns
    np.testing.assert_allclose(first[["mu_0", "mu_1", "mu_2"]], encoder[["mu_0", "mu_1", "mu_2"]])
    assert not np.allclose(first[angles], encoder[angles])  # the search replaced the encoder's


def test_reference_iterations_turn_a_blurred_reference_into_the_particles_own(tmp_path):
    """A reference that has lost its detail (the decoder's blur) misplaces particles; averaging
    the particles by their matched orientations and matching again recovers them."""
    rng = np.random.default_rng(5)
    truth_map = blobs(rng, n=9)
    spectrum = scipy.fft.rfftn(truth_map)
    k2 = frequency_squared_index(D)
    blurred = scipy.fft.irfftn(spectrum * np.exp(-k2 / (2 * 1.0**2)), s=(D, D, D)).astype(
        np.float32
    )
    truth = Rotation.random(60, random_state=rng).as_matrix()
    images = _image_set(tmp_path, measured(truth_map, truth, rng, snr=1.0))
    errors = {}
    for iterations in (0, 2):
        config = OrientationConfig(
            grid_step_deg=15.0, reference_iterations=iterations, wedge_tilt_max_deg=60.0
        )
        found = match_with_references(blurred[None], np.zeros(60), images, config).rotations
        _, errors[iterations] = align_rotations(found, truth)
    assert np.median(errors[0]) > 3 * np.median(errors[2])  # measured: 7.5 against 1.0 deg
    assert np.median(errors[2]) < 2.0


def test_reference_iterations_move_shifted_particles_back_before_averaging(tmp_path):
    """Picks off centre by up to two voxels: with the shift search, the references refined from a
    blurred one (averages of the particles turned and moved back) give orientations as good as
    for centred particles, and each particle's offset to a third of a voxel."""
    rng = np.random.default_rng(7)
    truth_map = centre_on_mass(blobs(rng, n=9)[None])[0]  # shifts are from the centre of mass
    k2 = frequency_squared_index(D)
    blurred = scipy.fft.irfftn(
        scipy.fft.rfftn(truth_map) * np.exp(-k2 / (2 * 1.0**2)), s=(D, D, D)
    ).astype(np.float32)
    truth = Rotation.random(60, random_state=rng).as_matrix()
    offsets = rng.uniform(-1.2, 1.2, (60, 3))
    images = _image_set(tmp_path, measured(truth_map, truth, rng, snr=1.0, shifts_px=offsets))
    config = OrientationConfig(
        grid_step_deg=15.0,
        reference_iterations=2,
        wedge_tilt_max_deg=60.0,
        max_shift_angstrom=25.0,  # 2.5 voxels of 10 A
    )
    found = match_with_references(blurred[None], np.zeros(60), images, config)
    _, errors = align_rotations(found.rotations, truth)
    assert np.median(errors) < 2.0
    assert np.median(np.linalg.norm(found.shifts_px - offsets, axis=1)) < 0.3


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


def test_matching_logs_its_progress_batch_by_batch(tmp_path, caplog, monkeypatch):
    """Twelve particles in batches of four: each pass (the reference iteration's, then the
    final one) logs a line at a third and two thirds, with rate and time left, then done."""
    rng = np.random.default_rng(8)
    volume = blobs(rng)
    images = _image_set(
        tmp_path, measured(volume, Rotation.random(12, random_state=rng).as_matrix(), rng, snr=1.0)
    )
    monkeypatch.setattr(matching_module, "MATCH_BATCH", 4)
    config = OrientationConfig(grid_step_deg=30.0, reference_iterations=1, wedge_tilt_max_deg=60.0)
    with caplog.at_level(logging.INFO, logger="cryoavae.orientation.matching"):
        match_with_references(volume[None], np.zeros(12), images, config)
    logged = [r.getMessage() for r in caplog.records if r.name == "cryoavae.orientation.matching"]
    step = r"{}: {}% \({}/12\), [0-9.?]+/s, \d+ s elapsed, about [0-9?][\w ]* left"
    done = r"{}: done, 12 in \d+ s \([0-9.?]+/s\)"
    expected = []
    for what in ("matching reference particles \\(iteration 1/1\\)", "matching particles"):
        expected += [step.format(what, 33, 4), step.format(what, 66, 8), done.format(what)]
    assert len(logged) == len(expected), logged
    for line, pattern in zip(logged, expected, strict=True):
        assert re.fullmatch(pattern, line), line


def test_matching_in_batches_finds_what_one_batch_finds(tmp_path, monkeypatch):
    """MATCH_BATCH bounds a matching job's memory, not its results: twelve particles with a
    shift search matched in batches of five find the rotations, shifts and templates one batch
    finds."""
    rng = np.random.default_rng(9)
    volume = blobs(rng)
    images = _image_set(
        tmp_path, measured(volume, Rotation.random(12, random_state=rng).as_matrix(), rng, snr=1.0)
    )
    config = OrientationConfig(
        grid_step_deg=30.0,
        reference_iterations=1,
        wedge_tilt_max_deg=60.0,
        max_shift_angstrom=20.0,
    )
    found = {}
    for batch in (5, 12):
        monkeypatch.setattr(matching_module, "MATCH_BATCH", batch)
        found[batch] = match_with_references(volume[None], np.zeros(12, int), images, config)
    for field in Matches.FIELDS:
        np.testing.assert_allclose(
            getattr(found[5], field), getattr(found[12], field), rtol=1e-5, atol=1e-5
        )


def test_best_match_puts_each_particle_with_its_own_map_whatever_its_first_template(tmp_path):
    """Multi-reference alignment: particles of two maps, every third one first given the other
    map's template. With ``best_match`` each ends with its own map and its orientation; with
    ``nearest_centre`` the misassigned ones keep the wrong template and a wrong orientation."""
    rng = np.random.default_rng(6)
    maps = np.stack([blobs(rng), blobs(rng)])
    which = np.arange(24) % 2
    truth = Rotation.random(24, random_state=rng).as_matrix()
    volumes = np.concatenate([measured(maps[c], truth[which == c], rng, snr=1.0) for c in (0, 1)])
    order = np.concatenate([np.flatnonzero(which == c) for c in (0, 1)])
    which, truth = which[order], truth[order]
    first = np.where(np.arange(24) % 3 == 0, 1 - which, which)
    images = _image_set(tmp_path, volumes)
    errors, chosen = {}, {}
    for assignment in ("nearest_centre", "best_match"):
        config = OrientationConfig(
            grid_step_deg=15.0,
            reference_iterations=0,
            assignment=assignment,
            wedge_tilt_max_deg=60.0,
        )
        matched = match_with_references(maps, first, images, config)
        found, chosen[assignment] = matched.rotations, matched.templates
        errors[assignment] = geodesic_deg(found, truth)
    np.testing.assert_array_equal(chosen["best_match"], which)
    assert np.median(errors["best_match"]) < 3.0 and errors["best_match"].max() < 5.0
    np.testing.assert_array_equal(chosen["nearest_centre"], first)
    assert np.median(errors["nearest_centre"][first != which]) > 30.0
    found = TemplateMatcher(maps, 60.0, None, 15.0, 3).match_any(volumes)
    np.testing.assert_array_equal(
        found.templates, which
    )  # the matcher itself, without the averages


def test_the_candidate_whose_pose_fits_best_wins_and_the_first_alone_stays_wrong(tmp_path):
    """Particles of two maps, every third one proposed the other map's template first: given
    both templates as candidates (``candidate_templates: 2``), each particle ends with its own
    map and orientation, through a reference iteration too; given its first candidate alone,
    a misproposed particle keeps the wrong template and a wrong orientation."""
    rng = np.random.default_rng(16)
    maps = np.stack([blobs(rng), blobs(rng)])
    which = np.arange(24) % 2
    truth = Rotation.random(24, random_state=rng).as_matrix()
    volumes = np.stack(
        [measured(maps[c], truth[i : i + 1], rng, snr=1.0)[0] for i, c in enumerate(which)]
    )
    first = np.where(np.arange(24) % 3 == 0, 1 - which, which)
    images = _image_set(tmp_path, volumes)
    config = OrientationConfig(grid_step_deg=15.0, reference_iterations=2, wedge_tilt_max_deg=60.0)
    both = match_with_references(maps, np.stack([first, 1 - first], axis=1), images, config)
    np.testing.assert_array_equal(both.templates, which)
    assert np.median(geodesic_deg(both.rotations, truth)) < 3.0
    alone = match_with_references(maps, first[:, None], images, config)
    np.testing.assert_array_equal(alone.templates, first)
    assert np.median(geodesic_deg(alone.rotations, truth)[first != which]) > 30.0


def test_candidates_are_the_nearest_centres_nearest_first():
    """``References.candidates``: the k nearest centres in order (Euclidean on mu, or on its
    directions with ``cosine``), at most as many as there are; ``nearest`` is the first."""
    centres = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    references = References(np.zeros((3, 4, 4, 4), np.float32), centres, "euclidean")
    mu = np.array([[0.9, 0.3], [-0.2, 0.8], [-5.0, -0.1]])
    np.testing.assert_array_equal(references.candidates(mu, 2), [[0, 1], [1, 2], [2, 1]])
    np.testing.assert_array_equal(references.candidates(mu, 9).shape, (3, 3))
    np.testing.assert_array_equal(references.nearest(mu), [0, 1, 2])
    # by direction: mu[2] is nearest centre 2 in any case; mu[0] points between centres 0 and 1
    # (nearer 1 by angle), but Euclidean distance prefers the short centre 0
    lengths = np.array([[0.5], [8.0], [1.0]])
    mu = np.array([[0.6, 0.62], [-0.2, 0.8], [-5.0, -0.1]])
    cosine = References(references.templates, centres, "cosine")
    np.testing.assert_array_equal(cosine.candidates(mu, 1)[:, 0], [1, 1, 2])
    euclidean = References(references.templates, centres * lengths, "euclidean")
    assert euclidean.candidates(mu, 1)[0, 0] == 0


def test_match_references_searches_the_configured_number_of_candidates(tmp_path):
    """Through the study's own entry point: particles of map 1 whose mu lies nearest map 0's
    centre keep map 0's template with ``candidate_templates: 1`` and move to map 1's with 2,
    also with no refinement level (the global search's scores then decide); with
    ``best_match`` the setting changes nothing (every template is searched anyway)."""
    rng = np.random.default_rng(17)
    maps = np.stack([blobs(rng), blobs(rng)])
    truth = Rotation.random(6, random_state=rng).as_matrix()
    images = _image_set(tmp_path, measured(maps[1], truth, rng, snr=1.0))
    references = References(maps, np.eye(2), "euclidean")
    mu = np.tile([[0.9, 0.6]], (6, 1))  # nearer centre 0
    chosen = {}
    settings = [("nearest_centre", 1, 3), ("nearest_centre", 2, 3), ("nearest_centre", 2, 0)]
    for assignment, k, levels in [*settings, ("best_match", 2, 3)]:
        config = OrientationConfig(
            grid_step_deg=15.0,
            refinement_levels=levels,
            reference_iterations=0,
            wedge_tilt_max_deg=60.0,
            assignment=assignment,
            candidate_templates=k,
        )
        chosen[assignment, k, levels] = match_references(references, mu, images, config).templates
    np.testing.assert_array_equal(chosen["nearest_centre", 1, 3], 0)
    np.testing.assert_array_equal(chosen["nearest_centre", 2, 3], 1)
    np.testing.assert_array_equal(chosen["nearest_centre", 2, 0], 1)
    np.testing.assert_array_equal(chosen["best_match", 2, 3], 1)


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

    def nearest(metric):
        rendered, fitted = template_centres(mu[rows], 3, metric, seed=1)
        return rendered, References(np.zeros((3, 1, 1, 1)), fitted, metric).nearest(mu)

    _, euclidean = nearest("euclidean")
    centres, cosine = nearest("cosine")
    assert purity(euclidean) < 0.8  # the two short classes share a centre
    assert purity(cosine) == 1.0
    order = [np.bincount(cosine[truth == c]).argmax() for c in range(3)]
    np.testing.assert_allclose(
        np.linalg.norm(centres[order], axis=1),
        [mu[truth == c].mean(0) @ axes[c] for c in range(3)],
        rtol=0.05,
    )


def test_class_templates_follow_the_classes_where_kmeans_centres_mix_them():
    """Three classes, one spread wide and two tight and close: k-means gives the wide class two
    centres and the two tight ones one between them, so a third of the particles are matched
    against a shape that is neither class's. One template per class from its mean (the labels
    of the training particles) assigns every particle to its own class's template."""
    rng = np.random.default_rng(2)
    wide = rng.normal([0.0, 0.0], [6.0, 0.5], (300, 2))
    tight = [rng.normal(centre, 0.1, (300, 2)) for centre in ([40.0, 4.0], [40.0, 5.0])]
    mu = np.concatenate([wide, *tight])
    truth = np.repeat(np.array(["wide", "b", "c"]), 300)

    def purity(assigned):
        return sum(
            pd.Series(truth[assigned == c]).value_counts().iloc[0] for c in np.unique(assigned)
        ) / len(assigned)

    _, kmeans = template_centres(mu, 3, "euclidean", seed=0)
    assert purity(References(np.zeros((3, 1, 1, 1)), kmeans, "euclidean").nearest(mu)) < 0.8
    rendered, fitted = class_centres(mu, truth, "euclidean")
    assigned = References(np.zeros((3, 1, 1, 1)), fitted, "euclidean").nearest(mu)
    classes = np.array(["b", "c", "wide"])  # sorted, as the templates are
    assert (classes[assigned] == truth).mean() > 0.99
    np.testing.assert_allclose(rendered[2], wide.mean(0))
    _, directions = class_centres(mu, truth, "cosine")
    unit = mu[truth == "b"] / np.linalg.norm(mu[truth == "b"], axis=1, keepdims=True)
    np.testing.assert_allclose(directions[0], unit.mean(0))


def test_embedding_with_a_shift_search_reports_each_particles_offset(splat_study):
    checkpoint, table, images = splat_study
    matching = OrientationConfig(
        method="template_matching",
        grid_step_deg=20.0,
        refinement_levels=1,
        wedge_tilt_max_deg=60.0,
        max_shift_angstrom=15.0,
    )
    latents = embed_particles(checkpoint, table, images, orientation=matching, seed=3)
    shifts = latents[list(INFERRED_SHIFTS)].to_numpy()
    assert np.isfinite(shifts).all()
    assert (np.linalg.norm(shifts, axis=1) <= 15.0 + 1e-6).all()  # in Å, within the bound
    centred = embed_particles(
        checkpoint, table, images, orientation=OrientationConfig(method="template_matching"), seed=3
    )
    assert not set(INFERRED_SHIFTS) & set(centred.columns)  # no search, no columns


@pytest.mark.slow  # 13 rule scripts, each a fresh process
def test_inference_in_jobs_writes_the_latents_one_job_writes(splat_study, tmp_path):
    """The workflow's inference split over 3 jobs (encode, shared references, match, gather)
    writes the latents table one job writes, and embedding in one process finds, with a
    translation search and references refined on a subset of the particles."""
    checkpoint, table, _ = splat_study
    star = checkpoint.parent / "particles.star"
    orientation = {
        "method": "template_matching",
        "grid_step_deg": 20.0,
        "refinement_levels": 1,
        "reference_iterations": 1,
        "reference_particles": 4,  # a subset per template: every job must share the same one
        "wedge_tilt_max_deg": 60.0,
        "max_shift_angstrom": 15.0,
    }

    def run_jobs(jobs: int) -> Path:
        out = tmp_path / f"jobs{jobs}"
        common = {"variant": "avae"}
        parts = {"encoded": [], "matched": []}
        for job in range(jobs):
            parts["encoded"].append(out / f"encoded_{job}.tsv")
            result, log = run_rule(
                tmp_path,
                "encode_particles",
                input={"model": str(checkpoint), "particles": str(star)},
                output={"out": parts["encoded"][-1]},
                params={"jobs": jobs},
                wildcards={**common, "job": str(job)},
            )
            assert result.returncode == 0, log + result.stderr[-2000:]
        references = out / "references.npz"
        result, log = run_rule(
            tmp_path,
            "fit_references",
            input={
                "model": str(checkpoint),
                "particles": str(star),
                "encoded": [str(p) for p in parts["encoded"]],
            },
            output={"out": references},
            params={"orientation": orientation, "seed": 3, "microscope": None},
            wildcards=common,
        )
        assert result.returncode == 0, log + result.stderr[-2000:]
        for job in range(jobs):
            parts["matched"].append(out / f"matched_{job}.tsv")
            result, log = run_rule(
                tmp_path,
                "match_particles",
                input={
                    "references": str(references),
                    "encoded": str(parts["encoded"][job]),
                    "particles": str(star),
                },
                output={"out": parts["matched"][-1]},
                params={"jobs": jobs, "orientation": orientation, "microscope": None},
                wildcards={**common, "job": str(job)},
            )
            assert result.returncode == 0, log + result.stderr[-2000:]
        latents = out / "latents.tsv"
        result, log = run_rule(
            tmp_path,
            "embed_particles",
            input={**{k: [str(p) for p in v] for k, v in parts.items()}, "particles": str(star)},
            output={"out": latents},
            wildcards=common,
        )
        assert result.returncode == 0, log + result.stderr[-2000:]
        return latents

    one, three = (pd.read_csv(run_jobs(jobs), sep="\t") for jobs in (1, 3))
    in_process = embed_particles(
        checkpoint, table, splat_study[2], orientation=OrientationConfig(**orientation), seed=3
    )
    assert one["image"].tolist() == table[particles.IMAGE].tolist()
    for other in (three, in_process):
        assert list(other.columns) == list(one.columns)
        assert_same_latents(one, other)


def assert_same_latents(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal labels and templates; numbers equal to float rounding (matrix products of other
    shapes round differently in the last bits); orientations within a thousandth of a degree."""
    angles = ["inferred_rot", "inferred_tilt", "inferred_psi"]
    numbers = [c for c in a.columns if c.startswith(("mu_", "pose_", "inferred_shift"))]
    labels = [c for c in a.columns if c not in numbers + angles]
    pd.testing.assert_frame_equal(a[labels], b[labels], check_dtype=False)
    np.testing.assert_allclose(a[numbers], b[numbers], rtol=1e-5, atol=1e-5)
    rotations = [relion_angles_to_matrices(t[angles].to_numpy(np.float64)) for t in (a, b)]
    assert geodesic_deg(*rotations).max() < 1e-3


def test_references_keep_their_frame_offsets_through_a_file(tmp_path):
    """The offsets of each template's centre from the decoder's survive saving; a file written
    before they were recorded loads with none (zeros: the templates' own frame)."""
    offsets = np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 2.0]])
    references = References(np.ones((2, 4, 4, 4), np.float32), np.eye(2), "cosine", offsets)
    references.save(tmp_path / "references.npz")
    loaded = References.load(tmp_path / "references.npz")
    np.testing.assert_array_equal(loaded.offsets(), offsets)
    np.savez(tmp_path / "older.npz", templates=np.ones((2, 4, 4, 4)), centres=np.eye(2), metric="x")
    np.testing.assert_array_equal(References.load(tmp_path / "older.npz").offsets(), 0.0)
    assert loaded.classes is None and References.load(tmp_path / "older.npz").classes is None


def test_references_keep_the_class_of_each_template_through_a_file(tmp_path):
    named = References(np.ones((2, 4, 4, 4), np.float32), np.eye(2), "cosine", None, ["1", "b"])
    named.save(tmp_path / "references.npz")
    assert list(References.load(tmp_path / "references.npz").classes) == ["1", "b"]


def test_the_global_searchs_finest_detail_is_a_setting_in_voxels(tmp_path, monkeypatch):
    """``global_resolution_px`` sets the global search's low pass (box / that many cycles); its
    default, 4, is the matcher's own quarter of the box."""
    rng = np.random.default_rng(10)
    volume = blobs(rng)
    images = _image_set(
        tmp_path, measured(volume, Rotation.random(4, random_state=rng).as_matrix(), rng, snr=1.0)
    )
    bands = []

    class Recording(matching_module.TemplateMatcher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bands.append(kwargs["low_pass_px"])

    monkeypatch.setattr(matching_module, "TemplateMatcher", Recording)
    d = volume.shape[-1]
    for resolution in (4.0, 3.0):
        config = OrientationConfig(
            grid_step_deg=30.0,
            reference_iterations=0,
            wedge_tilt_max_deg=60.0,
            global_resolution_px=resolution,
        )
        match_with_references(volume[None], np.zeros(4, int), images, config)
    assert bands == [pytest.approx(d / 4.0), pytest.approx(d / 3.0)]
    own = TemplateMatcher(volume[None], 60.0, None, 30.0).low.flat
    np.testing.assert_array_equal(
        own, TemplateMatcher(volume[None], 60.0, None, 30.0, 3, d / 4).low.flat
    )


def test_batches_hold_one_templates_particles_and_results_return_in_table_order(
    tmp_path, monkeypatch
):
    """Particles of two maps alternating in the table, matched in batches of five: each batch
    holds one template's particles where the counts allow (its turned grid sampled once), and
    every particle's rotation, shift and template come back in the table's order, as one batch
    of all finds them."""
    rng = np.random.default_rng(13)
    maps = np.stack([blobs(rng), blobs(rng)])
    which = np.arange(12) % 2
    truth = Rotation.random(12, random_state=rng).as_matrix()
    volumes = np.concatenate(
        [measured(maps[w], truth[i : i + 1], rng, snr=2.0) for i, w in enumerate(which)]
    )
    images = _image_set(tmp_path, volumes)
    monkeypatch.setattr(matching_module, "MATCH_BATCH", 5)
    plan = matching_module.match_batches(which, by_template=True)
    assert [sorted(set(which[rows])) for rows in plan] == [[0], [0, 1], [1]]
    assert sorted(np.concatenate(plan)) == list(range(12))
    config = OrientationConfig(grid_step_deg=30.0, reference_iterations=0, wedge_tilt_max_deg=60.0)
    found = {}
    for batch in (5, 12):
        monkeypatch.setattr(matching_module, "MATCH_BATCH", batch)
        found[batch] = match_with_references(maps, which, images, config)
    np.testing.assert_array_equal(found[5].templates, which)
    for field in Matches.FIELDS:
        np.testing.assert_allclose(
            getattr(found[5], field), getattr(found[12], field), rtol=1e-5, atol=1e-5
        )
    error = geodesic_deg(found[5].rotations, truth)
    assert np.median(error) < 10, error


def test_reference_iterations_refine_each_template_on_its_own_centres_particles(
    tmp_path, monkeypatch
):
    """With two candidate templates per particle the final match weighs both, but the reference
    iterations refine each template on the particles nearest its own centre only: allowed to
    move to whichever template fits them, two classes' particles swapped templates (1qvr and
    1u6g in one seed of the default study), and each class's written class became the other's."""
    from cryoavae.orientation import templates as templates_module

    rng = np.random.default_rng(21)
    maps = np.stack([blobs(rng), blobs(rng)])
    images = _image_set(tmp_path, np.concatenate([maps, maps]))

    class Renderer(torch.nn.Module):
        """Stands in for the decoder: a one-hot centre renders its map."""

        def __init__(self):
            super().__init__()
            self.maps = torch.nn.Parameter(torch.from_numpy(maps), requires_grad=False)

        def decode(self, z):
            return (z @ self.maps.flatten(1)).reshape(len(z), 1, *maps.shape[1:])

    seen = {}

    def recording(templates, template_index, *args, **kwargs):
        seen["index"] = np.asarray(template_index)
        return np.asarray(templates), np.zeros((len(templates), 3))

    monkeypatch.setattr(templates_module, "refine_references", recording)
    mu = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.2], [0.3, 0.8]])
    config = OrientationConfig(candidate_templates=2, reference_iterations=1)
    fit_references(
        Renderer(), mu, np.arange(4), 2, images, config, 0, fit_labels=np.array(list("abab"))
    )
    np.testing.assert_array_equal(seen["index"], [0, 1, 0, 1])  # each row's own centre only
