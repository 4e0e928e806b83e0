"""Is the decoder a model of shape? Each seen class's mean ``z`` decoded and compared with the
class's noise-free map.

The decoded volume is in the model's own canonical frame, so it is compared after the rotation
that fits it best (:func:`~cryoavae.affinity.map_cc.rotation_maximised_correlation`, centres of
mass aligned). A correlation on its own says little: a shapeless blob with the map's radial
density profile (its spherical average) already correlates 0.6-0.9 with a compact protein. So
each class's figure stands beside that blob's, and only a decoded mean above its blob shows
shape beyond size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..affinity.map_cc import rotation_maximised_correlation
from ..latents import latent_columns
from ..model import AffinityVAE


def decoded_class_means(
    model: AffinityVAE, latents: pd.DataFrame, classes: list[str]
) -> np.ndarray:
    """``(c, d, d, d)``: the decoding of each class's mean ``mu`` over its ``train`` rows.

    A pose that is a rotation (the Gaussian-splat decoder) is set to the identity: the canonical
    particle. The CNN decoder's free pose vector is set to the class's mean pose, the decoding
    the interpolation figure shows.
    """
    train = latents[latents["split"].astype(str) == "train"]
    names = train["class_name"].astype(str).to_numpy()
    mu = train[latent_columns(train, "mu")].to_numpy(np.float32)
    pose = train[latent_columns(train, "pose")].to_numpy(np.float32).reshape(len(train), -1)
    z = np.stack([mu[names == c].mean(axis=0) for c in classes])
    poses = np.stack([pose[names == c].mean(axis=0) for c in classes])
    probe = torch.zeros(1, pose.shape[1])
    if pose.shape[1] == 0 or model.pose_rotation(probe) is not None:
        poses = np.zeros_like(poses)
    with torch.inference_mode():
        volumes = model.decode(torch.from_numpy(z), torch.from_numpy(poses))
    return volumes[:, 0].float().numpy()


def radial_blob(volume: np.ndarray) -> np.ndarray:
    """The spherical average of ``volume`` about its centre of mass (positive density): its
    radial profile, with no shape."""
    grid = np.indices(volume.shape).reshape(volume.ndim, -1).T
    weights = np.clip(volume, 0, None).ravel()
    centre = grid.T @ weights / max(weights.sum(), 1e-30)
    shell = np.rint(np.linalg.norm(grid - centre, axis=1)).astype(int)
    profile = np.bincount(shell, volume.ravel()) / np.maximum(np.bincount(shell), 1)
    return profile[shell].reshape(volume.shape)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def shape_agreement(
    decoded: np.ndarray, maps: np.ndarray, classes: list[str], n_rotations: int, seed: int
) -> pd.DataFrame:
    """One row per class: ``decoded_vs_map_cc`` (rotation-maximised correlation of the decoded
    mean with its own map), ``radial_blob_vs_map_cc`` (the map's spherical average against the
    map), ``decoded_nearest_map`` (the class whose map the decoded mean fits best) and its
    correlation."""
    cc = rotation_maximised_correlation(decoded, maps, n_rotations, seed)  # (c, c)
    nearest = cc.argmax(axis=1)
    return pd.DataFrame(
        {
            "class_name": classes,
            "decoded_vs_map_cc": cc.diagonal(),
            "radial_blob_vs_map_cc": [_pearson(radial_blob(m), m) for m in maps],
            "decoded_nearest_map": [classes[j] for j in nearest],
            "decoded_nearest_map_cc": cc[np.arange(len(classes)), nearest],
        }
    )
