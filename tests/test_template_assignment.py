"""tools/template_assignment.py: a class's orientations split by the template its particles were
matched against, scored in the class's own frame."""

import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation
from tool_scripts import load_tool

from cryoavae.geometry.rotations import matrices_to_relion_angles
from cryoavae.inference.latents import INFERRED_ANGLES


def test_own_template_particles_right_and_the_others_wrong_are_told_apart():
    """Class a: 20 train and 10 val particles, all in one frame turned by a fixed rotation
    (the model's own choice), except the last 4 val particles, matched against b's template
    and turned at random: own share 0.6, right 1.0 among them, 0.0 among the others."""
    rng = np.random.default_rng(0)
    true = Rotation.random(30, random_state=rng).as_matrix()
    frame = Rotation.from_euler("xyz", [40, -25, 70], degrees=True).as_matrix()
    inferred = true @ frame.T  # inferred @ frame == true
    inferred[26:] = Rotation.random(4, random_state=rng).as_matrix()
    latents = pd.DataFrame(
        {
            "class_name": ["a"] * 30,
            "split": ["train"] * 20 + ["val"] * 10,
            "orientation_template": [0] * 26 + [1] * 4,
            **dict(zip(INFERRED_ANGLES, matrices_to_relion_angles(inferred).T, strict=True)),
            **dict(
                zip(
                    ["angle_rot", "angle_tilt", "angle_psi"],
                    matrices_to_relion_angles(true).T,
                    strict=True,
                )
            ),
        }
    )
    (row,) = load_tool("template_assignment").class_rows(latents, {}, ["val"])
    assert row["held-out"] == 10 and row["own template"] == 0.6
    assert row["own: within 20°"] == 1.0 and row["others: within 20°"] == 0.0
    assert row["within 20°"] == 0.6
