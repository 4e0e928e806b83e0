"""Latent interpolations: what the decoder draws between two classes and along the pose.

Two kinds of walk through a trained model's latent space, each decoded to images (2-D) or
volumes (3-D), so a reader can see whether the latent space varies smoothly between shapes and
whether the pose carries the orientation:

- a **class pair**: ``z`` moves in a straight line from class A's mean ``mu`` to class B's (both
  over the ``train`` particles), with the pose held at the mean pose of all ``train`` particles;
- a **pose sweep**: one class's mean ``mu`` is decoded while the pose moves along the principal
  direction of that class's ``train`` poses, from the 5th to the 95th percentile of the
  projection onto it; with ``pose_encoding: circular`` the pose instead goes round the full
  circle of in-plane angles.

Everything fitted here (means, principal directions) comes from the ``train`` particles, like the
rest of the evaluation. Decoding runs on the CPU, in eval mode, without gradients.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryoavae.core.errors import InputError
from cryoavae.core.schema import default
from cryoavae.inference.latents import class_centroids, latent_columns
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import AffinityVAE, load_model
from cryoavae.particles import write_stack

__all__ = [
    "ClassPair",
    "Interpolations",
    "PoseSweep",
    "interpolate_latents",
    "write_interpolation_volumes",
]

log = logging.getLogger(__name__)

POSE_PERCENTILES = (5.0, 95.0)


@dataclass(frozen=True, eq=False)
class ClassPair:
    """Decoded straight line from ``class_a``'s mean mu to ``class_b``'s.

    ``fractions`` ``(n_steps,)`` from 0 (class A) to 1 (class B); ``images`` ``(n_steps, h, w)``
    or ``(n_steps, d, h, w)``; ``centroid_cosine`` the cosine between the two classes' latent
    centroids (as in :func:`cryoavae.inference.latents.class_centroids`); ``why`` says how the pair
    was picked (``"most similar"``, ``"least similar"`` or ``"only pair"``).
    """

    class_a: str
    class_b: str
    centroid_cosine: float
    why: str
    fractions: np.ndarray
    images: np.ndarray


@dataclass(frozen=True, eq=False)
class PoseSweep:
    """Decoded mean mu of ``class_name`` at ``n_steps`` poses.

    ``poses`` ``(n_steps, pose_dims)`` is what the decoder received; ``positions`` ``(n_steps,)``
    locates each step along the sweep in ``position_unit``: degrees of in-plane angle for a
    circular pose, else the signed distance (pose units) from the class's mean pose along its
    principal direction. ``images`` as in :class:`ClassPair`.
    """

    class_name: str
    poses: np.ndarray
    positions: np.ndarray
    position_unit: str
    images: np.ndarray


@dataclass(frozen=True, eq=False)
class Interpolations:
    """All walks of one model. ``notes`` explains anything left out (e.g. no pose sweeps for a
    model without a pose), for the figure and the log."""

    ndim: int
    pose_dims: int
    pose_encoding: str
    interpolation_steps: int
    class_pairs: tuple[ClassPair, ...]
    pose_sweeps: tuple[PoseSweep, ...]
    notes: tuple[str, ...] = ()


def interpolate_latents(
    checkpoint_path: Path,
    latents: pd.DataFrame,
    interpolation_steps: int = default("evaluation", "interpolation_steps"),
    interpolation_pose_classes: int = default("evaluation", "interpolation_pose_classes"),
    seed: int = 0,
) -> Interpolations:
    """Decode class-pair interpolations and pose sweeps of the model in ``checkpoint_path``.

    ``latents`` is the embedding table (columns ``class_name``, ``split``, ``mu_*``, ``pose_*``
    and, if present, ``class_number``, which orders the classes). Seen classes are those with
    ``train`` rows. Class pairs: the most and the least similar pair of seen classes by the cosine
    between their latent centroids (one pair with two seen classes; ties go to the earlier
    class). Pose sweeps: ``interpolation_pose_classes`` seen classes drawn with a generator
    seeded by ``seed`` (all of them if there are fewer), shown in class order; none when the
    model has no pose. Each walk has ``interpolation_steps`` steps.

    Raises:
        InputError: ``interpolation_steps < 2``, ``interpolation_pose_classes < 0``, a table
            whose ``mu_*``/``pose_*`` columns do not match the model, no ``train`` rows, or
            nothing to interpolate (fewer than two seen classes and no pose).
    """
    _check_walk_sizes(interpolation_steps, interpolation_pose_classes)
    model, config, _ = load_model(checkpoint_path, "cpu")
    model.eval()
    mu, pose, names, seen = _train_latents(latents, config.latent_dims, config.pose_dims)
    if len(seen) < 2 and config.pose_dims == 0:
        raise InputError(
            f"latents table: {len(seen)} seen class(es) {seen} and the model in "
            f"{checkpoint_path} has no pose (pose_dims = 0): nothing to interpolate; "
            "need two or more classes with train particles"
        )
    decode = _decoder(model, (config.box_size_px,) * config.ndim)
    class_mu = np.stack([mu[names == c].mean(axis=0) for c in seen])  # (c, k)
    pose_mean = _mean_pose(pose, config.pose_encoding)  # (p,)
    pairs = _class_pairs(
        decode, mu, names, seen, class_mu, pose_mean, config.pose_dims, interpolation_steps
    )
    notes = [f"no class pairs: only one seen class ({seen[0]})"] if len(seen) < 2 else []
    sweeps, sweep_notes = _pose_sweeps(
        decode,
        config,
        pose,
        names,
        seen,
        class_mu,
        interpolation_steps,
        interpolation_pose_classes,
        seed,
    )
    notes += sweep_notes
    _log_walks(pairs, sweeps, notes, interpolation_steps)
    return Interpolations(
        ndim=config.ndim,
        pose_dims=config.pose_dims,
        pose_encoding=config.pose_encoding,
        interpolation_steps=interpolation_steps,
        class_pairs=tuple(pairs),
        pose_sweeps=tuple(sweeps),
        notes=tuple(notes),
    )


_Decode = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check_walk_sizes(interpolation_steps: int, interpolation_pose_classes: int) -> None:
    """InputError before the model is loaded for step or class counts no walk can have."""
    if interpolation_steps < 2:
        raise InputError(
            f"evaluation.interpolation_steps = {interpolation_steps!r}; expected an integer >= 2"
        )
    if interpolation_pose_classes < 0:
        raise InputError(
            f"evaluation.interpolation_pose_classes = {interpolation_pose_classes!r}; "
            "expected an integer >= 0"
        )


def _decoder(model: AffinityVAE, box: tuple[int, ...]) -> _Decode:
    """The model's decoder on NumPy arrays, without gradients."""

    def decode(z: np.ndarray, p: np.ndarray) -> np.ndarray:
        """``z`` ``(n, latent_dims)``, ``p`` ``(n, pose_dims)`` -> ``(n, *box)`` float32."""
        with torch.no_grad():
            out = model.decode(
                torch.from_numpy(np.array(z, dtype=np.float32)),
                torch.from_numpy(np.array(p, dtype=np.float32)),
            )
        return out.float().numpy().reshape(len(z), *box)

    return decode


