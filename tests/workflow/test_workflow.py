"""The workflow through the real `snakemake` command line: lint, format, dry runs, a tiny study."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import torch
import yaml

# end-to-end runs of snakemake and the command line tools: the slow lane
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def snakemake(*args, cwd=REPO, check=True):
    """Run the snakemake CLI of this environment; return the completed process."""
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def planned_jobs(output: str) -> dict[str, int]:
    """Rule -> job count from a dry run's 'Job stats' table."""
    table = output.split("Job stats:")[-1]
    jobs = {}
    for line in table.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            jobs[match.group(1)] = int(match.group(2))
    return jobs


def test_lint_is_clean():
    result = snakemake("--lint")
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefmt_and_ruff_are_clean():
    subprocess.run(
        [str(BIN / "snakefmt"), "--check", "Snakefile", "workflow"], cwd=REPO, check=True
    )
    subprocess.run([str(BIN / "ruff"), "check", "."], cwd=REPO, check=True)


def test_default_study_dry_run_plans_every_stage(tmp_path):
    result = snakemake("-n", "--cores", "2", "--directory", str(tmp_path))
    jobs = planned_jobs(result.stdout)
    assert jobs["fetch_structure"] == 10 and jobs["make_density_map"] == 10
    for rule in ("compute_affinity", "simulate_subtomograms", "train_model", "evaluate_model"):
        assert jobs[rule] >= 1


def test_a_million_particles_plan_their_inference_as_many_jobs(tmp_path):
    """config/scale_1e6_pose.yaml: 100 encoding and 100 matching jobs around one that refines
    the references they share, so a cluster spreads the inference."""
    config = REPO / "config" / "scale_1e6_pose.yaml"
    result = snakemake(
        "-n", "--cores", "2", "--configfile", str(config), "--directory", str(tmp_path)
    )
    jobs = planned_jobs(result.stdout)
    assert jobs["encode_particles"] == 100 and jobs["match_particles"] == 100
    assert jobs["fit_references"] == 1 and jobs["embed_particles"] == 1
    # the study's resource table (resources.tsv) has a row for every inference job
    block = result.stdout.split("rule summarize_study:")[1]
    summarized = block.split("input:")[1].splitlines()[0].split(", ")
    for rule, count in (("encode_particles", 100), ("match_particles", 100), ("fit_references", 1)):
        assert sum(f"/benchmarks/{rule}/avae" in path for path in summarized) == count


def test_a_recentred_variant_reads_the_particles_its_source_centred(tmp_path):
    """training.recentre_from: the source variant's latents make one re-centred table, which the
    second variant (and only it) trains, encodes and matches on."""
    config = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())
    config["model"].update(decoder="gaussian_splat", pose_encoding="rotation6d", pose_dims=6)
    config["orientation"] = {"method": "template_matching", "max_shift_angstrom": 40.0}
    config["variants"] = {"avae": {}, "again": {"training": {"recentre_from": "avae"}}}
    path = tmp_path / "recentred.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(
        "-n", "--cores", "1", "--configfile", str(path), "--directory", str(tmp_path)
    )
    assert planned_jobs(result.stdout)["recentre_particles"] == 1
    inputs = {}
    for block in result.stdout.split("\nrule ")[1:]:
        name = block.split(":", 1)[0]
        variant = re.search(r"variant=(\w+)", block)
        if variant and name in ("train_model", "encode_particles", "match_particles"):
            star = re.search(r"particles/(\w+)\.star", block.split("output:")[0]).group(1)
            inputs.setdefault((name, variant.group(1)), set()).add(star)
    for name in ("train_model", "encode_particles", "match_particles"):
        assert inputs[(name, "avae")] == {"particles"}
        assert inputs[(name, "again")] == {"recentred_avae"}


