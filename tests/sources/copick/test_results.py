"""A variant's annotated particles back into the copick project as picks, and read back."""

from __future__ import annotations

import hashlib
import json
import logging

import numpy as np
import pandas as pd
import pytest
from copick_fixtures import copick_project
from scipy.spatial.transform import Rotation

from cryoavae import particles as P
from cryoavae.core.copick_config import read_copick_project
from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.inference import annotate
from cryoavae.sources.copick import (
    BOX_CENTRE_COLUMNS,
    LOCATION_COLUMNS,
    read_copick_picks,
    write_copick_results,
)
from cryoavae.sources.copick import results as R

SEEN = ["ribosome", "proteasome"]


@pytest.fixture
def project(tmp_path):
    return copick_project(tmp_path / "project")


def annotated(path, rows, angles=True, origins=True, novel=None):
    """particles_annotated.star as the annotation writes it for a copick study (``novel``: which
    rows are flagged novel, their angles and origins empty)."""
    rng = np.random.default_rng(3)
    n = len(rows)
    table = pd.DataFrame(
        {
            P.IMAGE: [f"{i + 1:06d}@shard_000.mrcs" for i in range(n)],
            "rlnTomoName": [r[0] for r in rows],
            "cryoavaePredictedClass": [r[1] for r in rows],
            "cryoavaeCentroidCosine": rng.uniform(-1, 1, n),
        }
    )
    locations = rng.uniform(100, 500, (n, 3))
    locations[-1] = np.nan  # a false positive: no pick behind it
    for a, column in enumerate(LOCATION_COLUMNS):
        table[column] = locations[:, a]
    centres = np.nan_to_num(locations, nan=250.0) + rng.uniform(-5, 5, (n, 3))
    for a, column in enumerate(BOX_CENTRE_COLUMNS):
        table[column] = centres[:, a]
    if angles:
        for column in R.ANGLES:
            table[column] = rng.uniform(0, 180, n)
    if origins:
        for column in R.ORIGINS:
            table[column] = rng.uniform(-8, 8, n)
    if novel is not None:
        table["cryoavaeIsNovel"] = np.asarray(novel, int)
        blank = [c for c in (*R.ANGLES, *R.ORIGINS) if c in table]
        table.loc[np.asarray(novel, bool), blank] = np.nan
    P.write_star_blocks(path, {"particles": table}, "test")
    return P.read_star_blocks(path)["particles"]


def tree_digest(folder):
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_the_written_picks_read_back_with_the_models_orientation(project, tmp_path):
    rows = [
        ("TS_1", "ribosome"),
        ("TS_1", "proteasome"),
        ("TS_2", "ribosome"),
        ("TS_1", "ribosome"),
    ]
    table = annotated(tmp_path / "annotated.star", rows)
    before = tree_digest(project.static)
    read = read_copick_project(project.config)
    manifest = write_copick_results(
        read, tmp_path / "annotated.star", ["TS_1", "TS_2"], SEEN, "avae", 10.0, tmp_path / "m.tsv"
    )
    assert tree_digest(project.static) == before  # the input picks, untouched
    assert manifest[["run", "object", "points"]].values.tolist() == [
        ["TS_1", "ribosome", 2], ["TS_1", "proteasome", 1],
        ["TS_2", "ribosome", 1], ["TS_2", "proteasome", 0],
    ]  # fmt: skip
    assert pd.read_csv(tmp_path / "m.tsv", sep="\t").equals(manifest)
    folder = project.overlay / "ExperimentRuns" / "TS_1" / "Picks"
    body = json.loads((folder / "cryoavae_avae_ribosome.json").read_text())
    assert (body["user_id"], body["session_id"], body["run_name"]) == ("cryoavae", "avae", "TS_1")
    assert body["trust_orientation"] is True and body["voxel_spacing"] == 10.0
    mine = (table["rlnTomoName"] == "TS_1") & (table["cryoavaePredictedClass"] == "ribosome")
    picks = read_copick_picks(read, "TS_1", ["ribosome"], "cryoavae", "avae")
    expected = table[mine]
    np.testing.assert_allclose(picks.locations[0], expected[list(LOCATION_COLUMNS)].iloc[0])
    # the rotation is RELION's matrix of the model's angles; the translation reaches the centre
    angles = expected[list(R.ANGLES)].to_numpy()
    np.testing.assert_allclose(picks.transforms[:, :3, :3], relion_angles_to_matrices(angles))
    copicks = (
        Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix()
    )  # copick.util.relion
    np.testing.assert_allclose(picks.transforms[:, :3, :3], copicks, atol=1e-12)
    centre = expected[list(BOX_CENTRE_COLUMNS)].to_numpy() - expected[list(R.ORIGINS)].to_numpy()
    locations = expected[list(LOCATION_COLUMNS)].to_numpy()
    located = np.where(np.isfinite(locations), locations, centre)  # the false positive: its centre
    np.testing.assert_allclose(picks.locations, located)
    np.testing.assert_allclose(picks.locations + picks.transforms[:, :3, 3], centre)
    scores = [p["score"] for p in body["points"]]
    np.testing.assert_allclose(scores, expected["cryoavaeCentroidCosine"])
    plist = picks.particle_list(10.0)  # and back to the angles the model gave
    np.testing.assert_allclose(
        relion_angles_to_matrices(plist.angles_deg), picks.transforms[:, :3, :3], atol=1e-9
    )
    empty = json.loads(
        (project.overlay / "ExperimentRuns/TS_2/Picks/cryoavae_avae_proteasome.json").read_text()
    )
    assert empty["points"] == []


