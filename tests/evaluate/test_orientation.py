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
    metrics, rotations = aligned_orientation_metrics(
        latents, names, split == "train", split == "val", ["a"], {}
    )
    assert metrics["pose_geodesic_median_deg"] < 1e-3 and set(rotations) == {"a"}