def test_bad_config_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("study: bad\nstructures: {ids: [1bxn, 1s3x]}\nsimulation: {snr: -2}\n")
    result = snakemake("-n", "--cores", "1", "--configfile", str(bad), check=False)
    assert result.returncode != 0
    assert "simulation.snr = -2 is invalid; expected > 0" in result.stdout + result.stderr
    assert "Job stats" not in result.stdout


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """Run the tiny study once from an empty folder, with a β-VAE (γ = 0) as a second variant so
    that the comparison of variants is checked in the same run; yield its working folder, which
    holds the config it ran as ``tiny.yaml``."""
    work = tmp_path_factory.mktemp("tiny")
    config = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())
    config["variants"]["beta_vae"] = {"training": {"gamma": {"value": 0}}}
    (work / "tiny.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake("--cores", "2", "--configfile", str(work / "tiny.yaml"), "--directory", str(work))
    report = work / "results" / "tiny" / "report.html"
    snakemake(
        "--configfile", str(work / "tiny.yaml"), "--directory", str(work), "--report", str(report)
    )
    return work


def test_tiny_study_outputs(tiny_study):
    study = tiny_study / "results" / "tiny"  # what the seeds share
    out = study / "seed7"  # the run of the study's one seed
    names = ["1bxn", "1s3x", "3h84"]

    affinity = pd.read_csv(study / "affinity" / "affinity.csv")
    assert list(affinity.columns) == names
    matrix = affinity.to_numpy()
    assert np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    assert np.linalg.eigvalsh(matrix).min() > -1e-6

    table = starfile.read(out / "particles" / "particles.star")
    assert set(table["cryoavaeSplit"]) == {"train", "val", "test", "unseen"}
    assert set(table.loc[table["cryoavaeSplit"] == "unseen", "cryoavaeClassName"]) == {"3h84"}
    assert (table["cryoavaeClassName"] == "1bxn").sum() == 24

    checkpoint = torch.load(out / "models" / "avae" / "model.pt", weights_only=True)
    assert checkpoint["model_config"]["box_size_px"] == 16
    history = pd.read_csv(out / "models" / "avae" / "history.tsv", sep="\t")
    assert list(history["epoch"]) == [1, 2]
    assert {"loss", "reconstruction", "kl", "affinity", "val_loss"} <= set(history.columns)

    metrics = json.loads((out / "models" / "avae" / "metrics.json").read_text())
    for key in (
        "accuracy",
        "macro_f1",
        "silhouette",
        "pose_correlation",
        "unseen",
        "train_seconds",
        "train_samples_per_second",
        "device",
    ):
        assert key in metrics
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert set(metrics["unseen"]) == {"3h84"}
    assert metrics["unseen"]["3h84"]["highest_affinity_seen"] in {"1bxn", "1s3x"}

    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["seed"] == 7 and provenance["config"]["study"] == "tiny"
    assert provenance["packages"]["torch"].startswith("2.")
    for figure in ("umap.png", "confusion_matrix.png", "pose_correlation.png"):
        assert (out / "models" / "avae" / figure).read_bytes()[:4] == b"\x89PNG"
    report = (study / "report.html").read_text(errors="replace")
    assert "umap.png" in report
    assert metrics["scored_split"] == "test"
    aggregate = pd.read_csv(study / "summary.tsv", sep="\t")
    aggregate = aggregate.set_index("variant")
    assert aggregate.loc["avae", "accuracy_mean"] == metrics["accuracy"]
    assert "seed 7, scored on the test split" in (study / "summary.md").read_text()


def test_forcerun_training_reruns_downstream_only(tiny_study):
    config = tiny_study / "tiny.yaml"
    result = snakemake(
        "-n",
        "--cores",
        "1",
        "--configfile",
        str(config),
        "--directory",
        str(tiny_study),
        "--forcerun",
        "train_model",
    )
    jobs = planned_jobs(result.stdout)
    assert jobs.get("train_model") == 2 and jobs.get("evaluate_model") == 2  # one per variant
    for upstream in (
        "fetch_structure",
        "make_density_map",
        "simulate_subtomograms",
        "compute_affinity",
    ):
        assert upstream not in jobs


def test_changed_simulation_setting_reruns_simulation(tiny_study, tmp_path):
    config = yaml.safe_load((tiny_study / "tiny.yaml").read_text())
    config["simulation"]["snr"] = 2.0
    changed = tmp_path / "tiny_changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    result = snakemake(
        "-n", "--cores", "1", "--configfile", str(changed), "--directory", str(tiny_study)
    )
    jobs = planned_jobs(result.stdout)
    assert jobs.get("simulate_subtomograms") == 2 and jobs.get("train_model") == 2
    assert "fetch_structure" not in jobs and "compute_affinity" not in jobs


def test_no_half_written_outputs_after_a_failing_rule(tmp_path):
    """A corrupt bundled structure fails its rule and leaves no output file behind."""
    resources = tmp_path / "res"
    resources.mkdir()
    for name in ("1bxn", "1s3x"):
        shutil.copy(REPO / "resources" / "pdb" / f"{name}.pdb.gz", resources)
    (resources / "1s3x.pdb.gz").write_bytes(b"\x1f\x8b\x08corrupt")
    config = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())
    config["structures"] = {
        "ids": ["1bxn", "1s3x"],
        "offline": True,
        "resources_dir": str(resources),
    }
    path = tmp_path / "corrupt.yaml"
    path.write_text(yaml.safe_dump(config))
    result = snakemake(
        "--cores",
        "1",
        "--configfile",
        str(path),
        "--directory",
        str(tmp_path),
        "results/tiny/structures/1s3x.cif.gz",
        check=False,
    )
    assert result.returncode != 0
    assert not (tmp_path / "results" / "tiny" / "structures" / "1s3x.cif.gz").exists()
    log = (tmp_path / "results" / "tiny" / "logs" / "fetch_structure" / "1s3x.log").read_text()
    assert "1s3x" in log
    structures = tmp_path / "results" / "tiny" / "structures"
    assert not structures.exists() or os.listdir(structures) == []


