"""Latent interpolations: endpoints, steps, pose sweeps, 2-D and 3-D, the figure and the stack."""

from dataclasses import asdict
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from cryoavae.core.errors import InputError
from cryoavae.inference.interpolate import interpolate_latents, write_interpolation_volumes
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model, load_model
from cryoavae.particles import open_stack
from cryoavae.report.interpolation_figures import plot_interpolations

BOX = 16
# Class centroids: a and b nearly parallel (the most similar pair), a and c opposite (the least).
CENTRES = {"a": [2.0, 0.2, 0.0], "b": [2.0, 0.5, 0.1], "c": [-2.0, 0.0, 0.3]}


pytestmark = pytest.mark.usefixtures("one_thread")


def save_checkpoint(path: Path, config: ModelConfig) -> Path:
    """A checkpoint laid out like train.py's final one (plain config dict + CPU state dict)."""
    model = build_model(config, seed=3)
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    torch.save({"model_config": plain, "state_dict": model.state_dict(), "epoch": 0}, path)
    return path


def make_latents(pose_dims: int, circular: bool = False, per_class: int = 40) -> pd.DataFrame:
    """Train rows around ``CENTRES`` with poses along a known direction, plus val and unseen
    rows far away (they must not move any mean)."""
    rng = np.random.default_rng(0)
    rows = []
    for number, (name, centre) in enumerate(CENTRES.items(), start=1):
        for split in ("train", "val"):
            n = per_class if split == "train" else 5
            shift = 0.0 if split == "train" else 50.0
            mu = np.asarray(centre) + shift + 0.05 * rng.standard_normal((n, 3))
            if circular:
                angle = rng.uniform(0, 2 * np.pi, n)
                pose = np.stack([np.cos(angle), np.sin(angle)], 1)
            else:
                direction = np.arange(1, pose_dims + 1) / np.linalg.norm(
                    np.arange(1, pose_dims + 1)
                )
                pose = rng.uniform(-1, 1, (n, 1)) * direction + 0.01 * rng.standard_normal(
                    (n, pose_dims)
                )
            rows.append((name, number, split, mu, pose.reshape(n, pose_dims)))
    rows.append(("u", 4, "unseen", np.full((5, 3), -30.0), np.full((5, pose_dims), 9.0)))
    frames = []
    for name, number, split, mu, pose in rows:
        frame = pd.DataFrame(
            {"class_name": name, "class_number": number, "split": split}, index=range(len(mu))
        )
        for i in range(3):
            frame[f"mu_{i}"] = mu[:, i]
        for i in range(pose_dims):
            frame[f"pose_{i}"] = pose[:, i]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def decode(checkpoint: Path, z: np.ndarray, pose: np.ndarray) -> np.ndarray:
    model, config, _ = load_model(checkpoint)
    with torch.no_grad():
        out = model.decode(
            torch.tensor(z, dtype=torch.float32), torch.tensor(pose, dtype=torch.float32)
        )
    return out.numpy().reshape(len(z), *(config.box_size_px,) * config.ndim)


@pytest.fixture(scope="module")
def model_2d(tmp_path_factory) -> Path:
    config = ModelConfig(ndim=2, box_size_px=BOX, channels=(4, 8), latent_dims=3, pose_dims=1)
    return save_checkpoint(tmp_path_factory.mktemp("m2") / "model.pt", config)


@pytest.fixture(scope="module")
def model_3d(tmp_path_factory) -> Path:
    config = ModelConfig(ndim=3, box_size_px=BOX, channels=(2, 4), latent_dims=3, pose_dims=4)
    return save_checkpoint(tmp_path_factory.mktemp("m3") / "model.pt", config)


def test_class_pairs_run_from_one_class_mean_to_the_other(model_2d):
    latents = make_latents(pose_dims=1)
    result = interpolate_latents(
        model_2d, latents, interpolation_steps=5, interpolation_pose_classes=2, seed=0
    )
    pairs = [(p.class_a, p.class_b, p.why) for p in result.class_pairs]
    assert pairs == [("a", "b", "most similar"), ("a", "c", "least similar")]
    train = latents[latents.split == "train"]
    means = train.groupby("class_name")[["mu_0", "mu_1", "mu_2"]].mean()
    pose_mean = train[["pose_0"]].to_numpy().mean(0, keepdims=True)
    for pair in result.class_pairs:
        assert pair.images.shape == (5, BOX, BOX)
        np.testing.assert_allclose(pair.fractions, [0, 0.25, 0.5, 0.75, 1])
        ends = means.loc[[pair.class_a, pair.class_b]].to_numpy()
        expected = decode(model_2d, ends, np.repeat(pose_mean, 2, 0))
        np.testing.assert_allclose(pair.images[[0, -1]], expected, rtol=1e-5, atol=1e-6)
        # the line between the means, decoded: the midpoint is decode of the mean of the means
        middle = decode(model_2d, ends.mean(0, keepdims=True), pose_mean)
        np.testing.assert_allclose(pair.images[2], middle[0], rtol=1e-5, atol=1e-6)
    assert result.class_pairs[1].centroid_cosine < 0 < result.class_pairs[0].centroid_cosine