def _class_pairs(
    decode: _Decode,
    mu: np.ndarray,
    names: np.ndarray,
    seen: list[str],
    class_mu: np.ndarray,
    pose_mean: np.ndarray,
    pose_dims: int,
    n_steps: int,
) -> list[ClassPair]:
    """The straight lines between the class means of :func:`_pick_pairs`'s pairs, decoded at
    the mean pose so that only the class changes along each."""
    fractions = np.linspace(0.0, 1.0, n_steps)  # (n_steps,)
    pairs = []
    for a, b, cosine, why in _pick_pairs(mu, names, seen):
        z = (1 - fractions)[:, None] * class_mu[a] + fractions[:, None] * class_mu[b]
        images = decode(z, np.broadcast_to(pose_mean, (n_steps, pose_dims)))
        pairs.append(ClassPair(seen[a], seen[b], cosine, why, fractions, images))
    return pairs


def _pose_sweeps(
    decode: _Decode,
    config: ModelConfig,
    pose: np.ndarray,
    names: np.ndarray,
    seen: list[str],
    class_mu: np.ndarray,
    n_steps: int,
    n_classes: int,
    seed: int,
) -> tuple[list[PoseSweep], list[str]]:
    """Sweeps of ``n_classes`` seen classes drawn with ``seed`` (in class order), each class's
    mean mu decoded along :func:`_pose_path`; with the notes saying why there are none."""
    if config.pose_dims == 0:
        return [], ["no pose sweeps: the model has no pose (pose_dims = 0)"]
    if n_classes == 0:
        return [], ["no pose sweeps: interpolation_pose_classes = 0"]
    rng = np.random.default_rng(seed)
    picked = sorted(rng.choice(len(seen), size=min(n_classes, len(seen)), replace=False))
    sweeps = []
    for i in picked:
        poses, positions, unit = _pose_path(pose[names == seen[i]], n_steps, config.pose_encoding)
        if np.ptp(positions) == 0:
            log.warning("pose sweep of %s: its train poses do not vary", seen[i])
        images = decode(np.broadcast_to(class_mu[i], (n_steps, config.latent_dims)), poses)
        sweeps.append(PoseSweep(seen[i], poses, positions, unit, images))
    return sweeps, []


def _log_walks(
    pairs: list[ClassPair], sweeps: list[PoseSweep], notes: list[str], n_steps: int
) -> None:
    """What was decoded, and why anything was left out, for the run log."""
    for note in notes:
        log.info("interpolations: %s", note)
    log.info(
        "interpolations: %d class pair(s) %s, %d pose sweep(s) %s, %d steps each",
        len(pairs),
        [f"{p.class_a} -> {p.class_b}" for p in pairs],
        len(sweeps),
        [s.class_name for s in sweeps],
        n_steps,
    )


