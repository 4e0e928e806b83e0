"""Embedding: every particle of a table through a trained encoder -> a latents table.

Works on any particle table whose images match the model's box, including classes the model
never saw (open-set use): labels are copied through, never used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import batch_indices
from .errors import InputError
from .model import load_model
from .particles import ANGLES, CLASS_NAME, CLASS_NUMBER, IMAGE, SPLIT, ParticleImages


def embed_particles(
    checkpoint_path: Path,
    table: pd.DataFrame,
    images: ParticleImages,
    batch_size: int = 256,
    device: str = "cpu",
) -> pd.DataFrame:
    """Encode every row of ``table``: mean latent ``mu_*`` and pose ``pose_*`` beside its labels.

    Columns: ``image``, ``class_name``, ``class_number``, ``split``, ``angle_rot``,
    ``angle_tilt``, ``angle_psi`` (degrees, from the table), ``mu_0..mu_{k-1}``,
    ``pose_0..pose_{p-1}``. With ``pose_encoding: circular`` the pose columns are
    ``(cos a, sin a)`` of the in-plane angle ``a``. Images are read a batch at a time.
    """
    model, model_config, _ = load_model(checkpoint_path, device)
    box_shape = tuple(images.shape[1:]) if len(images) else None
    expected = (model_config.box_size_px,) * model_config.ndim
    if box_shape is not None and box_shape != expected:
        raise InputError(
            f"particle images are {box_shape} but the model in {checkpoint_path} expects {expected}"
        )
    mus, poses = [], []
    with torch.no_grad():
        for idx in batch_indices(len(table), batch_size):
            x = torch.from_numpy(images.gather(idx.numpy())).to(device)  # (b, *box)
            encoding = model.encode(x)
            mus.append(encoding.mu.float().cpu().numpy())
            poses.append(encoding.pose.float().cpu().numpy())
    k, p = model_config.latent_dims, model_config.pose_dims
    mu = np.concatenate(mus) if mus else np.empty((0, k), np.float32)
    pose = np.concatenate(poses) if poses else np.empty((0, p), np.float32)
    out = pd.DataFrame(
        {
            "image": table[IMAGE].astype(str).to_numpy(),
            "class_name": table[CLASS_NAME].astype(str).to_numpy(),
            "class_number": table[CLASS_NUMBER].astype(int).to_numpy(),
            "split": table[SPLIT].astype(str).to_numpy(),
            "angle_rot": table[ANGLES[0]].astype(float).to_numpy(),
            "angle_tilt": table[ANGLES[1]].astype(float).to_numpy(),
            "angle_psi": table[ANGLES[2]].astype(float).to_numpy(),
        }
    )
    latent = pd.DataFrame(
        np.concatenate([mu, pose], axis=1),
        columns=[f"mu_{i}" for i in range(k)] + [f"pose_{i}" for i in range(p)],
    )
    return pd.concat([out, latent], axis=1)
