"""Bad input inside a rule, as a new user meets it: one line in the rule's log, exit status 1,
no traceback, nothing half-written.

Rule scripts run here as Snakemake runs them, in a fresh Python process with a ``snakemake``
object (its input, output, params, log); the command-line tools run as a user types them. One case
goes through the real ``snakemake`` command line, to see the log Snakemake points the user to.
"""

from __future__ import annotations

import gzip
import pickle
import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from rule_scripts import assert_refused, run_rule

from cryoavae import particles as P
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model

# end-to-end runs of snakemake and the command line tools: the slow lane
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]


def cli(module: str, *args, cwd: Path):
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


def assert_cli_refused(result, *words: str) -> None:
    assert result.returncode == 1, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if "error:" in line]
    assert len(lines) == 1 and all(word in lines[0] for word in words), result.stderr
    assert "Traceback" not in result.stderr + result.stdout


# --------------------------------------------------------------------------- structures


def fetch_params(local_file: Path) -> dict:
    fetch = {"cache_dir": None, "offline": True, "archive_url": "https://x.org", "timeout_s": 1.0}
    return {
        "source": {
            "pdb_id": None,
            "local_file": str(local_file),
            "resources_dir": "none",
            "fetch": {**fetch, "retries": 0},
        }
    }


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", ["mine.pdb", "the file is empty"]),
        (b"this is not a structure\n", ["mine.pdb", "no atoms found"]),
        (
            gzip.compress(b"ATOM      1  CA  ALA A   1", mtime=0)[:12],
            ["mine.pdb", "truncated gzip"],
        ),
    ],
)
def test_a_structure_file_that_is_not_one(tmp_path, content, words):
    source = tmp_path / "mine.pdb"
    source.write_bytes(content)
    out = tmp_path / "results" / "structures" / "mine.cif.gz"
    result, log = run_rule(
        tmp_path,
        "fetch_structure",
        output={"x": out},
        params=fetch_params(source),
        wildcards={"structure": "mine"},
    )
    assert_refused(result, log, *words, outputs=[out])


NAN_PDB = """\
ATOM      1  CA  ALA A   1       1.000   2.000   3.000  1.00  0.00           C
ATOM      2  CA  ALA A   2         nan   5.000   6.000  1.00  0.00           C
ATOM      3  CA  ALA A   3       7.000   8.000   9.000  1.00  0.00           C
END
"""


def test_nan_coordinates_are_refused_when_the_users_file_is_imported(tmp_path):
    """fetch_structure refuses the user's own file, naming it (not a copy in results/)."""
    source = tmp_path / "mine.pdb"
    source.write_text(NAN_PDB)
    out = tmp_path / "results" / "structures" / "mine.cif.gz"
    result, log = run_rule(
        tmp_path,
        "fetch_structure",
        output={"x": out},
        params=fetch_params(source),
        wildcards={"structure": "mine"},
    )
    line = assert_refused(result, log, "atom 2", "not a finite number", outputs=[out])
    assert f"{source}: atom 2" in line and "results" not in line
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_nan_coordinates_are_refused_when_atoms_are_read(tmp_path):
    structure = tmp_path / "mine.pdb"
    structure.write_text(NAN_PDB)
    out = tmp_path / "maps" / "mine.mrc"
    selection = {"atoms": "heavy", "keep_waters": False, "keep_ions": False}
    result, log = run_rule(
        tmp_path,
        "make_density_map",
        input=[str(structure)],
        output={"x": out},
        params={
            "selection": {**selection, "assembly": None, "chains": None},
            "density": {"voxel_size_angstrom": 10.0, "box_size_px": 16, "resolution_angstrom": 20},
        },
        wildcards={"structure": "mine"},
    )
    assert_refused(result, log, "mine.pdb", "atom 2", "not a finite number", outputs=[out])


