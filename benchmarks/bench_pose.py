"""Cost of the orientation search: a training epoch of the 3-D model that searches 24
orientations with the Gaussian-splat decoder, against the CNN decoder, on the same particles;
and the same splat model without the search (one rendering per particle), which is what training
costs when the orientation comes from template matching after training instead.

Each goes through ``train_model`` (validation included), one epoch per run, the three
alternating so that the shared machine's swings fall on all of them; the figures are ratios of
the medians. Run alone with ``PYTHONPATH=src python benchmarks/bench_pose.py [--quick]``, or on
a study's own simulated particles and its prior with ``--study results/<study>/seed<k>``.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
from bench_train import _train, write_synthetic

from cryoavae.affinity.io import read_affinity_csv
from cryoavae.model.config import ModelConfig
from cryoavae.particles import read_particle_table
from cryoavae.particles.batches import class_names_from_table

BOX = 32
COMMON = {"ndim": 3, "box_size_px": BOX, "channels": (8, 16, 32), "latent_dims": 8}
SPLAT = {
    "pose_dims": 6,
    "pose_encoding": "rotation6d",
    "decoder": "gaussian_splat",
    "n_gaussians": 64,
    "wedge_tilt_max_deg": 60.0,  # as config/shrec21_pose.yaml: the rendering loses the wedge
}
MODELS = {
    "cnn": ModelConfig(**COMMON, pose_dims=4, decoder="cnn"),
    "search24": ModelConfig(**COMMON, **SPLAT, pose_hypotheses=24),
    "splat1": ModelConfig(**COMMON, **SPLAT, pose_hypotheses=1),
}


def pose_search_epoch_ratio_3d32(quick: bool, study: Path | None = None) -> list[dict]:
    """Random particles, or with ``study`` that study's ``particles.star`` and prior."""
    n, repeats = (256, 1) if quick else (2000, 3)
    seconds = {name: [] for name in MODELS}
    with tempfile.TemporaryDirectory() as tmp:
        prior = None  # bench_train's prior over its synthetic classes
        if study is None:
            star = write_synthetic(Path(tmp) / "data", n, BOX, 3, val_fraction=0.2)
        else:
            star = study / "particles" / "particles.star"
            names = class_names_from_table(read_particle_table(star))  # train_model's order
            shared = study if (study / "affinity").is_dir() else study.parent  # seed<k>/ -> study
            prior = read_affinity_csv(shared / "affinity" / "affinity.csv", names)
        for k in range(repeats):
            for name, config in MODELS.items():
                out = Path(tmp) / f"{name}_{k}"
                _train(star, config, 1, out, prior)
                seconds[name].append(float(pd.read_csv(out / "history.tsv", sep="\t").seconds[0]))
    median = {name: statistics.median(v) for name, v in seconds.items()}
    return [
        {
            "name": "pose_search_epoch_ratio_3d32",
            "value": median["search24"] / median["cnn"],
            "unit": "x",
        },
        {
            "name": "splat_single_pose_epoch_ratio_3d32",
            "value": median["splat1"] / median["cnn"],
            "unit": "x",
        },
        {"name": "pose_search_epoch_seconds_3d32", "value": median["search24"], "unit": "s"},
        {"name": "splat_single_pose_epoch_seconds_3d32", "value": median["splat1"], "unit": "s"},
        {"name": "cnn_epoch_seconds_3d32", "value": median["cnn"], "unit": "s"},
    ]


def run(quick: bool) -> list[dict]:
    return pose_search_epoch_ratio_3d32(quick)


if __name__ == "__main__":
    import json

    study = None
    if "--study" in sys.argv:
        after = sys.argv[sys.argv.index("--study") + 1 :]
        if not after or not (Path(after[0]) / "particles" / "particles.star").is_file():
            sys.exit(
                "--study: expected a seed folder, results/<study>/seed<k>, holding "
                "particles/particles.star"
            )
        study = Path(after[0])
    for figure in pose_search_epoch_ratio_3d32("--quick" in sys.argv, study):
        print(json.dumps(figure))
