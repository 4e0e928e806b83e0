"""particle_source: copick through the real `snakemake` command line: a tiny copick project's
runs cut into particles, a model trained, its results written back into the project as picks."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import starfile
import yaml
from copick_fixtures import copick_project

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tiny(config: Path) -> dict:
    return {
        "study": "tiny_copick",
        "particle_source": "copick",
        "copick": {"config": str(config), "user_id": "curator", "unseen": ["ferritin"]},
        "structures": {"offline": True},
        "affinity": {"source": "map_cc", "map_cc_rotations": 50},
        "density": {"voxel_size_angstrom": 20.0, "box_size_px": 16, "resolution_angstrom": 40.0},
        "extraction": {"box_size_px": 16},
        "model": {"channels": [4, 8], "latent_dims": 4, "pose_dims": 0},
        "training": {"epochs": 2, "batch_size": 8, "checkpoint_every_epochs": 1},
        "evaluation": {"umap_n_neighbors": 5, "interpolation_steps": 3},
        "variants": {"avae": {}},
    }


def snakemake(workdir: Path, config: Path, *args: str):
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2"]
    cmd += ["--configfile", str(config), "--directory", str(workdir), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def study(tmp_path: Path):
    project = copick_project(
        tmp_path / "project", shape=(48, 128, 128), grid=(16, 48, 80, 112), z=24
    )
    path = tmp_path / "tiny_copick.yaml"
    path.write_text(yaml.safe_dump(tiny(project.config)))
    return project, path


def test_dry_run_plans_an_extraction_per_run_and_picks_per_variant(tmp_path):
    _, path = study(tmp_path)
    stats = snakemake(tmp_path, path, "-n").stdout.split("Job stats:")[-1]
    for rule, count in [("extract_copick", 2), ("copick_picks", 1), ("fetch_structure", 3)]:
        assert any(line.split() == [rule, str(count)] for line in stats.splitlines()), rule
    assert "extract_subtomograms" not in stats


@pytest.mark.slow
def test_a_tiny_copick_study_writes_its_picks_back(tmp_path):
    project, path = study(tmp_path)
    before = {p: hashlib.sha256(p.read_bytes()).digest() for p in project.static.rglob("*.json")}
    snakemake(tmp_path, path)
    out = tmp_path / "results" / "tiny_copick" / "seed0"
    table = starfile.read(out / "particles" / "particles.star")
    assert set(table["cryoavaeClassName"]) == {"ribosome", "proteasome", "ferritin"}
    assert set(table["rlnTomoName"]) == {"TS_1", "TS_2"}
    assert len(table) == 32  # the curator's picks; the other user's are not read
    manifest = pd.read_csv(out / "models" / "avae" / "copick_picks.tsv", sep="\t")
    assert sorted(map(tuple, manifest[["run", "object"]].values)) == sorted(
        (run, name) for run in ("TS_1", "TS_2") for name in ("ribosome", "proteasome")
    )
    annotated = starfile.read(out / "models" / "avae" / "particles_annotated.star")
    novel = annotated["cryoavaeIsNovel"] == 1
    # every particle by its predicted class, but those flagged novel: they are no such pick
    assert manifest["points"].sum() == 32 - novel.sum()
    annotated = annotated[~novel]
    for row in manifest.itertuples():
        body = json.loads(Path(row.path).read_text())
        assert Path(row.path).parent == project.overlay / "ExperimentRuns" / row.run / "Picks"
        assert (body["user_id"], body["session_id"]) == ("cryoavae", "avae")
        assert body["trust_orientation"] is False  # this model's decoder gives no orientation
        mine = annotated[
            (annotated["rlnTomoName"] == row.run)
            & (annotated["cryoavaePredictedClass"] == row.object)
        ]
        locations = [[p["location"][k] for k in "xyz"] for p in body["points"]]
        np.testing.assert_allclose(
            locations, mine[[f"cryoavaeLocation{a}Angst" for a in "XYZ"]], atol=1e-5
        )
        np.testing.assert_allclose(
            [p["score"] for p in body["points"]], mine["cryoavaeCentroidCosine"], atol=1e-5
        )
    after = {p: hashlib.sha256(p.read_bytes()).digest() for p in project.static.rglob("*.json")}
    assert after == before  # the project's own picks, untouched
