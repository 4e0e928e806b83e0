"""particle_source: tomograms through the config and the workflow."""

import copy
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import starfile
import yaml

from cryoavae.core.config import validate_config
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_schema
from cryoavae.particles.positions import CENTRED
from cryoavae.sources.tomogram import TomogramConfig

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = {
    "study": "tiny_tomo",
    "seed": 7,
    "particle_source": "tomograms",
    "structures": {"ids": ["1bxn", "1s3x", "3h84"], "unseen": ["3h84"], "offline": True},
    "affinity": {"source": "map_cc", "map_cc_rotations": 50},
    "density": {"voxel_size_angstrom": 20.0, "box_size_px": 16, "resolution_angstrom": 40.0},
    "tomograms": {
        "n_tomograms": 2,
        "size_x_px": 96,
        "size_y_px": 96,
        "size_z_px": 40,
        "particles_per_class": 14,
        "unseen_particles_per_class": 4,
        "tilt_step_deg": 6.0,
    },
    "extraction": {"box_size_px": 16, "jitter_angstrom": 5.0, "false_positive_fraction": 0.2},
    "apply": {"particle_sets": {"picks": "results/tiny_tomo/seed7/tomograms/002/picks.star"}},
    "model": {"channels": [4, 8], "latent_dims": 4, "pose_dims": 2},
    "training": {"epochs": 2, "batch_size": 8, "checkpoint_every_epochs": 1},
    "evaluation": {"umap_n_neighbors": 5},
    "variants": {"avae": {}},
}


def snakemake(*args, cwd=REPO):
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_every_tomogram_setting_is_a_schema_key_with_its_default():
    properties = section_schema("tomograms")["properties"]
    config = TomogramConfig()
    # tilt_max_deg is the study's missing_wedge setting, filled in by the workflow
    assert {f.name for f in dataclasses.fields(config)} == set(properties) | {"tilt_max_deg"}
    for name, node in properties.items():
        assert getattr(config, name) == node["default"], name
    with pytest.raises(InputError, match="defocus_min_um = 5.0 is larger than"):
        TomogramConfig(defocus_min_um=5.0, defocus_max_um=4.0)


def test_a_tomograms_study_validates_and_refuses_a_sample_too_thin_for_its_boxes():
    validate_config(copy.deepcopy(TINY))
    thin = copy.deepcopy(TINY)
    thin["tomograms"]["size_z_px"] = 18
    with pytest.raises(InputError, match="tomograms.size_z_px = 18 cannot hold a 16-voxel box"):
        validate_config(thin)
    empty = copy.deepcopy(TINY)
    empty["tomograms"].update(particles_per_class=0, unseen_particles_per_class=0)
    with pytest.raises(InputError, match="no particle to extract"):
        validate_config(empty)


def test_dry_run_plans_a_tomogram_and_an_extraction_per_shard(tmp_path):
    path = tmp_path / "tiny_tomo.yaml"
    path.write_text(yaml.safe_dump(TINY))
    out = snakemake("-n", "--cores", "2", "--configfile", str(path), "--directory", str(tmp_path))
    stats = out.stdout.split("Job stats:")[-1]
    for rule, count in [
        ("simulate_tomogram", 3),
        ("extract_subtomograms", 2),
        ("extract_picks", 1),
        ("plot_tomogram_particles", 1),
        ("relion5_particles", 1),
        ("relion5_applied_particles", 1),
    ]:
        assert any(line.split() == [rule, str(count)] for line in stats.splitlines()), rule
    assert "generate_characters" not in stats


@pytest.mark.slow
def test_tiny_tomogram_study_runs_end_to_end(tmp_path):
    path = tmp_path / "tiny_tomo.yaml"
    path.write_text(yaml.safe_dump(TINY))
    snakemake("--cores", "2", "--configfile", str(path), "--directory", str(tmp_path))
    out = tmp_path / "results" / "tiny_tomo" / "seed7"
    table = starfile.read(out / "particles" / "particles.star")
    # the picks' junk boxes are among the study's particles, held out of training as unseen
    junk = table["cryoavaeClassName"] == "background"
    assert set(table["cryoavaeClassName"]) == {"1bxn", "1s3x", "3h84", "background"}
    assert junk.any() and set(table.loc[junk, "cryoavaeSplit"]) == {"unseen"}
    unseen = table.loc[table["cryoavaeSplit"] == "unseen", "cryoavaeClassName"]
    assert set(unseen) == {"3h84", "background"}
    metrics = json.loads((out / "models" / "avae" / "metrics.json").read_text())
    assert metrics["n_junk"] == junk.sum() and metrics["novelty_junk_auroc"] is not None
    assert "background" not in metrics["unseen"]  # junk is no unseen class to place
    for k in ("000", "001"):
        assert (out / "tomograms" / k / "central_slice.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "benchmarks" / "simulate_tomogram" / f"{k}.tsv").exists()
    assert (out / "tomograms" / "extracted_subtomograms.png").read_bytes()[:4] == b"\x89PNG"
    # the tomograms' particles have the tilt series' wedge, and their averages are weighted by it
    log = (out / "logs" / "average_particles" / "avae.log").read_text()
    assert "missing-wedge weighted (tilts through +-60 degrees)" in log
    applied = pd.read_csv(out / "applied" / "avae" / "picks.tsv", sep="\t")
    assert "background" in set(applied["class_name"]) and "novelty" in applied
    assert set(applied["split"]) == {"applied"}  # not unseen: no class was held out of them
    annotated = starfile.read(out / "applied" / "avae" / "picks.star")
    assert set(annotated["cryoavaeSplit"]) == {"applied"}
    assert annotated[["cryoavaeUmapX", "cryoavaeUmapY"]].notna().all().all()  # the study's UMAP
    relion5 = starfile.read(out / "models" / "avae" / "particles_relion5.star", always_dict=True)
    assert list(relion5) == ["general", "optics", "particles", "cryoavae_classes"]
    particles = relion5["particles"]
    assert set(particles["rlnTomoName"]) == {"tomogram_000", "tomogram_001"}
    assert particles[list(CENTRED)].abs().max().max() < 96 / 2 * 20.0  # Å, inside the tomogram
    assert "rlnAngleRot" not in particles  # the CNN decoder measures no orientation
    picks = starfile.read(out / "applied" / "avae" / "picks_relion5.star", always_dict=True)
    assert set(picks["particles"]["rlnTomoName"]) == {"tomogram_002"}
    resources = pd.read_csv(out / "resources.tsv", sep="\t")
    assert "simulate_tomogram" in " ".join(resources.astype(str).to_numpy().ravel())
    report = out / "report.html"
    snakemake("--configfile", str(path), "--directory", str(tmp_path), "--report", str(report))
    assert "central_slice.png" in report.read_text(errors="replace")
