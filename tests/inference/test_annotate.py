"""particles_annotated.star: the model's orientation goes back onto the user's rows under its
own names, and only when the model has one."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pandas as pd
import starfile

from cryoavae import particles as P
from cryoavae.inference.annotate import ANGLE_COLUMNS, COLUMNS, ORIGIN_COLUMNS, annotate_particles
from cryoavae.inference.novelty import fit_novelty


def latents_table(n: int, rng, angles: bool) -> pd.DataFrame:
    table = pd.DataFrame(
        {
            "image": [f"{i + 1}@stack.mrcs" for i in range(n)],
            "class_name": np.where(np.arange(n) % 2 == 0, "a", "b"),
            "split": np.where(np.arange(n) < n - n // 3, "train", "val"),
            "angle_rot": 0.0,
            "angle_tilt": 0.0,
            "angle_psi": 0.0,
            "mu_0": np.where(np.arange(n) % 2 == 0, 1.0, -1.0) + 0.1 * rng.normal(size=n),
            "mu_1": rng.normal(size=n),
        }
    )
    if angles:
        for column in ANGLE_COLUMNS:
            table[column] = rng.uniform(-180, 180, n)
    return table


def none_novel(latents: pd.DataFrame):
    """The study's novelty model with a threshold no particle passes: every pose is kept."""
    return dataclasses.replace(fit_novelty(latents, ["a", "b"]), threshold=math.inf)


def half_novel(latents: pd.DataFrame):
    """The novelty model with its threshold at the particles' median score: half are novel."""
    model = fit_novelty(latents, ["a", "b"])
    scores = model.score_of(latents[["mu_0", "mu_1"]].to_numpy())
    return dataclasses.replace(model, threshold=float(np.median(scores)))


def source_star(path, n: int) -> None:
    rows = pd.DataFrame({P.IMAGE: [f"{i + 1}@stack.mrcs" for i in range(n)], "rlnAngleRot": 5.0})
    starfile.write({"particles": rows}, path)


def test_inferred_angles_are_written_under_cryoavae_names_next_to_the_users_own(tmp_path):
    rng = np.random.default_rng(0)
    latents = latents_table(8, rng, angles=True)
    source_star(tmp_path / "in.star", 8)
    annotate_particles(
        tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star",
        novelty=none_novel(latents),
    )  # fmt: skip
    out = starfile.read(tmp_path / "out.star")
    for source, column in ANGLE_COLUMNS.items():
        np.testing.assert_allclose(out[column], latents[source], atol=1e-4)
    assert (out["rlnAngleRot"] == 5.0).all()  # the user's own angles are left as they were
    assert out[list(COLUMNS[:6])].notna().all().all()


