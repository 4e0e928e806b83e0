"""Decoded class means against maps: the rotation-maximised fit, the shapeless-blob baseline and
which pose a decoding uses; known answers built in the test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.spatial.transform import Rotation

from cryoavae.evaluate.decoded import decoded_class_means, radial_blob, shape_agreement
from cryoavae.geometry.volume_rotation import rotate_volumes
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model

D = 20


def blobs(centres, widths) -> np.ndarray:
    z, y, x = np.indices((D, D, D)) - D // 2
    out = np.zeros((D, D, D))
    for (cx, cy, cz), s in zip(centres, widths, strict=True):
        out += np.exp(-((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) / (2 * s**2))
    return out.astype(np.float32)


ROD = blobs([(-5, 0, 0), (0, 0, 0), (5, 0, 0)], [2.0, 2.0, 2.0])
BENT = blobs([(-4, -3, 0), (0, 2, 0), (4, -3, 1)], [1.8, 2.2, 1.6])


def test_a_sphere_is_its_own_radial_blob_and_a_rod_is_not():
    sphere = blobs([(0, 0, 0)], [3.0])
    # (1-voxel shells: a sphere comes back to within their discretisation)
    assert np.corrcoef(radial_blob(sphere).ravel(), sphere.ravel())[0, 1] > 0.99
    assert np.corrcoef(radial_blob(ROD).ravel(), ROD.ravel())[0, 1] < 0.9


def test_a_turned_copy_fits_its_own_map_best_and_beats_the_blob():
    turn = Rotation.from_euler("zyx", [70, 40, -20], degrees=True).as_matrix()
    decoded = rotate_volumes(np.stack([ROD, BENT]), np.stack([turn, turn.T]))
    table = shape_agreement(decoded, np.stack([ROD, BENT]), ["rod", "bent"], 2000, seed=0)
    assert table["decoded_nearest_map"].tolist() == ["rod", "bent"]
    assert (table["decoded_vs_map_cc"] > 0.9).all(), table
    assert (table["decoded_vs_map_cc"] > table["radial_blob_vs_map_cc"]).all(), table
    # unturned, the identity (always tried) fits to the float
    same = shape_agreement(np.stack([ROD, BENT]), np.stack([ROD, BENT]), ["r", "b"], 1, seed=0)
    np.testing.assert_allclose(same["decoded_vs_map_cc"], 1.0, atol=1e-5)


def _latents(mu: np.ndarray, pose: np.ndarray, names: list[str]) -> pd.DataFrame:
    table = pd.DataFrame({"class_name": names, "split": "train"})
    for i in range(mu.shape[1]):
        table[f"mu_{i}"] = mu[:, i]
    for i in range(pose.shape[1]):
        table[f"pose_{i}"] = pose[:, i]
    return table


@pytest.mark.parametrize("decoder", ["cnn", "gaussian_splat"])
def test_class_means_decode_the_canonical_particle_or_the_mean_pose(decoder):
    pose_dims = 6 if decoder == "gaussian_splat" else 4
    encoding = {"pose_encoding": "rotation6d"} if decoder == "gaussian_splat" else {}
    config = ModelConfig(
        ndim=3, box_size_px=16, channels=(2, 4), latent_dims=3, pose_dims=pose_dims,
        decoder=decoder, **encoding,
    )  # fmt: skip
    model = build_model(config, seed=0).eval()
    rng = np.random.default_rng(0)
    mu, pose = rng.normal(size=(6, 3)), rng.normal(size=(6, pose_dims))
    names = ["a", "b", "a", "b", "a", "b"]
    volumes = decoded_class_means(model, _latents(mu, pose, names), ["b", "a"])
    z = torch.tensor(np.stack([mu[1::2].mean(0), mu[0::2].mean(0)]), dtype=torch.float32)
    if decoder == "gaussian_splat":  # identity: the model's canonical frame
        p = torch.zeros(2, pose_dims)
    else:  # the CNN's free pose vector: the class's mean
        p = torch.tensor(np.stack([pose[1::2].mean(0), pose[0::2].mean(0)]), dtype=torch.float32)
    with torch.no_grad():
        expected = model.decode(z, p)[:, 0].numpy()
    np.testing.assert_allclose(volumes, expected, rtol=1e-5, atol=1e-6)
