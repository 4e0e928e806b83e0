"""Is the decoder a model of shape? Each seen class's mean ``z`` decoded and compared with the
class's noise-free map.

The decoded volume is in the model's own canonical frame, so it is compared after the rotation
that fits it best: a coarse search over random rotations
(:func:`~cryoavae.affinity.map_cc.correlation_over_rotations`, centres of mass aligned), then a
local one around the best of them, in steps of 10, 5 and 2.5 degrees (1,000 random rotations
alone leave the maximum uncertain by up to 0.05 on SHREC'21 maps: measured).

A correlation on its own says little: a shapeless blob with the map's radial density profile
(its spherical average) already correlates 0.6-0.9 with a compact protein. So each class's
figure stands beside that blob's, and only a decoded mean above its blob shows shape beyond
size.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy.spatial.transform import Rotation

from cryoavae.affinity.map_cc import correlation_over_rotations, identity_and_random_rotations
from cryoavae.inference.latents import latent_columns
from cryoavae.model.vae import AffinityVAE


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


REFINE_STEPS_DEG = (10.0, 5.0, 2.5)
REFINE_TRIES = 64


def _refined(moving: np.ndarray, fixed: np.ndarray, start: np.ndarray, rng) -> float:
    """The best correlation of ``moving`` turned near ``start`` with ``fixed``: random turns of
    shrinking size about the best rotation so far (which is always among the candidates)."""
    best, cc = start, -1.0
    for step in REFINE_STEPS_DEG:
        turns = Rotation.from_rotvec(
            rng.normal(scale=math.radians(step), size=(REFINE_TRIES, 3))
        ).as_matrix()
        candidates = np.concatenate([best[None], best @ turns])
        top, where = correlation_over_rotations(moving[None], fixed[None], candidates)
        best, cc = candidates[where[0, 0]], float(top[0, 0])
    return cc


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-30))


def shape_agreement(
    decoded: np.ndarray, maps: np.ndarray, classes: list[str], n_rotations: int, seed: int
) -> pd.DataFrame:
    """One row per class: ``decoded_vs_map_cc`` (rotation-maximised correlation of the decoded
    mean with its own map), ``radial_blob_vs_map_cc`` (the map's spherical average against the
    map), ``decoded_nearest_map`` (its own class, or the other class whose map fitted best in the
    coarse search if that one fits better after both are refined) and its correlation."""
    rotations = identity_and_random_rotations(n_rotations, seed)
    cc, where = correlation_over_rotations(decoded, maps, rotations)  # (c, c) each
    # refine each class's own pair and its coarse nearest other map, so both are compared alike
    rng = np.random.default_rng(seed)
    others = np.where(np.eye(len(classes), dtype=bool), -np.inf, cc).argmax(axis=1)
    nearest = np.arange(len(classes))
    for i in range(len(classes)):  # classes, not particles: a handful of small searches
        cc[i, i] = _refined(decoded[i], maps[i], rotations[where[i, i]], rng)
        if len(classes) > 1:
            j = int(others[i])
            cc[i, j] = _refined(decoded[i], maps[j], rotations[where[i, j]], rng)
            nearest[i] = j if cc[i, j] > cc[i, i] else i
    return pd.DataFrame(
        {
            "class_name": classes,
            "decoded_vs_map_cc": cc.diagonal(),
            "radial_blob_vs_map_cc": [_pearson(radial_blob(m), m) for m in maps],
            "decoded_nearest_map": [classes[j] for j in nearest],
            "decoded_nearest_map_cc": cc[np.arange(len(classes)), nearest],
        }
    )
