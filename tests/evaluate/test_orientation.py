"""The aligned orientation error of a latents table (cryoavae.evaluate.orientation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from cryoavae.evaluate.orientation import aligned_orientation_metrics
from cryoavae.geometry.rotations import matrices_to_relion_angles


def test_the_metric_from_a_latents_table():
    rng = np.random.default_rng(5)
    n = 200
    true = Rotation.random(n, rng=rng).as_matrix()
    inferred = true @ Rotation.random(rng=rng).as_matrix()
    truth, guess = matrices_to_relion_angles(true), matrices_to_relion_angles(inferred)
    latents = pd.DataFrame(
        {
            "class_name": "a",
            "split": np.where(np.arange(n) % 4 == 0, "val", "train"),
            **dict(zip(["angle_rot", "angle_tilt", "angle_psi"], truth.T, strict=True)),
            **dict(zip(["inferred_rot", "inferred_tilt", "inferred_psi"], guess.T, strict=True)),
        }
    )
    names, split = latents["class_name"].to_numpy(), latents["split"].to_numpy()
    metrics, rotations, _ = aligned_orientation_metrics(
        latents, names, split == "train", split == "val", ["a"], {}
    )
    assert metrics["pose_geodesic_median_deg"] < 1e-3 and set(rotations) == {"a"}


def test_fractions_within_20_and_40_degrees_show_the_class_a_median_hides():
    """Class a: 60 % of val particles exact, 40 % random; class b: all random. The pooled median
    stays under 20 degrees, the fractions say which class failed."""
    rng = np.random.default_rng(6)
    n = 400
    names = np.where(np.arange(n) < 300, "a", "b")
    split = np.where(np.arange(n) % 4 == 0, "val", "train")
    true = Rotation.random(n, rng=rng).as_matrix()
    inferred = true.copy()
    val_a = np.flatnonzero((names == "a") & (split == "val"))
    broken = np.concatenate([val_a[: int(0.4 * len(val_a))], np.flatnonzero(names == "b")])
    inferred[broken] = Rotation.random(len(broken), rng=rng).as_matrix()
    latents = pd.DataFrame(
        {
            "class_name": names,
            "split": split,
            **dict(
                zip(
                    ["angle_rot", "angle_tilt", "angle_psi"],
                    matrices_to_relion_angles(true).T,
                    strict=True,
                )
            ),
            **dict(
                zip(
                    ["inferred_rot", "inferred_tilt", "inferred_psi"],
                    matrices_to_relion_angles(inferred).T,
                    strict=True,
                )
            ),
        }
    )
    train_a_ok = np.setdiff1d(np.flatnonzero((names == "a") & (split == "train")), broken)
    assert len(train_a_ok)  # the frame of a is fitted on its intact train particles
    metrics, _, errors = aligned_orientation_metrics(
        latents, names, split == "train", split == "val", ["a", "b"], {}
    )
    within = metrics["pose_within_20deg_per_class"]
    assert abs(within["a"] - 0.6) < 0.05 and within["b"] < 0.1
    assert metrics["pose_within_40deg_per_class"]["b"] < 0.2
    assert abs(metrics["pose_within_20deg"] - (0.6 * 75 + within["b"] * 25) / 100) < 1e-9
    # every scored particle's own error, which the fractions are counted from
    assert sorted(errors["class_name"].unique()) == ["a", "b"]
    assert len(errors) == np.sum(split == "val")
    for c in "ab":
        assert np.mean(errors.loc[errors["class_name"] == c, "error_deg"] <= 20) == within[c]
