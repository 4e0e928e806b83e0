"""Your own subtomograms through the real `snakemake` command line: a RELION 5-style STAR file,
and folders shaped like the reference Affinity-VAE code's test data, converted and trained on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile
from star_fixtures import blobs

from cryoavae import particles as P
from cryoavae.inference.annotate import COLUMNS

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY_MODEL = """
model: {channels: [4, 8], latent_dims: 4, pose_dims: 0}
training: {epochs: 2, batch_size: 8, checkpoint_every_epochs: 1}
evaluation: {umap_n_neighbors: 5, interpolation_steps: 3}
"""

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, config: Path, *targets: str):
    cmd = [str(BIN / "snakemake"), "-s", str(REPO / "Snakefile"), "--cores", "2"]
    cmd += ["--configfile", str(config), "--directory", str(workdir), *targets]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def test_a_relion5_star_study_writes_the_users_table_back_annotated(tmp_path):
    rng = np.random.default_rng(0)
    volumes, classes = blobs(36, 16, 3, rng)
    (tmp_path / "Subtomograms").mkdir()
    names = []
    for i, volume in enumerate(volumes):
        names.append(f"Subtomograms/{i:04d}_16.00A.mrc")
        with mrcfile.new(tmp_path / names[-1]) as mrc:
            mrc.set_data(volume)
    optics = pd.DataFrame(
        {"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["g1"], "rlnImagePixelSize": [16.0]}
    )
    particles = pd.DataFrame(
        {
            "rlnTomoName": "TS_01",
            P.IMAGE: names,
            P.CLASS_NUMBER: classes + 1,
            "rlnOpticsGroup": 1,
            "rlnCenteredCoordinateXAngst": rng.uniform(-500, 500, len(names)),
            **{angle: rng.uniform(-180, 180, len(names)) for angle in P.ANGLES},
        }
    )
    starfile.write({"optics": optics, "particles": particles}, tmp_path / "particles.star")
    (tmp_path / "prior.csv").write_text(
        "ribo,proteasome,other\n1,0.1,0.5\n0.1,1,-0.2\n0.5,-0.2,1\n"
    )
    config = tmp_path / "study.yaml"
    config.write_text(
        "study: mine\nparticle_source: star\n"
        "star: {particles: particles.star, classes: [ribo, proteasome, other], unseen: [other]}\n"
        "affinity: {source: csv, csv_path: prior.csv}\n" + TINY_MODEL
    )
    out = "results/mine/seed0/models/avae"
    targets = ("particles_relion5.star", "latent_space.html", "class_averages.tsv")
    result = snakemake(tmp_path, config, *(f"{out}/{target}" for target in targets))
    assert list((tmp_path / "results").rglob("*.mrc")) == []  # read in place, never copied
    blocks = starfile.read(tmp_path / out / "particles_annotated.star", always_dict=True)
    assert list(blocks) == ["optics", "particles"]
    annotated = blocks["particles"]
    assert annotated[P.IMAGE].tolist() == names  # the user's rows, in their order
    pd.testing.assert_frame_equal(annotated[particles.columns], particles, check_dtype=False)
    assert annotated[list(COLUMNS)].notna().all().all()
    assert set(annotated["cryoavaePredictedClass"]) <= {"ribo", "proteasome"}
    assert set(annotated.loc[classes == 2, "cryoavaeSplit"]) == {"unseen"}
    assert (annotated["cryoavaeNovelty"] >= 0).all()
    relion5 = starfile.read(tmp_path / out / "particles_relion5.star", always_dict=True)
    assert list(relion5) == ["optics", "particles", "cryoavae_classes"]  # your blocks, and ours
    kept = annotated["cryoavaeIsNovel"] == 0  # the particles flagged novel are left out
    assert relion5["particles"][P.IMAGE].tolist() == annotated.loc[kept, P.IMAGE].tolist()
    predicted = annotated.loc[kept, "cryoavaePredictedClassNumber"].tolist()
    assert relion5["particles"][P.CLASS_NUMBER].tolist() == predicted
    assert (relion5["particles"]["rlnTomoName"] == "TS_01").all()
    logs = tmp_path / "results" / "mine" / "seed0" / "logs"
    imported = (logs / "import_star_particles.log").read_text()
    assert "1 → ribo: 12, 2 → proteasome: 12, 3 → other (unseen): 12" in imported
    assert "model.decoder: gaussian_splat" in (logs / "annotate_particles" / "avae.log").read_text()
    averages = pd.read_csv(tmp_path / out / "class_averages.tsv", sep="\t")
    assert set(averages["average_from"]) == {"given (the STAR file's angles)"}
    # the console ends with what came out, though this partial target wrote no summary.md
    end = result.stderr[result.stderr.rindex("cryoavae: study mine") :]
    assert "  avae: macro-F1 " in end and "unseen other → " in end
    assert f"{out}/particles_annotated.star: the particles" in end
    assert "snakemake --report results/mine/report.html --configfile " in end
    assert "summary.md" not in end


def reference_3d_folder(root: Path, rng) -> None:
    """The reference code's 3-D test data: .mrcs 64^3 volumes, header voxel size 0, classes
    named by PDB ID."""
    root.mkdir()
    volumes, classes = blobs(15, 64, 3, rng)
    for i, (volume, c) in enumerate(zip(volumes, classes, strict=True)):
        with mrcfile.new(root / f"{['1b23', '5mrc', '7a4m'][c]}_{i}.mrcs") as mrc:
            mrc.set_data(volume)
            mrc.voxel_size = 0.0
    (root / "classes.csv").write_text("1b23,5mrc\n")
    names = ["1b23", "5mrc", "7a4m"]
    rows = [",".join(names), "1,0.2,0.6", "0.2,1,0.1", "0.6,0.1,1"]
    (root / "affinity.csv").write_text("\n".join(rows) + "\n")


def reference_2d_folder(root: Path, rng) -> None:
    """The reference code's 2-D test data: .npy images, a classes.csv naming a class with no
    files, a test/ subfolder."""
    (root / "test").mkdir(parents=True)
    images, classes = blobs(33, 16, 2, rng)
    for i, (image, c) in enumerate(zip(images, classes, strict=True)):
        folder = root / "test" if i >= 27 else root
        np.save(folder / f"{'abc'[c]}_{i}.npy", image.astype(np.float64))
    (root / "classes.csv").write_text("a,b,z\n")
    rows = ["a,b,c,z", "1,0.3,0.1,0", "0.3,1,0.2,0", "0.1,0.2,1,0", "0,0,0,1"]
    (root / "affinity.csv").write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("shape", ["3d_mrcs", "2d_npy"])
def test_the_reference_codes_folders_convert_to_a_star_study_and_train(tmp_path, shape):
    rng = np.random.default_rng(1)
    folder = tmp_path / "reference_data"
    (reference_3d_folder if shape == "3d_mrcs" else reference_2d_folder)(folder, rng)
    converted = subprocess.run(
        [sys.executable, "-m", "cryoavae.sources.legacy_folder", str(folder), "converted"]
        + (["--voxel-size-angstrom", "10"] if shape == "3d_mrcs" else []),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert converted.returncode == 0, converted.stderr
    if shape == "2d_npy":
        assert "classes ['z'] have no" in converted.stderr
    pasted = converted.stdout.split("\n", 1)[1]  # the config lines the command prints
    assert "particle_source: star" in pasted
    config = tmp_path / "study.yaml"
    config.write_text(f"study: ref_{shape}\n" + pasted + "\n" + TINY_MODEL)
    out = f"results/ref_{shape}/seed0/models/avae"
    snakemake(tmp_path, config, f"{out}/metrics.json", f"{out}/particles_annotated.star")
    annotated = starfile.read(tmp_path / out / "particles_annotated.star")
    table = P.read_particle_table(tmp_path / "converted" / "particles.star")
    assert annotated[P.IMAGE].tolist() == table[P.IMAGE].tolist()
    assert annotated["cryoavaeNovelty"].notna().all()
    if shape == "2d_npy":  # the test/ files stayed held out of training
        source = annotated["cryoavaeSourceFile"].astype(str)
        assert set(annotated.loc[source.str.startswith("test/"), "cryoavaeSplit"]) <= {
            "val",
            "unseen",
        }
