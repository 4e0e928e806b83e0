"""`cryoavae init`: a study config written around a user's own STAR file (RELION 5- and
Warp-style), that the workflow's own validation accepts and snakemake runs; a STAR file that
cannot make a study gets one line naming the file and what is wrong, and no config."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
from star_fixtures import blobs, relion_star, warp_star

from cryoavae.cli import main
from cryoavae.cli.new_study import model_for_box
from cryoavae.cli.study_yaml import flow
from cryoavae.core.config import class_names, load_study_file, unseen_classes, validate_config
from cryoavae.core.yaml_io import load_yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def init(tmp_path, capsys, *argv: str, out: str = "config/my_study.yaml"):
    """``cryoavae init ... -o out`` run in ``tmp_path`` (paths relative to it, as a user's
    would be to where snakemake runs); exit status, stdout, stderr, the config's path."""
    try:
        status = main(["init", *argv, "-o", out])
    except SystemExit as stop:
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err, tmp_path / out


def valid(path: Path) -> dict:
    """The written config, validated as the workflow validates it (defaults filled)."""
    return validate_config(copy.deepcopy(load_study_file(path)), source=str(path))


def prose(path: Path) -> str:
    """The config's comments as one line (they are wrapped at any word)."""
    lines = path.read_text().splitlines()
    return " ".join(line.strip().lstrip("#").strip() for line in lines if line.strip()[:1] == "#")


@pytest.fixture(autouse=True)
def in_tmp_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


# --------------------------------------------------------------------------- configs written


def test_a_relion5_star_makes_a_study_with_its_numbered_classes(tmp_path, capsys):
    relion_star(tmp_path / "data")  # optics 12.5 A, classes 1..3, 8^3 boxes, .mrc and .mrcs
    status, out, err, path = init(tmp_path, capsys, "--star", "data/particles.star")
    assert status == 0, err
    assert "wrote config/my_study.yaml" in out and "prior: none" in out
    config = valid(path)
    assert config["study"] == "my_study" and config["particle_source"] == "star"
    assert config["star"]["particles"] == "data/particles.star"
    assert class_names(config) == ["class1", "class2", "class3"]
    assert config["star"]["class_column"] == "rlnClassNumber"
    assert config["star"]["voxel_size_angstrom"] is None  # the optics block says it
    assert config["affinity"]["source"] == "none"
    assert config["training"]["gamma"]["value"] == 0 and list(config["variants"]) == ["beta_vae"]
    assert config["model"]["channels"] == [8]  # 8 -> 4 voxels
    text = prose(path)
    assert "12.5 Å/voxel (read from the optics block's rlnImagePixelSize)" in text
    assert "12 particles in 7 file(s); boxes of 8 x 8 x 8 voxels" in text
    assert "class1 4, class2 4, class3 4" in text
    assert "the names are made up: rename them" in text
    assert "No prior (--prior none): a beta-VAE" in text


def test_names_for_the_numbers_and_a_held_out_class(tmp_path, capsys):
    relion_star(tmp_path / "data")
    argv = ["--star", "data/particles.star", "--classes", "ribo,proteasome,tric"]
    status, out, err, path = init(tmp_path, capsys, *argv, "--unseen", "tric", "--prior", "uniform")
    assert status == 0, err
    config = valid(path)
    assert class_names(config) == ["ribo", "proteasome", "tric"]
    assert unseen_classes(config) == ["tric"]
    assert config["affinity"]["source"] == "uniform"
    assert config["training"]["gamma"]["value"] == 10 and list(config["variants"]) == ["avae"]
    assert "carries no knowledge of how your classes relate" in prose(path)
    assert "(unseen: tric)" in out


