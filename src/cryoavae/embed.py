"""Embedding: every particle of a table through a trained encoder -> a latents table.

Works on any particle table whose images match the model's box, including classes the model
never saw (open-set use): labels are copied through, never used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .data import Split, StreamedBatches, batch_indices
from .errors import InputError
from .latents import INFERRED_ANGLES
from .model import load_model
from .orientations import matrices_to_relion_angles
from .particles import ANGLES, CLASS_NAME, CLASS_NUMBER, DEFOCUS, IMAGE, SPLIT, ParticleImages
from .pose_matching import OrientationConfig, matched_orientations
from .template_matching import CtfModel


def embed_particles(
    checkpoint_path: Path,
    table: pd.DataFrame,
    images: ParticleImages,
    batch_size: int = 512,
    device: str = "cpu",
    orientation: OrientationConfig | None = None,
    seed: int = 0,
    ctf: CtfModel | None = None,
) -> pd.DataFrame:
    """Encode every row of ``table``: mean latent ``mu_*`` and pose ``pose_*`` beside its labels.

    Columns: ``image``, ``class_name``, ``class_number``, ``split``, ``angle_rot``,
    ``angle_tilt``, ``angle_psi`` (degrees, from the table; ``unknown``/0/``unseen``/NaN where a
    user's table has no such column), ``mu_0..mu_{k-1}``, ``pose_0..pose_{p-1}``. With
    ``pose_encoding: circular`` the pose columns are ``(cos a, sin a)`` of the in-plane angle.
    Images are read in large batches by the training's prefetching reader (the next batch is
    read while this one is encoded), under ``torch.inference_mode``.

    A decoder that turns a canonical particle also gives ``inferred_rot/tilt/psi`` (RELION
    angles in the model's frame): the encoder's pose, or with ``orientation.method:
    template_matching`` the orientation matched against the decoder's templates
    (:mod:`cryoavae.pose_matching`; ``seed`` seeds its k-means, ``ctf`` is the particles'
    microscope), with the template in ``orientation_template``.
    """
    model, model_config, _ = load_model(checkpoint_path, device)
    box_shape = tuple(images.shape[1:]) if len(images) else None
    expected = (model_config.box_size_px,) * model_config.ndim
    if box_shape is not None and box_shape != expected:
        raise InputError(
            f"particle images are {box_shape} but the model in {checkpoint_path} expects {expected}"
        )
    n = len(table)
    every = Split(np.arange(n), np.zeros(n, dtype=np.int64))
    source = StreamedBatches(images, every, torch.device(device))
    k, p = model_config.latent_dims, model_config.pose_dims
    mu = np.empty((n, k), np.float32)
    pose = np.empty((n, p), np.float32)
    d = model_config.ndim
    rotation = np.full((n, d, d), np.nan, np.float64)
    with torch.inference_mode():
        for idx, (x, _) in zip(
            batch_indices(n, batch_size), source.iterate(batch_indices(n, batch_size)), strict=True
        ):
            encoding = model.encode(x)  # x: (b, 1, *box)
            mu[idx.numpy()] = encoding.mu.float().cpu().numpy()
            pose[idx.numpy()] = encoding.pose.float().cpu().numpy()
            turned = model.pose_rotation(encoding.pose)
            if turned is not None:
                rotation[idx.numpy()] = turned.double().cpu().numpy()
    template = None
    matching = orientation is not None and orientation.method == "template_matching"
    if matching and d == 3 and np.isfinite(rotation).all() and n:
        split = _column(table, SPLIT, "unseen").astype(str)
        train = np.flatnonzero(split == "train")
        train = train if len(train) else np.arange(n)
        names = _column(table, CLASS_NAME, "unknown").astype(str)[train]
        defocus = _column(table, DEFOCUS, np.nan).astype(float) / 1e4  # Å -> µm
        rotation, template = matched_orientations(
            model,
            mu,
            train,
            orientation.templates or len(np.unique(names)),
            images,
            orientation,
            seed,
            defocus if np.isfinite(defocus).all() else None,
            ctf,
        )
    out = pd.DataFrame(
        {
            "image": table[IMAGE].astype(str).to_numpy(),
            "class_name": _column(table, CLASS_NAME, "unknown").astype(str),
            "class_number": _column(table, CLASS_NUMBER, 0).astype(int),
            "split": _column(table, SPLIT, "unseen").astype(str),
            **{f"angle_{a}": _column(table, c, np.nan).astype(float) for a, c in _ANGLES},
        }
    )
    latent = pd.DataFrame(
        np.concatenate([mu, pose], axis=1),
        columns=[f"mu_{i}" for i in range(k)] + [f"pose_{i}" for i in range(p)],
    )
    tables = [out, latent]
    if np.isfinite(rotation).all() and n:
        tables.append(inferred_angles(rotation))
    if template is not None:
        tables.append(pd.DataFrame({"orientation_template": template}))
    return pd.concat(tables, axis=1)


def inferred_angles(rotation: np.ndarray) -> pd.DataFrame:
    """The model's orientation of each particle as angles: 3-D ``inferred_rot/tilt/psi``, RELION
    ZYZ degrees of the matrix ``A`` the decoder turns its canonical particle by (a particle is
    that canonical particle rotated actively by ``A``, :mod:`cryoavae.orientations`); 2-D
    ``inferred_psi``, the in-plane angle turning +x towards +y."""
    if rotation.shape[-1] == 2:
        return pd.DataFrame(
            {"inferred_psi": np.degrees(np.arctan2(rotation[:, 1, 0], rotation[:, 0, 0]))}
        )
    angles = matrices_to_relion_angles(rotation)
    return pd.DataFrame(angles, columns=list(INFERRED_ANGLES))


_ANGLES = tuple(zip(("rot", "tilt", "psi"), ANGLES, strict=True))


def _column(table: pd.DataFrame, name: str, missing) -> np.ndarray:
    if name in table.columns:
        return table[name].to_numpy()
    return np.full(len(table), missing, dtype=object if isinstance(missing, str) else None)