def apply_cli(study: Path, particles: Path, out: Path) -> subprocess.CompletedProcess:
    """`python -m cryoavae.inference.apply` with the tiny study's model and reference latents."""
    model = study / "models" / "avae"
    command = [sys.executable, "-m", "cryoavae.inference.apply", "--model", str(model / "model.pt")]
    command += ["--reference", str(model / "latents.tsv"), "--particles", str(particles)]
    return subprocess.run([*command, "--out", str(out)], capture_output=True, text=True)


def test_apply_trained_model_to_particles_extracted_from_a_tomogram(tiny_study, tmp_path):
    """Open-set use: plant particles in a tomogram, extract them, place them in the latent space."""
    from cryoavae.particles import ParticleImages, read_particle_table
    from cryoavae.sources.extract import ExtractionConfig, extract_subtomograms

    out = tiny_study / "results" / "tiny" / "seed7"
    star = out / "particles" / "particles.star"
    table = read_particle_table(star)
    picked = table.index[table["cryoavaeSplit"].isin(["val", "unseen"])][:6]
    boxes = ParticleImages(table, star).gather(picked)
    tomogram = np.zeros((40, 40, 120), np.float32)
    centres = [(20, 20, 12 + 19 * k) for k in range(len(picked))]  # (z, y, x)
    for box, (z, y, x) in zip(boxes, centres, strict=True):
        tomogram[z - 8 : z + 8, y - 8 : y + 8, x - 8 : x + 8] = box
    import mrcfile

    with mrcfile.new(tmp_path / "tomo.mrc") as mrc:
        mrc.set_data(tomogram)
        mrc.voxel_size = 20.0
    names = table.loc[picked, "cryoavaeClassName"].tolist()
    pd.DataFrame(
        {
            "class": names,
            "x": [c[2] for c in centres],
            "y": [c[1] for c in centres],
            "z": [c[0] for c in centres],
        }
    ).to_csv(tmp_path / "picks.csv", index=False)
    extract_subtomograms(
        tmp_path / "tomo.mrc",
        tmp_path / "picks.csv",
        ["1bxn", "1s3x", "3h84"],
        {"3h84"},
        ExtractionConfig(box_size_px=16),
        seed=0,
        stack_path=tmp_path / "new.mrcs",
        star_path=tmp_path / "new.star",
    )
    result = apply_cli(out, tmp_path / "new.star", tmp_path / "assigned.tsv")
    assert result.returncode == 0, result.stderr
    assigned = pd.read_csv(tmp_path / "assigned.tsv", sep="\t")
    assert len(assigned) == len(picked), result.stderr
    assert set(assigned["nearest_seen"]) <= {"1bxn", "1s3x"}
    assert (assigned["novelty"] >= 0).all() and assigned["is_novel"].isin([True, False]).all()
    assert {"mu_0", "pose_0", "nearest_cosine"} <= set(assigned.columns)


def test_apply_refuses_a_missing_particle_table(tiny_study, tmp_path):
    out = tiny_study / "results" / "tiny" / "seed7"
    result = apply_cli(out, tmp_path / "nope.star", tmp_path / "x.tsv")
    assert result.returncode == 1  # 2 is left to argparse's usage errors
    assert "nope.star: particle STAR file not found" in result.stderr
    assert not (tmp_path / "x.tsv").exists()


@pytest.mark.skipif(
    not Path("/usr/bin/chromium").exists(), reason="Debian's chromium is not installed"
)
def test_report_opens_in_headless_chromium_with_figures_visible(tiny_study, tmp_path):
    pytest.importorskip("playwright")
    report = tiny_study / "results" / "tiny" / "report.html"
    shot = tmp_path / "report.png"
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "screenshot_report.py"), str(report), str(shot)]
        + ["--subcategory", "avae"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert shot.read_bytes()[:4] == b"\x89PNG"


def test_variants_train_as_their_own_jobs_and_are_compared(tiny_study):
    """Each variant trains and evaluates as its own jobs; summary and report compare them."""
    out = tiny_study / "results" / "tiny" / "seed7"
    summary = pd.read_csv(out / "summary.tsv", sep="\t")
    assert list(summary["variant"]) == ["avae", "beta_vae"]
    assert summary["accuracy"].between(0, 1).all()
    gammas = {
        variant: pd.read_csv(out / "models" / variant / "history.tsv", sep="\t")["gamma"].iloc[-1]
        for variant in summary["variant"]
    }
    assert gammas == {"avae": 10, "beta_vae": 0}
    assert (out / "variant_comparison.png").read_bytes()[:4] == b"\x89PNG"
    report = tiny_study / "results" / "tiny" / "report.html"
    assert "variant_comparison.png" in report.read_text(errors="replace")