def test_a_warp_star_makes_a_study_with_its_named_classes(tmp_path, capsys):
    volumes, labels = blobs(9, 16, 3, np.random.default_rng(0))
    names = np.array(["proteasome", "Ribo", "tric"])[labels]
    warp_star(tmp_path / "warp", volumes, names, voxel=10.0)
    argv = ["--star", "warp/particles.star", "--class-column", "tmLabel", "--unseen", "tric"]
    status, _, err, path = init(tmp_path, capsys, *argv, "--study", "warp_study")
    assert status == 0, err
    config = valid(path)
    assert config["study"] == "warp_study"
    assert class_names(config) == ["proteasome", "Ribo", "tric"]  # order of first appearance
    assert config["star"]["class_column"] == "tmLabel"
    assert config["model"]["channels"] == [8, 16]  # 16 -> 4 voxels
    text = prose(path)
    assert "the names in tmLabel, in order of first appearance" in text
    assert "10 Å/voxel (read from the MRC header of subtomo/TS_01_000001_10.00A.mrc)" in text
    assert "9 particles in 9 file(s); boxes of 16 x 16 x 16 voxels" in text


def test_the_prior_may_be_a_users_matrix_or_the_structures(tmp_path, capsys):
    relion_star(tmp_path / "data")
    Path("prior.csv").write_text("a,b,c\n1,0.5,0\n0.5,1,0.2\n0,0.2,1\n")
    argv = ["--star", "data/particles.star", "--classes", "c,a,b", "--prior", "csv", "prior.csv"]
    status, _, err, path = init(tmp_path, capsys, *argv)
    assert status == 0, err
    affinity = valid(path)["affinity"]
    assert affinity["source"] == "csv" and affinity["csv_path"] == "prior.csv"
    argv = ["--star", "data/particles.star", "--classes", "1BXN,1s3x,3h84", "--unseen", "3h84"]
    status, _, err, path = init(tmp_path, capsys, *argv, "--prior", "structures", out="s.yaml")
    assert status == 0, err
    config = valid(path)
    assert (
        config["structures"]["ids"] == ["1BXN", "1s3x", "3h84"] and config["star"]["classes"] == []
    )
    assert (
        class_names(config) == ["1bxn", "1s3x", "3h84"] and config["affinity"]["source"] == "soap"
    )


def test_a_voxel_size_the_files_do_not_give_is_asked_for(tmp_path, capsys):
    relion_star(tmp_path / "data", optics_voxel=None, header_voxel=0.0)
    status, _, err, path = init(tmp_path, capsys, "--star", "data/particles.star")
    assert status == 1 and not path.exists()
    assert "no voxel size in its optics block" in err and "--voxel-size-angstrom" in err
    argv = ["--star", "data/particles.star", "--voxel-size-angstrom", "6.5"]
    status, _, err, path = init(tmp_path, capsys, *argv)
    assert status == 0, err
    assert valid(path)["star"]["voxel_size_angstrom"] == 6.5