def test_particles_flagged_novel_are_in_no_picks_file(project, tmp_path, caplog):
    """A novel particle nearest the ribosome is no ribosome pick: the files hold the others, in
    their places, and still trust their orientations; the log counts the ones left out."""
    rows = [("TS_1", "ribosome"), ("TS_1", "ribosome"), ("TS_1", "proteasome"),
            ("TS_2", "ribosome"), ("TS_1", "ribosome")]  # fmt: skip
    novel = [False, True, False, True, False]
    table = annotated(tmp_path / "a.star", rows, novel=novel)
    read = read_copick_project(project.config)
    with caplog.at_level(logging.INFO, logger="cryoavae.sources.copick.results"):
        manifest = write_copick_results(
            read, tmp_path / "a.star", ["TS_1", "TS_2"], SEEN, "avae", 10.0, tmp_path / "m.tsv"
        )
    assert manifest["points"].tolist() == [2, 1, 0, 0]  # TS_1 ribosome, proteasome; TS_2 both
    assert "2 flagged novel (cryoavaeIsNovel 1) left out" in caplog.text
    for run in ("TS_1", "TS_2"):
        path = project.overlay / f"ExperimentRuns/{run}/Picks/cryoavae_avae_ribosome.json"
        assert json.loads(path.read_text())["trust_orientation"] is True
    picks = read_copick_picks(read, "TS_1", ["ribosome"], "cryoavae", "avae")
    kept = table.iloc[[0, 4]]
    centre = kept[list(BOX_CENTRE_COLUMNS)].to_numpy() - kept[list(R.ORIGINS)].to_numpy()
    np.testing.assert_allclose(picks.locations + picks.transforms[:, :3, 3], centre)
    np.testing.assert_allclose(
        picks.transforms[:, :3, :3], relion_angles_to_matrices(kept[list(R.ANGLES)].to_numpy())
    )


def test_without_orientations_the_files_say_so(project, tmp_path):
    annotated(
        tmp_path / "a.star",
        [("TS_1", "ribosome"), ("TS_1", "ribosome")],
        angles=False,
        origins=False,
    )
    read = read_copick_project(project.config)
    write_copick_results(read, tmp_path / "a.star", ["TS_1"], SEEN, "cnn", 10.0, tmp_path / "m.tsv")
    path = project.overlay / "ExperimentRuns/TS_1/Picks/cryoavae_cnn_ribosome.json"
    assert json.loads(path.read_text())["trust_orientation"] is False
    picks = read_copick_picks(read, "TS_1", ["ribosome"], "cryoavae", "cnn")
    assert not picks.oriented.any()
    np.testing.assert_array_equal(picks.transforms[:, :3, :3], np.tile(np.eye(3), (2, 1, 1)))


@pytest.mark.parametrize(
    ("rows", "runs", "words"),
    [
        ([("TS_1", "ferritin")], ["TS_1"], "particles of class 'ferritin'"),
        ([("TS_3", "ribosome")], ["TS_1"], "particles of run 'TS_3'"),
    ],
)
def test_particles_of_another_class_or_run_are_refused(project, tmp_path, rows, runs, words):
    annotated(tmp_path / "a.star", rows)
    with pytest.raises(InputError, match=words):
        write_copick_results(
            read_copick_project(project.config),
            tmp_path / "a.star",
            runs,
            SEEN,
            "avae",
            10.0,
            tmp_path / "m.tsv",
        )
    assert not (tmp_path / "m.tsv").exists()


def test_a_table_of_another_source_is_refused(project, tmp_path):
    P.write_star_blocks(
        tmp_path / "a.star", {"particles": pd.DataFrame({P.IMAGE: ["1@a.mrcs"]})}, "x"
    )
    with pytest.raises(InputError, match="lacks columns .* only from a particle_source: copick"):
        write_copick_results(
            read_copick_project(project.config),
            tmp_path / "a.star",
            ["TS_1"],
            SEEN,
            "avae",
            10.0,
            tmp_path / "m.tsv",
        )


def test_the_column_names_are_the_annotations():
    assert (R.PREDICTED, R.COSINE) == (annotate.COLUMNS[0], annotate.COLUMNS[2])
    assert R.IS_NOVEL == annotate.IS_NOVEL
    assert R.ANGLES == tuple(annotate.ANGLE_COLUMNS.values())
    assert R.ORIGINS == tuple(annotate.ORIGIN_COLUMNS.values())