# --------------------------------------------------------------------------- the prior


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("a,b\n1,nan\nnan,1\n", ["prior.csv", "NaN"]),
        ("a,a\n1,0.5\n0.5,1\n", ["prior.csv", "repeated", "['a']"]),
        ("a;b\n1;0.5\n0.5;1\n", ["prior.csv", "separated by ';'"]),
        ("a,b\n1,0.5\n", ["prior.csv", "not square"]),
        ("a,b\n1,x\nx,1\n", ["prior.csv", "row 2", "'x' is not a number"]),
    ],
)
def test_a_prior_csv_the_user_got_wrong(tmp_path, text, words):
    csv = tmp_path / "prior.csv"
    csv.write_text(text)
    out = {
        "csv": tmp_path / "affinity" / "affinity.csv",
        "heatmap": tmp_path / "affinity" / "affinity_heatmap.png",
        "info": tmp_path / "affinity" / "affinity_info.json",
    }
    characters = {"seen": ["a", "b"], "unseen": [], "image_size_px": 16}
    result, log = run_rule(
        tmp_path,
        "compute_glyph_affinity",
        output=out,
        params={"characters": characters, "affinity": {"source": "csv", "csv_path": str(csv)}},
    )
    assert_refused(result, log, *words, outputs=out.values())


# --------------------------------------------------------------------------- tomograms


def write_tomogram(path: Path, data: np.ndarray, voxel: float = 10.0) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data.astype(np.float32))
        mrc.voxel_size = voxel


def extraction_case(tmp_path, picks: str, edge: str = "skip"):
    out = {"stack": tmp_path / "p" / "shard_000.mrcs", "star": tmp_path / "p" / "shard_000.star"}
    (tmp_path / "picks.txt").write_text(picks)
    extraction = {
        "box_size_px": 8,
        "edge": edge,
        "list_format": "auto",
        "rescale_to_angstrom": None,
        "val_fraction": 0.2,
        "normalize": True,
    }
    result, log = run_rule(
        tmp_path,
        "extract_subtomograms",
        input={"tomogram": str(tmp_path / "tomo.mrc"), "particles": str(tmp_path / "picks.txt")},
        output=out,
        params={"class_names": ["a", "b"], "unseen": [], "extraction": extraction, "seed": 0},
        wildcards={"shard": "000"},
    )
    return result, log, out.values()


PICKS = "a 10 10 10\nb 20 20 10\na 12 20 12\n"