def test_a_model_without_orientations_adds_no_angle_columns_and_says_what_gives_them(
    tmp_path, caplog
):
    latents = latents_table(6, np.random.default_rng(1), angles=False)
    source_star(tmp_path / "in.star", 6)
    annotate_particles(tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star")
    out = starfile.read(tmp_path / "out.star")
    assert not set(ANGLE_COLUMNS.values()) & set(out.columns)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    for setting in (
        "model.decoder: gaussian_splat",
        "model.pose_encoding: rotation6d",
        "orientation.method: template_matching",
    ):
        assert setting in warning


def test_a_model_with_orientations_warns_of_nothing(tmp_path, caplog):
    latents = latents_table(6, np.random.default_rng(1), angles=True)
    source_star(tmp_path / "in.star", 6)
    annotate_particles(tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star")
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_matched_shifts_become_origins_in_relions_sign(tmp_path):
    """A particle found 12 Å along +x of its box's centre gets cryoavaeOriginXAngst = -12 (RELION
    subtracts the origin from the box's centre to reach the particle); rlnOrigin* stay the
    user's."""
    rng = np.random.default_rng(2)
    latents = latents_table(6, rng, angles=True)
    shifts = rng.uniform(-20, 20, (6, 3))
    for k, column in enumerate(ORIGIN_COLUMNS):
        latents[column] = shifts[:, k]
    source_star(tmp_path / "in.star", 6)
    annotate_particles(
        tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star",
        novelty=none_novel(latents),
    )  # fmt: skip
    out = starfile.read(tmp_path / "out.star")
    found = out[list(ORIGIN_COLUMNS.values())].to_numpy()
    np.testing.assert_allclose(found, -shifts, atol=1e-4)
    assert not {"rlnOriginXAngst", "rlnOriginX"} & set(out.columns)


def test_novelty_and_the_flag_come_from_the_studys_novelty_model(tmp_path):
    """cryoavaeNovelty is the model's score, cryoavaeIsNovel 1 exactly above its threshold (here
    set by hand between the particles' scores), cryoavaeCentroidCosine the cosine kept beside."""
    rng = np.random.default_rng(3)
    latents = latents_table(40, rng, angles=False)
    model = fit_novelty(latents, ["a", "b"])
    mu = latents[["mu_0", "mu_1"]].to_numpy()
    scores = model.score_of(mu)
    model = dataclasses.replace(model, threshold=float(np.median(scores)))
    source_star(tmp_path / "in.star", 40)
    annotate_particles(
        tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star", novelty=model
    )
    out = starfile.read(tmp_path / "out.star")
    np.testing.assert_allclose(out["cryoavaeNovelty"], scores, rtol=1e-5)
    np.testing.assert_array_equal(out["cryoavaeIsNovel"], (scores > model.threshold).astype(int))
    assert out["cryoavaeIsNovel"].sum() == 20
    assert ((out["cryoavaeCentroidCosine"] >= -1) & (out["cryoavaeCentroidCosine"] <= 1)).all()


def test_a_particle_flagged_novel_gets_no_orientation_or_origin_and_the_others_keep_theirs(
    tmp_path, caplog
):
    """The matcher answered every particle against a seen class's template; the annotated table
    keeps that answer only where the particle is not flagged novel, and empties both the angles
    and the origins of the rest (their class, score and flag are still written)."""
    rng = np.random.default_rng(5)
    latents = latents_table(40, rng, angles=True)
    for column in ORIGIN_COLUMNS:
        latents[column] = rng.uniform(-20, 20, 40)
    source_star(tmp_path / "in.star", 40)
    with caplog.at_level(logging.INFO, logger="cryoavae.inference.annotate"):
        annotate_particles(
            tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star",
            novelty=half_novel(latents),
        )  # fmt: skip
    out = starfile.read(tmp_path / "out.star")
    novel = out["cryoavaeIsNovel"].to_numpy() == 1
    assert novel.sum() == 20
    poses = {**ANGLE_COLUMNS, **ORIGIN_COLUMNS}
    assert out.loc[novel, list(poses.values())].isna().all().all()
    for source, column in poses.items():
        expected = latents.loc[~novel, source] * (-1.0 if source in ORIGIN_COLUMNS else 1.0)
        np.testing.assert_allclose(out.loc[~novel, column], expected, atol=1e-4)
    assert out[list(COLUMNS[:6])].notna().all().all()
    assert (out["rlnAngleRot"] == 5.0).all()  # the user's own are the user's
    assert "20 particles flagged novel get no orientation" in caplog.text
    # the latents (latents.tsv, which the evaluation scores) keep the matcher's answer
    assert latents[[*ANGLE_COLUMNS, *ORIGIN_COLUMNS]].notna().all().all()


def test_the_written_class_is_the_one_the_orientation_was_matched_in(tmp_path):
    """With one template per class the class written is the matched template's, so class and
    angles agree: a particle near class a's centroid whose density chose b's template is b;
    without the column the nearest centroid decides."""
    rng = np.random.default_rng(4)
    latents = latents_table(12, rng, angles=True)
    latents["orientation_class"] = latents["class_name"]
    latents.loc[0, "orientation_class"] = "b"  # row 0 is near a's centroid
    source_star(tmp_path / "in.star", 12)
    annotate_particles(
        tmp_path / "in.star", latents, latents, ["a", "b"], tmp_path / "out.star",
        novelty=none_novel(latents),
    )  # fmt: skip
    out = starfile.read(tmp_path / "out.star")
    assert list(out["cryoavaePredictedClass"]) == ["b", *latents["class_name"][1:]]
    assert out["cryoavaePredictedClassNumber"][0] == 2
    assert out["cryoavaeCentroidCosine"][0] < 0  # its cosine to b's centroid, not a's
    plain = latents.drop(columns="orientation_class")
    annotate_particles(
        tmp_path / "in.star", plain, plain, ["a", "b"], tmp_path / "plain.star",
        novelty=none_novel(plain),
    )  # fmt: skip
    assert starfile.read(tmp_path / "plain.star")["cryoavaePredictedClass"][0] == "a"
