"""Applying a trained model to a new particle set: nearest class and novelty, and the study's own
orientation step (template matching against the study's templates)."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from volume_fixtures import blobs

from cryoavae import particles
from cryoavae.core.atomic import atomic_path
from cryoavae.core.errors import InputError
from cryoavae.inference.annotate import ANGLE_COLUMNS
from cryoavae.inference.apply import apply_model, main, reference_classes, write_results
from cryoavae.inference.embed import embed_particles
from cryoavae.inference.latents import read_latents
from cryoavae.inference.novelty import fit_novelty
from cryoavae.inference.novelty_json import write_novelty_json
from cryoavae.model.config import ModelConfig
from cryoavae.orientation.templates import OrientationConfig
from cryoavae.train import TrainingConfig, train_model

pytestmark = pytest.mark.usefixtures("one_thread")

ANGLES = ["inferred_rot", "inferred_tilt", "inferred_psi"]
MATCHING = OrientationConfig(
    method="template_matching", grid_step_deg=20.0, refinement_levels=1, wedge_tilt_max_deg=60.0
)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path, pd.DataFrame]:
    """A 3-D splat model trained for one epoch, its particles' STAR file, and the study's latents
    table as the pipeline writes it (embedded with template matching, through latents.tsv)."""
    root = tmp_path_factory.mktemp("apply")
    rng = np.random.default_rng(4)
    volumes = np.stack([blobs(rng)[4:20, 4:20, 4:20] for _ in range(12)])
    table = pd.DataFrame(
        {
            particles.IMAGE: [particles.image_reference(i, "s.mrcs") for i in range(12)],
            particles.CLASS_NUMBER: [1, 2] * 6,
            **{angle: rng.uniform(0, 180, 12) for angle in particles.ANGLES},
            particles.CLASS_NAME: ["a", "b"] * 6,
            particles.SPLIT: ["train"] * 10 + ["val"] * 2,
        }
    )
    particles.write_stack(root / "s.mrcs", volumes, 10.0)
    star = root / "particles.star"
    particles.write_particle_table(star, table)
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star)
    config = ModelConfig(
        ndim=3, box_size_px=16, channels=(4, 8), latent_dims=3, pose_dims=6,
        pose_encoding="rotation6d", decoder="gaussian_splat", n_gaussians=8,
    )  # fmt: skip
    train_model(
        table, images, np.eye(2), config, TrainingConfig(epochs=1, batch_size=4), 0,
        root / "model.pt", root / "history.tsv", root / "work", threads=1,
    )  # fmt: skip
    latents = embed_particles(root / "model.pt", table, images, orientation=MATCHING, seed=3)
    with atomic_path(root / "latents.tsv") as tmp:
        latents.to_csv(tmp, sep="\t", index=False)
    return root / "model.pt", star, read_latents(root / "latents.tsv")


def test_a_template_matching_study_matches_an_applied_set_as_its_own(study):
    """The study's own particles applied as a new set get the study's matched orientations and
    templates; without the study's orientation step they would get the encoder's."""
    checkpoint, star, reference = study
    applied = apply_model(checkpoint, star, reference, orientation=MATCHING, seed=3)
    np.testing.assert_array_equal(
        applied["orientation_template"], reference["orientation_template"]
    )
    np.testing.assert_allclose(applied[ANGLES], reference[ANGLES], atol=1e-3)
    encoder = apply_model(checkpoint, star, reference)
    assert "orientation_template" not in encoder.columns
    assert not np.allclose(encoder[ANGLES], reference[ANGLES], atol=1.0)


def test_a_new_set_is_matched_against_the_study_templates_not_its_own(study):
    """The particles the study matched against its second template, as a new set of one unknown
    class: they keep the study's template and orientations (a set's own clustering would see one
    class, make one template and number it 0)."""
    checkpoint, star, _ = study
    no_refining = OrientationConfig.from_dict({**vars(MATCHING), "reference_iterations": 0})
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star)
    reference = embed_particles(checkpoint, table, images, orientation=no_refining, seed=3)
    rows = np.flatnonzero(reference["orientation_template"].to_numpy() == 1)
    assert len(rows)
    subset = table.iloc[rows].assign(**{particles.SPLIT: "unseen", particles.CLASS_NAME: "new"})
    subset_star = star.with_name("new_set.star")
    particles.write_particle_table(subset_star, subset)
    applied = apply_model(checkpoint, subset_star, reference, orientation=no_refining, seed=3)
    expected = reference.iloc[rows].reset_index(drop=True)
    np.testing.assert_array_equal(applied["orientation_template"], 1)
    np.testing.assert_allclose(applied[ANGLES], expected[ANGLES], atol=1e-3)


def test_nearest_class_and_novelty_against_the_training_centroids(study):
    checkpoint, star, reference = study
    applied = apply_model(checkpoint, star, reference)
    assert set(applied["nearest_seen"]) <= {"a", "b"}
    cosine, novelty = applied["nearest_cosine"].to_numpy(), applied["novelty"].to_numpy()
    assert np.all((cosine >= -1) & (cosine <= 1))
    np.testing.assert_allclose(applied["novelty_centroid_cosine"], 1 - cosine)
    np.testing.assert_allclose(novelty, applied["novelty_mahalanobis"])  # the default score
    assert (novelty >= 0).all()


def test_an_applied_set_is_flagged_by_the_studys_stored_threshold(study, tmp_path):
    """The threshold in novelty.json (here set by hand to the set's median score, unlike the one
    a refit would set) decides cryoavaeIsNovel, through the command line that finds
    novelty.json beside --reference."""
    checkpoint, star, reference = study
    refit = fit_novelty(reference, ["a", "b"])
    scores = apply_model(checkpoint, star, reference, novelty=refit)["novelty"].to_numpy()
    stored = dataclasses.replace(refit, threshold=float(np.median(scores)))
    assert stored.threshold != refit.threshold
    applied = apply_model(checkpoint, star, reference, novelty=stored)
    np.testing.assert_array_equal(applied["is_novel"], scores > stored.threshold)
    shutil.copy(star.with_name("latents.tsv"), tmp_path / "latents.tsv")
    write_novelty_json(tmp_path / "novelty.json", stored)
    out = tmp_path / "out.star"
    args = ["--model", checkpoint, "--reference", tmp_path / "latents.tsv", "--particles", star]
    assert main([str(a) for a in [*args, "--out", out]]) == 0
    table = starfile.read(out)
    np.testing.assert_allclose(table["cryoavaeNovelty"], scores, rtol=1e-5)
    np.testing.assert_array_equal(table["cryoavaeIsNovel"], (scores > stored.threshold))
    assert table["cryoavaeIsNovel"].sum() == 6
    # the flagged ones lose their orientation in the STAR file; the others keep the model's
    novel, angles = table["cryoavaeIsNovel"].to_numpy() == 1, list(ANGLE_COLUMNS.values())
    assert table.loc[novel, angles].isna().all().all()
    np.testing.assert_allclose(table.loc[~novel, angles], applied.loc[~novel, ANGLES], atol=1e-2)
    assert applied[ANGLES].notna().all().all()  # the TSV's table keeps the matcher's answer


def test_a_reference_without_training_particles_is_refused(study):
    checkpoint, star, reference = study
    with pytest.raises(InputError, match="no training particles"):
        apply_model(checkpoint, star, reference[reference["split"] != "train"])


def users_set(star: Path, numbers: list[int]) -> Path:
    """A RELION-style table of the study's particles: images and class numbers, nothing of ours."""
    path = star.with_name("users_set.star")
    images = [particles.image_reference(i, "s.mrcs") for i in range(len(numbers))]
    table = pd.DataFrame({particles.IMAGE: images, particles.CLASS_NUMBER: numbers})
    starfile.write({"particles": table}, path, overwrite=True)
    return path