def test_pose_sweep_follows_the_principal_pose_and_changes_the_output(model_2d):
    latents = make_latents(pose_dims=1)
    result = interpolate_latents(
        model_2d, latents, interpolation_steps=6, interpolation_pose_classes=2, seed=0
    )
    assert len(result.pose_sweeps) == 2
    for sweep in result.pose_sweeps:
        poses = latents.loc[
            (latents.split == "train") & (latents.class_name == sweep.class_name), "pose_0"
        ].to_numpy()
        low, high = np.percentile(poses - poses.mean(), [5, 95])
        np.testing.assert_allclose(sweep.positions, np.linspace(low, high, 6))
        np.testing.assert_allclose(sweep.poses[:, 0], poses.mean() + sweep.positions)
        assert sweep.images.shape == (6, BOX, BOX)
        assert np.abs(sweep.images[0] - sweep.images[-1]).max() > 1e-4
    again = interpolate_latents(
        model_2d, latents, interpolation_steps=6, interpolation_pose_classes=2, seed=0
    )
    assert [s.class_name for s in again.pose_sweeps] == [s.class_name for s in result.pose_sweeps]
    assert all(
        s.images.tobytes() == t.images.tobytes()
        for s, t in zip(again.pose_sweeps, result.pose_sweeps, strict=True)
    )


def test_3d_volumes_figure_and_stack(model_3d, tmp_path):
    latents = make_latents(pose_dims=4, per_class=20)
    result = interpolate_latents(
        model_3d, latents, interpolation_steps=4, interpolation_pose_classes=1, seed=1
    )
    assert result.ndim == 3 and len(result.class_pairs) == 2 and len(result.pose_sweeps) == 1
    assert result.class_pairs[0].images.shape == (4, BOX, BOX, BOX)
    sweep = result.pose_sweeps[0]
    # the principal direction of the poses is the one they were drawn along, (1, 2, 3, 4)/|.|
    step = np.diff(sweep.poses, axis=0)[0]
    np.testing.assert_allclose(
        step / np.linalg.norm(step), np.arange(1, 5) / np.sqrt(30), atol=0.02
    )
    assert np.abs(sweep.images[0] - sweep.images[-1]).max() > 1e-4

    stack = tmp_path / "interpolation.mrcs"
    write_interpolation_volumes(stack, result, voxel_size_angstrom=5.0)
    assert mrcfile.validate(str(stack))
    np.testing.assert_array_equal(open_stack(stack, 3), result.class_pairs[0].images)
    with mrcfile.open(stack) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(5.0)

    figure = tmp_path / "interpolations.png"
    plot_interpolations(figure, result, 3)
    pixels = np.asarray(Image.open(figure).convert("L"))
    assert pixels.shape[0] > 300 and pixels.std() > 0  # three rows drawn, not a blank canvas


def test_2d_stack_and_figure(model_2d, tmp_path):
    result = interpolate_latents(
        model_2d, make_latents(pose_dims=1), interpolation_steps=3, interpolation_pose_classes=1
    )
    stack = tmp_path / "interpolation.mrcs"
    write_interpolation_volumes(stack, result, voxel_size_angstrom=2.0)
    assert mrcfile.validate(str(stack))
    np.testing.assert_array_equal(open_stack(stack, 2), result.class_pairs[0].images)
    plot_interpolations(tmp_path / "f.png", result, 2)
    assert Image.open(tmp_path / "f.png").size[0] > 200
    with pytest.raises(ValueError, match="ndim = 3"):
        plot_interpolations(tmp_path / "g.png", result, 3)


def test_circular_pose_goes_round_the_full_turn(tmp_path):
    config = ModelConfig(
        ndim=2,
        box_size_px=BOX,
        channels=(4, 8),
        latent_dims=3,
        pose_dims=2,
        pose_encoding="circular",
        decoder="gaussian_splat",
        n_gaussians=8,
    )
    checkpoint = save_checkpoint(tmp_path / "model.pt", config)
    result = interpolate_latents(
        checkpoint,
        make_latents(2, circular=True),
        interpolation_steps=4,
        interpolation_pose_classes=1,
    )
    sweep = result.pose_sweeps[0]
    np.testing.assert_allclose(sweep.positions, [0, 90, 180, 270])
    np.testing.assert_allclose(sweep.poses, [[1, 0], [0, 1], [-1, 0], [0, -1]], atol=1e-12)
    # the splat decoder turns the image about voxel (8, 8): a quarter turn of +x towards +y is a
    # rot90 of the grid (away from the edge row and column, which have no partner)
    first, quarter = sweep.images[0], sweep.images[1]
    np.testing.assert_allclose(quarter[1:, 1:], np.rot90(first[1:, 1:], k=-1), atol=1e-5)


def test_without_a_pose_there_are_no_sweeps_and_it_says_so(tmp_path):
    config = ModelConfig(ndim=2, box_size_px=BOX, channels=(4, 8), latent_dims=3, pose_dims=0)
    checkpoint = save_checkpoint(tmp_path / "model.pt", config)
    latents = make_latents(pose_dims=0)
    two = latents[latents.class_name.isin(["a", "b"])]
    result = interpolate_latents(checkpoint, two, interpolation_steps=3)
    assert result.pose_sweeps == ()
    assert [(p.class_a, p.class_b, p.why) for p in result.class_pairs] == [("a", "b", "only pair")]
    assert any("pose_dims = 0" in note for note in result.notes)
    plot_interpolations(tmp_path / "f.png", result, 2)
    with pytest.raises(InputError, match="nothing to interpolate"):
        interpolate_latents(checkpoint, latents[latents.class_name == "a"])


def test_bad_inputs_are_refused(model_2d):
    latents = make_latents(pose_dims=1)
    with pytest.raises(InputError, match="interpolation_steps"):
        interpolate_latents(model_2d, latents, interpolation_steps=1)
    with pytest.raises(InputError, match="pose_dims = 1"):
        interpolate_latents(model_2d, latents.drop(columns="pose_0"))
    with pytest.raises(InputError, match="train"):
        interpolate_latents(model_2d, latents[latents.split != "train"])