def test_a_truncated_tomogram(tmp_path):
    write_tomogram(tmp_path / "tomo.mrc", np.zeros((24, 32, 32)))
    data = (tmp_path / "tomo.mrc").read_bytes()
    (tmp_path / "tomo.mrc").write_bytes(data[: len(data) // 2])
    result, log, outputs = extraction_case(tmp_path, PICKS)
    assert_refused(result, log, "tomo.mrc", "not a valid MRC file", outputs=outputs)


def test_nan_voxels_in_a_tomogram(tmp_path):
    volume = np.random.default_rng(0).standard_normal((24, 32, 32))
    volume[10, 20, 20] = np.nan  # (z, y, x): inside the box of the second pick only
    write_tomogram(tmp_path / "tomo.mrc", volume)
    result, log, outputs = extraction_case(tmp_path, PICKS)
    assert_refused(result, log, "tomo.mrc", "particle 2 of", "NaN", outputs=outputs)


@pytest.mark.parametrize("edge", ["skip", "pad"])
def test_picks_that_all_fall_outside_the_tomogram(tmp_path, edge):
    write_tomogram(tmp_path / "tomo.mrc", np.ones((24, 32, 32)))
    picks = "a 100 10 10\nb 10 -50 10\na 12 20 400\n"
    result, log, outputs = extraction_case(tmp_path, picks, edge=edge)
    assert_refused(result, log, "picks.txt", "none of its 3 particles", outputs=outputs)


# --------------------------------------------------------------------------- trained models


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """A tiny 2-D model checkpoint, its reference latents and a particle set of 16x16 images."""
    root = tmp_path_factory.mktemp("model")
    config = ModelConfig(ndim=2, box_size_px=16, channels=(4, 8), latent_dims=3, pose_dims=0)
    model = build_model(config, seed=0)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save({"model_config": dict(config.__dict__), "state_dict": state}, root / "model.pt")
    images = np.random.default_rng(1).standard_normal((6, 16, 16)).astype(np.float32)
    P.write_stack(root / "new.mrcs", images, 5.0)
    table = P.particle_table("new.mrcs", np.ones(6, int), ["a"] * 6, np.array(["unseen"] * 6))
    P.write_particle_table(root / "new.star", table)
    mu = np.random.default_rng(2).standard_normal((8, 3))
    reference = pd.DataFrame(
        {
            "class_name": ["a"] * 4 + ["b"] * 4,
            "split": ["train"] * 8,
            "angle_rot": 0.0,
            "angle_tilt": 0.0,
            "angle_psi": 0.0,
            **{f"mu_{i}": mu[:, i] for i in range(3)},
        }
    )
    reference.to_csv(root / "latents.tsv", sep="\t", index=False)
    return root


def apply_cli(root: Path, tmp_path: Path, model=None, reference=None, particles=None, out=None):
    return cli(
        "cryoavae.inference.apply",
        "--model",
        model or root / "model.pt",
        "--reference",
        reference or root / "latents.tsv",
        "--particles",
        particles or root / "new.star",
        "--out",
        out or tmp_path / "assigned.tsv",
        cwd=tmp_path,
    )


def test_apply_works_on_the_good_files(model_files, tmp_path):
    result = apply_cli(model_files, tmp_path)
    assert result.returncode == 0, result.stderr
    assert len(pd.read_csv(tmp_path / "assigned.tsv", sep="\t")) == 6


def test_nan_in_a_particle_stack_given_to_apply(model_files, tmp_path):
    images = np.zeros((6, 16, 16), dtype=np.float32)
    images[4, 3, 3] = np.inf
    images[2, 0, 0] = np.nan
    P.write_stack(tmp_path / "new.mrcs", images, 5.0)
    (tmp_path / "new.star").write_bytes((model_files / "new.star").read_bytes())
    result = apply_cli(model_files, tmp_path, particles=tmp_path / "new.star")
    assert_cli_refused(result, "new.mrcs", "image 3", "NaN")
    assert not (tmp_path / "assigned.tsv").exists()


class _Payload:
    def __reduce__(self):
        return (print, ("pickled code ran",))


@pytest.mark.parametrize(
    ("checkpoint", "words"),
    [
        ({"model_config": {"ndim": 2}}, ["no ['state_dict']"]),
        ("weights", ["not a cryoavae model checkpoint"]),
        ("mismatch", ["weights do not fit its own model_config"]),
        ("pickle", ["refused", "pickled Python objects"]),
        ("garbage", ["not a loadable checkpoint"]),
    ],
)
def test_checkpoints_of_the_wrong_shape(model_files, tmp_path, checkpoint, words):
    path = tmp_path / "model.pt"
    good = torch.load(model_files / "model.pt", weights_only=True)
    if checkpoint == "weights":
        torch.save(good["state_dict"], path)
    elif checkpoint == "mismatch":
        torch.save({**good, "model_config": {**good["model_config"], "latent_dims": 5}}, path)
    elif checkpoint == "pickle":
        torch.save({**good, "extra": _Payload()}, path)
    elif checkpoint == "garbage":
        path.write_bytes(b"not a checkpoint at all")
    else:
        torch.save(checkpoint, path)
    result = apply_cli(model_files, tmp_path, model=path)
    assert_cli_refused(result, "model.pt", *words)
    assert "weights_only=False" not in result.stderr and "pickled code ran" not in result.stdout
    assert not (tmp_path / "assigned.tsv").exists()


@pytest.mark.parametrize("column", ["split", "class_name", "mu_1"])
def test_a_reference_table_missing_a_column(model_files, tmp_path, column):
    reference = pd.read_csv(model_files / "latents.tsv", sep="\t").drop(columns=column)
    reference.to_csv(tmp_path / "latents.tsv", sep="\t", index=False)
    result = apply_cli(model_files, tmp_path, reference=tmp_path / "latents.tsv")
    assert_cli_refused(result, "latents.tsv")
    assert not (tmp_path / "assigned.tsv").exists()


def test_an_output_whose_folder_is_a_file(model_files, tmp_path):
    (tmp_path / "out").write_text("I am a file")
    result = apply_cli(model_files, tmp_path, out=tmp_path / "out" / "assigned.tsv")
    assert_cli_refused(result, "a file stands where its folder should be")


def test_the_original_codes_folder_with_nan_images(tmp_path):
    folder = tmp_path / "legacy"
    folder.mkdir()
    for k in range(3):
        image = np.ones((8, 8), dtype=np.float32)
        if k == 1:
            image[2, 2] = np.nan
        np.save(folder / f"a_{k}.npy", image)
        np.save(folder / f"b_{k}.npy", image * 2 if k != 1 else np.ones((8, 8), np.float32))
    result = cli("cryoavae.sources.legacy_folder", folder, tmp_path / "out", cwd=tmp_path)
    assert_cli_refused(result, "a_1.npy", "NaN")
    assert not (tmp_path / "out" / "particles.star").exists()
    (tmp_path / "blocked").write_text("a file")
    np.save(folder / "a_1.npy", np.ones((8, 8), np.float32))
    result = cli("cryoavae.sources.legacy_folder", folder, tmp_path / "blocked", cwd=tmp_path)
    assert_cli_refused(result, "a file stands where its folder should be")


@pytest.mark.parametrize("suffix", [".npy", ".mrc"])
def test_the_original_codes_folder_with_empty_images(tmp_path, suffix):
    """Arrays of shape (0, 0): one line naming the file and the shape expected, exit 1, no
    RuntimeWarning printed before it, no output folder."""
    folder = tmp_path / "legacy"
    folder.mkdir()
    for name in ("a_0", "a_1", "b_0", "b_1"):
        empty = np.zeros((0, 0), dtype=np.float32)
        if suffix == ".npy":
            np.save(folder / f"{name}.npy", empty)
        else:
            write_tomogram(folder / f"{name}.mrc", empty)
    result = cli("cryoavae.sources.legacy_folder", folder, tmp_path / "out", cwd=tmp_path)
    assert_cli_refused(result, f"a_0{suffix}: holds a float32 array of shape (0, 0)")
    assert "expected a 2-D image or a 3-D volume" in result.stderr
    assert "RuntimeWarning" not in result.stderr
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- through snakemake


def test_the_rule_log_holds_the_error_snakemake_points_to(tmp_path):
    (tmp_path / "empty.pdb").write_text("")
    config = tmp_path / "study.yaml"
    config.write_text(
        "study: bad\nstructures:\n  ids: [1bxn]\n  files: {mine: empty.pdb}\n  offline: true\n"
    )
    snakemake = Path(sys.executable).parent / "snakemake"
    target = "results/bad/structures/mine.cif.gz"
    result = subprocess.run(
        [str(snakemake), "-s", str(REPO / "Snakefile"), "--cores", "1", "--configfile", str(config)]
        + ["--directory", str(tmp_path), target],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    log = (tmp_path / "results" / "bad" / "logs" / "fetch_structure" / "mine.log").read_text()
    error = [line for line in log.splitlines() if " ERROR " in line]
    assert len(error) == 1 and "empty.pdb: the file is empty" in error[0], log
    assert "Traceback" not in log + result.stdout + result.stderr
    assert not (tmp_path / target).exists()
    made = {p.relative_to(tmp_path).parts[0] for p in tmp_path.iterdir()}
    assert made <= {"empty.pdb", "study.yaml", "results", ".snakemake"}
    assert {p.name for p in (tmp_path / "results" / "bad").iterdir()} <= {"logs", "benchmarks"}


def test_pickle_payload_is_a_real_payload():
    """The unsafe-checkpoint case above means something: plain pickle would run the code."""
    assert pickle.loads(pickle.dumps(_Payload())) is None
