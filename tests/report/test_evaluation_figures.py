"""Evaluation figures are written as real, non-blank PNG images from synthetic results."""

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from cryoavae.evaluate import EvaluationConfig, evaluate_latents
from cryoavae.report import evaluation_figures as figures

CLASSES = ["1bxn", "1qvr", "3gl1", "4d8q", "3d2f"]  # the last one unseen


def latents_table(ndim: int, seed: int = 0) -> pd.DataFrame:
    """Four seen classes (train/val) and one unseen class, 2 pose dims, about 200 particles."""
    rng = np.random.default_rng(seed)
    centres = 2.0 * np.eye(6)[:5]
    centres[4] = centres[1] + centres[2]  # the unseen class sits between two seen ones
    frames = []
    for i, c in enumerate(CLASSES):
        for split, n in ({"unseen": 30} if i == 4 else {"train": 30, "val": 12}).items():
            if ndim == 2:
                angles = np.zeros((n, 3))
                angles[:, 2] = rng.uniform(-90, 90, n)
                pose = np.stack([angles[:, 2] / 90.0, rng.normal(size=n)], 1)
            else:
                rotation = Rotation.random(n, random_state=int(rng.integers(2**31)))
                angles = rotation.as_euler("ZYZ", degrees=True)
                pose = rotation.as_quat() + 0.05 * rng.normal(size=(n, 4))
            frame = pd.DataFrame(centres[i] + 0.3 * rng.normal(size=(n, 6))).add_prefix("mu_")
            frame = frame.join(pd.DataFrame(pose).add_prefix("pose_"))
            frame["class_name"], frame["split"] = c, split
            frame["angle_rot"], frame["angle_tilt"], frame["angle_psi"] = angles.T
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def affinity() -> np.ndarray:
    a = np.eye(5) + 0.1
    a[4, 1] = a[1, 4] = a[4, 2] = a[2, 4] = 0.7
    np.fill_diagonal(a, 1.0)
    return a


@pytest.fixture(scope="module")
def result_2d():
    return evaluate_latents(latents_table(2), CLASSES, affinity(), EvaluationConfig(), 0, 2)


@pytest.fixture(scope="module")
def result_3d():
    table = latents_table(3)
    return evaluate_latents(table, CLASSES, affinity(), EvaluationConfig(), 0, 3, embed_umap=False)


def assert_real_png(path, min_colours: int = 20):
    """A PNG of sensible size whose pixels vary: not blank, not a single flat colour."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("RGB"))
    assert width >= 400 and height >= 250
    assert pixels.std() > 10
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) >= min_colours
    assert not list(path.parent.glob(".*"))  # the atomic write left no temporary behind


@pytest.mark.parametrize(
    "plot", ["plot_umap", "plot_confusion_matrix", "plot_pose_correlation", "plot_prior_vs_latent"]
)
def test_2d_figures_are_real_images(tmp_path, result_2d, plot):
    path = tmp_path / "figures" / f"{plot}.png"
    getattr(figures, plot)(path, result_2d)
    assert_real_png(path)


@pytest.mark.parametrize("plot", ["plot_confusion_matrix", "plot_pose_correlation"])
def test_3d_figures_are_real_images(tmp_path, result_3d, plot):
    path = tmp_path / f"{plot}.png"
    getattr(figures, plot)(path, result_3d)
    assert_real_png(path)
    assert result_3d.metrics["pose_correlation"] > 0.9  # the noisy quaternion pose is read back


def test_umap_draws_each_class_in_its_own_colour(tmp_path, result_2d):
    path = tmp_path / "umap.png"
    figures.plot_umap(path, result_2d)
    pixels = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3).astype(int)
    for colour in figures._class_colours(result_2d.seen_classes).values():
        rgb = np.round(np.asarray(colour[:3]) * 255)
        # Points are drawn half transparent on white: look for their blend with white too.
        blend = np.round(0.5 * rgb + 0.5 * 255)
        near = np.abs(pixels - rgb).max(1) < 40
        near |= np.abs(pixels - blend).max(1) < 40
        assert near.sum() > 20


def test_pose_figure_without_pose_says_so(tmp_path, result_2d):
    note = "The model has no pose dimensions: pose metrics are not defined."
    no_pose = replace(result_2d, pose_table=None, metrics={"pose_metric_description": note})
    path = tmp_path / "pose.png"
    figures.plot_pose_correlation(path, no_pose)
    assert_real_png(path, min_colours=2)


def test_umap_figure_needs_a_umap(tmp_path, result_3d):
    with pytest.raises(ValueError, match="embed_umap"):
        figures.plot_umap(tmp_path / "umap.png", result_3d)


def test_with_the_models_orientations_the_pose_figure_shows_their_errors(tmp_path, monkeypatch):
    """A 3-D study with the orientation step: the figure shows each class's orientation errors
    (one class right, the others random), not the pose channel's read-out."""
    table = latents_table(3)
    angles = table[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy()
    wrong = table["class_name"] != "1bxn"
    guess = angles.copy()
    guess[wrong] = Rotation.random(int(wrong.sum()), random_state=1).as_euler("ZYZ", degrees=True)
    table[["inferred_rot", "inferred_tilt", "inferred_psi"]] = guess
    result = evaluate_latents(
        table, CLASSES, affinity(), EvaluationConfig(), 0, 3, embed_umap=False
    )
    errors = result.orientation_errors
    right = errors.loc[errors["class_name"] == "1bxn", "error_deg"]
    assert (
        right.max() < 1.0 and errors.loc[errors["class_name"] != "1bxn", "error_deg"].median() > 60
    )
    path = tmp_path / "pose_correlation.png"
    figures.plot_pose_correlation(path, result)
    assert_real_png(path)
    drawn = []
    monkeypatch.setattr(figures, "_plot_orientation_errors", lambda p, r: drawn.append(p))
    figures.plot_pose_correlation(tmp_path / "again.png", result)
    figures.plot_pose_correlation(
        tmp_path / "without.png", replace(result, orientation_errors=None)
    )
    assert drawn == [tmp_path / "again.png"]