def _train_latents(latents: pd.DataFrame, latent_dims: int, pose_dims: int):
    """The ``train`` rows: ``mu`` ``(n, k)``, ``pose`` ``(n, p)``, ``names`` ``(n,)`` and the
    seen classes in class order (``class_number``, else name)."""
    missing = [c for c in ("class_name", "split") if c not in latents.columns]
    if missing:
        raise InputError(f"latents table: missing column {missing[0]!r}")
    mu_cols, pose_cols = latent_columns(latents, "mu"), latent_columns(latents, "pose")
    if len(mu_cols) != latent_dims or len(pose_cols) != pose_dims:
        raise InputError(
            f"latents table: {len(mu_cols)} mu and {len(pose_cols)} pose columns; the model has "
            f"latent_dims = {latent_dims} and pose_dims = {pose_dims} (embed with this model)"
        )
    train = latents[latents["split"].astype(str) == "train"]
    if train.empty:
        raise InputError("latents table: no rows with split 'train'; class means need them")
    names = train["class_name"].astype(str).to_numpy()
    if "class_number" in train.columns:
        order = train.groupby("class_name", sort=False)["class_number"].min()
        seen = sorted(order.index.astype(str), key=lambda c: (order[c], c))
    else:
        seen = sorted(set(names))
    mu = train[mu_cols].to_numpy(np.float64)
    pose = train[pose_cols].to_numpy(np.float64).reshape(len(train), pose_dims)
    return mu, pose, names, seen


def _mean_pose(pose: np.ndarray, pose_encoding: str) -> np.ndarray:
    """Mean of ``pose`` ``(n, p)``; for a circular pose the mean direction as a unit vector
    (angle 0 if the poses cancel out), since the decoder expects ``(cos a, sin a)``."""
    mean = pose.mean(axis=0) if len(pose) else np.zeros(pose.shape[1])
    if pose_encoding == "circular":
        norm = np.linalg.norm(mean)
        return mean / norm if norm > 1e-8 else np.array([1.0, 0.0])
    return mean


def _pick_pairs(mu: np.ndarray, names: np.ndarray, seen: list[str]):
    """``[(i, j, cosine, why)]``: the most and the least similar pair of seen classes by centroid
    cosine, ``i < j`` in class order; one pair when they coincide, none below two classes."""
    if len(seen) < 2:
        return []
    centroids = class_centroids(mu, names, seen)  # (c, k), unit rows
    cosine = centroids @ centroids.T  # (c, c)
    i, j = np.triu_indices(len(seen), k=1)
    values = cosine[i, j]
    most, least = int(np.argmax(values)), int(np.argmin(values))
    if most == least:
        return [(int(i[most]), int(j[most]), float(values[most]), "only pair")]
    return [
        (int(i[most]), int(j[most]), float(values[most]), "most similar"),
        (int(i[least]), int(j[least]), float(values[least]), "least similar"),
    ]


def _pose_path(pose: np.ndarray, n_steps: int, pose_encoding: str):
    """Poses ``(n_steps, p)`` of a sweep, their positions ``(n_steps,)`` and the position unit.

    Circular: ``n_steps`` angles evenly round the full turn from 0 degrees (360 left out, it is
    0 again). Otherwise: the mean pose plus ``s`` times the unit principal direction of ``pose``
    ``(n, p)``, ``s`` evenly from the 5th to the 95th percentile of the centred projections; the
    direction's sign is fixed so its largest component is positive.
    """
    if pose_encoding == "circular":
        degrees = np.linspace(0.0, 360.0, n_steps, endpoint=False)
        radians = np.deg2rad(degrees)
        return np.stack([np.cos(radians), np.sin(radians)], axis=1), degrees, "degrees"
    centre = pose.mean(axis=0)  # (p,)
    centred = pose - centre
    # principal direction: first right singular vector of the centred poses
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    direction = vt[0]
    direction = direction * np.sign(direction[np.argmax(np.abs(direction))])
    low, high = np.percentile(centred @ direction, POSE_PERCENTILES)
    positions = np.linspace(low, high, n_steps)  # (n_steps,)
    return centre + positions[:, None] * direction, positions, "pose units"


def write_interpolation_volumes(
    path: str | os.PathLike, interpolations: Interpolations, voxel_size_angstrom: float
) -> None:
    """Write the first class pair's decoded images or volumes as one ``.mrcs`` stack.

    3-D: ``n_steps`` volumes (an MRC volume stack); 2-D: ``n_steps`` images. Without class pairs
    the first pose sweep is written instead. The voxel size goes into the header.
    """
    if interpolations.class_pairs:
        images = interpolations.class_pairs[0].images
    elif interpolations.pose_sweeps:
        images = interpolations.pose_sweeps[0].images
    else:
        raise ValueError("write_interpolation_volumes: no class pair and no pose sweep to write")
    write_stack(path, images, voxel_size_angstrom)