def study_umap(reference: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    xy = rng.uniform(-5, 5, (len(reference), 2))
    return pd.DataFrame({"image": reference["image"], "umap_x": xy[:, 0], "umap_y": xy[:, 1]})


def test_an_applied_set_is_split_applied_named_by_number_and_placed_in_the_umap(study, tmp_path):
    """Not unseen (a held-out class): applied; class number k named as the study names it, 0 and
    numbers the study never named stay unknown; a place in the study's UMAP, in the TSV and in
    the annotated STAR file."""
    checkpoint, star, reference = study
    umap = study_umap(reference)
    user = users_set(star, [1, 2, 0, 9] * 3)
    applied = apply_model(checkpoint, user, reference, umap=umap)
    assert set(applied["split"]) == {"applied"}
    assert applied["class_name"].tolist()[:4] == ["a", "b", "unknown", "unknown"]
    xy = applied[["umap_x", "umap_y"]].to_numpy()
    assert np.isfinite(xy).all() and (np.abs(xy) <= 5).all()
    write_results(tmp_path / "out.star", user, applied, reference)
    out = starfile.read(tmp_path / "out.star")
    assert set(out["cryoavaeSplit"]) == {"applied"}
    np.testing.assert_allclose(out[["cryoavaeUmapX", "cryoavaeUmapY"]], xy, atol=1e-4)


def test_a_umap_table_of_other_particles_is_refused(study):
    checkpoint, star, reference = study
    umap = study_umap(reference).iloc[::-1]
    with pytest.raises(InputError, match="umap.tsv of the same variant"):
        apply_model(checkpoint, users_set(star, [1] * 12), reference, umap=umap)


def test_predicted_class_numbers_are_the_studys_whatever_classes_lack_particles():
    """A class outside the study's list (number 0) and a number without particles do not shift
    the numbers written beside the predicted class."""
    reference = pd.DataFrame({"class_number": [0, 3, 1, 3], "class_name": ["junk", "c", "a", "c"]})
    assert reference_classes(reference) == ["a", "", "c"]