@pytest.mark.parametrize("options", [[], ["--orientations"]])
def test_the_written_config_plans_a_run(tmp_path, capsys, options):
    """Beyond validation: snakemake builds the whole study's DAG from it (a dry run); with
    orientations, the matching too."""
    relion_star(tmp_path / "data")
    status, _, err, path = init(tmp_path, capsys, "--star", "data/particles.star", *options)
    assert status == 0, err
    result = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "-n", "--cores", "1"]
        + ["--configfile", str(path), "--directory", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for rule in ("compute_affinity", "import_star_particles", "train_model", "evaluate_model"):
        assert rule in result.stdout
    assert ("fit_references" in result.stdout) == bool(options)


def test_model_settings_follow_the_box():
    assert model_for_box(32, 3)["channels"] == [8, 16, 32]  # as the project's 32^3 studies
    assert model_for_box(64, 3)["channels"] == [8, 16, 32, 64]
    assert model_for_box(10, 3)["channels"] == [8]
    assert model_for_box(512, 3)["channels"] == [8, 16, 32, 64, 128, 256]
    assert model_for_box(64, 2)["pose_dims"] == 1


@pytest.mark.parametrize(
    "value", ["ribo", "a,b", "null", "yes", "1e3", "x: y", "#x", "", "Å", 1e-05, 2.5e20, 0.001, 3]
)
def test_values_are_written_so_that_they_read_back_as_themselves(value, tmp_path):
    path = tmp_path / "v.yaml"
    path.write_text(f"key: {flow(value)}\nlist: {flow([value, value])}\n")
    assert load_yaml(path) == {"key": value, "list": [value, value]}


# --------------------------------------------------------------------------- refused in one line


def refused(tmp_path, capsys, *argv, words=(), existing=False):
    status, out, err, path = init(tmp_path, capsys, *argv)
    assert status == 1, out
    assert err.startswith("cryoavae init: error: ") and len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err and path.exists() == existing
    for word in words:
        assert word in err
    return err


def test_a_star_without_its_class_column_is_refused_naming_file_and_column(tmp_path, capsys):
    relion_star(tmp_path / "data")
    argv = ["--star", "data/particles.star", "--class-column", "rlnClass"]
    refused(tmp_path, capsys, *argv, words=["data/particles.star", "'rlnClass'", "--class-column"])


def test_a_star_without_an_image_column_is_refused_naming_file_and_column(tmp_path, capsys):
    star = relion_star(tmp_path / "data")
    blocks = starfile.read(star, always_dict=True)
    blocks["particles"] = blocks["particles"].drop(columns="rlnImageName")
    starfile.write(blocks, star, overwrite=True)
    refused(tmp_path, capsys, "--star", str(star), words=["particles.star", "rlnImageName"])


def test_a_star_that_cannot_make_a_study_is_refused(tmp_path, capsys):
    warp = warp_star(tmp_path / "odd", np.zeros((4, 9, 9, 9)), ["a", "b"] * 2)
    refused(tmp_path, capsys, "--star", str(warp), "--class-column", "tmLabel", words=["9 x 9"])
    spaced = warp_star(tmp_path / "w", np.zeros((4, 8, 8, 8)), ["ribo 80S", "b"] * 2)
    refused(tmp_path, capsys, "--star", str(spaced), "--class-column", "tmLabel", words=["80S"])
    star = relion_star(tmp_path / "data")
    blocks = starfile.read(star, always_dict=True)
    blocks["particles"]["rlnClassNumber"] = [1, 3] * 6  # class 2 has no particle
    starfile.write(blocks, star, overwrite=True)
    refused(tmp_path, capsys, "--star", str(star), words=["class number(s) [2]"])
    blocks["particles"]["rlnClassNumber"] = [1, 2] * 6
    starfile.write(blocks, star, overwrite=True)
    refused(tmp_path, capsys, "--star", str(star), "--unseen", "class2", words=["fewer than 2"])
    refused(tmp_path, capsys, "--star", str(star), "--prior", "csv", "no.csv", words=["no.csv"])
    refused(tmp_path, capsys, "--star", str(star), "--prior", "glyph", words=["--prior glyph"])
    refused(tmp_path, capsys, "--star", "nothere.star", words=["nothere.star", "not found"])


def test_an_existing_config_is_kept_unless_forced(tmp_path, capsys):
    relion_star(tmp_path / "data")
    Path("config").mkdir()
    Path("config/my_study.yaml").write_text("study: mine\n")
    argv = ["--star", "data/particles.star"]
    err = refused(tmp_path, capsys, *argv, words=["exists already"], existing=True)
    assert "--force" in err and Path("config/my_study.yaml").read_text() == "study: mine\n"
    status, _, _, path = init(tmp_path, capsys, "--star", "data/particles.star", "--force")
    assert status == 0 and valid(path)["study"] == "my_study"


# --------------------------------------------------------------------------- end to end


TINY = """model: {channels: [4, 8], latent_dims: 4, pose_dims: 0}
training: {epochs: 2, batch_size: 8, checkpoint_every_epochs: 1}
evaluation: {umap_n_neighbors: 5, interpolation_steps: 3}
"""


@pytest.mark.slow
def test_a_study_written_by_init_trains_through_snakemake(tmp_path, capsys):
    """A Warp-style file of 36 particles, classes by name, no prior: init, then the workflow
    trains a beta-VAE on it (2 epochs; the tiny model settings laid over init's with a second
    config file) and writes the user's table back annotated; `cryoavae info` reads the model."""
    volumes, labels = blobs(36, 16, 3, np.random.default_rng(2))
    names = np.array(["ribo", "proteasome", "tric"])[labels]
    warp_star(tmp_path / "warp", volumes, names, voxel=16.0)
    argv = ["--star", "warp/particles.star", "--class-column", "tmLabel", "--unseen", "tric"]
    status, _, err, path = init(tmp_path, capsys, *argv)
    assert status == 0, err
    Path("tiny.yaml").write_text(TINY)
    out = "results/my_study/seed0/models/beta_vae"
    result = subprocess.run(
        [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2"]
        + ["--configfile", str(path), "tiny.yaml", "--directory", str(tmp_path)]
        + [f"{out}/metrics.json", f"{out}/particles_annotated.star"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    prior = pd.read_csv(tmp_path / "results/my_study/affinity/affinity.csv")
    np.testing.assert_array_equal(prior.to_numpy(), np.eye(3))
    metrics = json.loads((tmp_path / out / "metrics.json").read_text())
    assert metrics["unseen"]["tric"]["match"] is None  # no prior to match
    annotated = starfile.read(tmp_path / out / "particles_annotated.star")
    assert annotated["tmLabel"].tolist() == names.tolist()
    assert set(annotated.loc[names == "tric", "cryoavaeSplit"]) == {"unseen"}
    assert main(["info", str(tmp_path / out / "model.pt")]) == 0
    shown = capsys.readouterr().out
    assert "classes (3): ribo, proteasome, tric" in shown and "epochs trained: 2" in shown
    assert "metrics (" in shown and "accuracy" in shown


def test_orientations_ask_for_the_model_that_gives_them(tmp_path, capsys):
    """``--orientations`` writes the pose model (the shape turned by a 6-D pose, the centre
    found first) and the orientation step, searching 3 voxels at the file's voxel size; the
    config validates. 2-D particles are refused in one line."""
    relion_star(tmp_path / "data")  # 12.5 A per voxel
    argv = ["--star", "data/particles.star", "--orientations"]
    status, _, err, path = init(tmp_path, capsys, *argv)
    assert status == 0, err
    config = valid(path)
    model = config["model"]
    assert model["decoder"] == "gaussian_splat" and model["pose_encoding"] == "rotation6d"
    assert model["translation_px"] > 0 and model["centring_passes"] > 0
    assert config["training"]["shift_equivariance"] > 0
    orientation = config["orientation"]
    assert orientation["method"] == "template_matching"
    assert orientation["max_shift_angstrom"] == 37.5 and orientation["centre_from"] == "shift_head"
    assert "Each particle's orientation and centre" in prose(path)
    without = valid(init(tmp_path, capsys, "--star", "data/particles.star", out="c/plain.yaml")[3])
    assert without["model"]["decoder"] == "cnn"
    assert without["orientation"]["method"] == "encoder"
    images, labels = blobs(6, 16, 2, np.random.default_rng(1))
    warp_star(tmp_path / "flat", images, np.array(["a", "b", "c"])[labels])
    argv = ["--star", "flat/particles.star", "--class-column", "tmLabel", "--orientations"]
    status, _, err, path = init(tmp_path, capsys, *argv, out="c/flat.yaml")
    assert status == 1 and not path.exists()
    assert "flat/particles.star: --orientations needs subtomograms (3-D boxes)" in err
    assert len(err.strip().splitlines()) == 1
