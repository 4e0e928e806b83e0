"""Embedding: every particle of a table through a trained encoder -> a latents table.

Works on any particle table whose images match the model's box, including classes the model
never saw (open-set use): labels are copied through, never used.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryoavae.core.errors import InputError
from cryoavae.core.progress import Progress
from cryoavae.geometry.ctf import CtfModel
from cryoavae.geometry.rotations import matrices_to_relion_angles
from cryoavae.inference.latents import (
    INFERRED_ANGLES,
    INFERRED_SHIFTS,
    MATCHED_CLASS,
    ORIENTATION_FIT,
)
from cryoavae.inference.recentre import with_recentring
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import AffinityVAE, load_model
from cryoavae.orientation.templates import (
    OrientationConfig,
    References,
    fit_references,
    match_references,
)
from cryoavae.particles import (
    ANGLES,
    CLASS_NAME,
    CLASS_NUMBER,
    DEFOCUS,
    IMAGE,
    SPLIT,
    ParticleImages,
    defocus_um,
)
from cryoavae.particles.batches import Split, StreamedBatches, batch_indices

log = logging.getLogger(__name__)


def embed_particles(
    checkpoint_path: Path,
    table: pd.DataFrame,
    images: ParticleImages,
    batch_size: int = 512,
    device: str = "cpu",
    orientation: OrientationConfig | None = None,
    seed: int = 0,
    ctf: CtfModel | None = None,
    reference: pd.DataFrame | None = None,
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
    (:mod:`cryoavae.orientation.templates`; ``seed`` seeds its k-means, ``ctf`` is the particles'
    microscope), with the template in ``orientation_template`` (and, one template per class,
    its class in ``orientation_class``: the particle's class, :mod:`cryoavae.inference.annotate`).
    The templates come from this table's own ``train`` particles, or, for a new particle set,
    from the ``train`` rows of the study's latents table ``reference``, so the set is matched as
    the study's particles were.
    Where each particle's centre sits (``inferred_shift_x/y/z_angstrom``, 3-D) comes from the
    translation search (``orientation.max_shift_angstrom``), else from the encoder of a model
    with ``translation_px``; relative to the boxes as stored, also for a table read re-centred
    (:mod:`cryoavae.inference.recentre`).

    The workflow runs the same steps as separate jobs over parts of the table
    (:mod:`cryoavae.inference.jobs`): :func:`encode_particles`, :func:`fit_study_references`,
    :func:`match_encoded`, :func:`with_matches`.
    """
    encoded = encode_particles(checkpoint_path, table, images, batch_size, device)
    if not needs_matching(encoded, orientation):
        return with_recentring(encoded, table)
    model, _, _ = load_model(checkpoint_path, device)
    references = fit_study_references(
        model, encoded, table, images, orientation, seed, ctf, reference
    )
    matched = match_encoded(references, encoded, table, images, orientation, ctf)
    return with_recentring(with_matches(encoded, matched), table)


def encode_particles(
    checkpoint_path: Path,
    table: pd.DataFrame,
    images: ParticleImages,
    batch_size: int = 512,
    device: str = "cpu",
) -> pd.DataFrame:
    """The labels, ``mu_*``, ``pose_*`` and, where the model gives them, the encoder's
    ``inferred_*`` angles and shifts of every row of ``table`` (see :func:`embed_particles`)."""
    model, model_config, _ = load_model(checkpoint_path, device)
    _check_box_shape(images, model_config, checkpoint_path)
    n = len(table)
    defocus = None
    if model_config.measure_ctf and model_config.pose_hypotheses > 1:  # the search renders it
        defocus = _defocus_um(table, f"the pose search of the model in {checkpoint_path}")
    mu, pose, rotation, shift_px = _encode(
        model, model_config, images, (n, batch_size), device, defocus
    )
    k, p = model_config.latent_dims, model_config.pose_dims
    latent = pd.DataFrame(
        np.concatenate([mu, pose], axis=1),
        columns=[f"mu_{i}" for i in range(k)] + [f"pose_{i}" for i in range(p)],
    )
    tables = [_labels(table), latent]
    if np.isfinite(rotation).all() and n:
        tables.append(inferred_angles(rotation))
    if shift_px is not None and shift_px.shape[1] == len(INFERRED_SHIFTS) and n:
        shifts = shift_px * images.voxel_size_angstrom
        tables.append(pd.DataFrame(shifts, columns=list(INFERRED_SHIFTS)))
    return pd.concat(tables, axis=1)


def needs_matching(encoded: pd.DataFrame, orientation: OrientationConfig | None) -> bool:
    """Whether these particles' orientations come from template matching: asked for, and a 3-D
    decoder that turns (its encoder gave ``inferred_rot``)."""
    matching = orientation is not None and orientation.method == "template_matching"
    return matching and INFERRED_ANGLES[0] in encoded.columns and len(encoded) > 0


def fit_study_references(
    model: AffinityVAE,
    encoded: pd.DataFrame,
    table: pd.DataFrame,
    images: ParticleImages,
    orientation: OrientationConfig,
    seed: int,
    ctf: CtfModel | None,
    reference: pd.DataFrame | None = None,
) -> References:
    """The templates every particle is matched against, from the train particles (the
    reference's when given; else this table's, or every particle when none is labelled train):
    one per class from its particles' mean, or ``orientation.templates`` k-means centres."""
    mu = _mu(encoded)
    fit_mu = None
    if reference is not None:
        trained = reference[reference["split"].astype(str) == "train"]
        fit_mu = _mu(trained)
        names = trained["class_name"].astype(str).to_numpy()
        train = np.arange(0)
    else:
        split = encoded["split"].astype(str).to_numpy()
        train = np.flatnonzero(split == "train")
        train = train if len(train) else np.arange(len(encoded))
        names = encoded["class_name"].astype(str).to_numpy()[train]
    return fit_references(
        model,
        mu,
        train,
        orientation.templates,
        images,
        orientation,
        seed,
        _defocus_um(table, _ctf_user(orientation, ctf)),
        ctf,
        fit_mu,
        centre_guess_px(encoded, orientation, images),
        None if orientation.templates else names,
    )


def match_encoded(
    references: References,
    encoded: pd.DataFrame,
    table: pd.DataFrame,
    images: ParticleImages,
    orientation: OrientationConfig,
    ctf: CtfModel | None,
) -> pd.DataFrame:
    """``inferred_*`` angles, ``orientation_template`` (and ``orientation_class``), its fit and
    (with a translation search) shifts of the particles of ``encoded`` (rows of ``table``, images
    in ``images``), matched against ``references``."""
    found = match_references(
        references,
        _mu(encoded),
        images,
        orientation,
        _defocus_um(table, _ctf_user(orientation, ctf)),
        ctf,
        centre_guess_px(encoded, orientation, images),
    )
    tables = [
        inferred_angles(found.rotations),
        pd.DataFrame({"orientation_template": found.templates, ORIENTATION_FIT: found.fits}),
    ]
    if references.classes is not None:
        tables.append(pd.DataFrame({MATCHED_CLASS: references.classes[found.templates]}))
    if orientation.max_shift_angstrom > 0:
        shifts = found.shifts_px * images.voxel_size_angstrom
        tables.append(pd.DataFrame(shifts, columns=list(INFERRED_SHIFTS)))
    return pd.concat(tables, axis=1)


def centre_guess_px(
    encoded: pd.DataFrame, orientation: OrientationConfig, images: ParticleImages
) -> np.ndarray | None:
    """Where the encoder's shift head places each particle's centre ``(n, 3)`` (x, y, z voxels),
    for a translation search told to start there (``orientation.centre_from: shift_head``);
    None otherwise. InputError when the encoder gave no shifts (a model without a head)."""
    if orientation.max_shift_angstrom <= 0 or orientation.centre_from != "shift_head":
        return None
    if not all(c in encoded.columns for c in INFERRED_SHIFTS):
        raise InputError(
            "orientation.centre_from: shift_head needs a model with a shift head "
            "(model.translation_px > 0); this model's encoder gives no shifts"
        )
    return encoded[list(INFERRED_SHIFTS)].to_numpy(np.float64) / images.voxel_size_angstrom


def with_matches(encoded: pd.DataFrame, matched: pd.DataFrame) -> pd.DataFrame:
    """The latents table: ``encoded`` with its encoder's angles (and shifts, where matching found
    them) replaced by ``matched``'s, the matched template and its fit after the angles."""
    inferred = (*INFERRED_ANGLES, *INFERRED_SHIFTS)
    base = encoded.drop(columns=[c for c in inferred if c in encoded.columns])
    searched = all(c in matched.columns for c in INFERRED_SHIFTS)
    source = matched if searched else encoded
    tables = [
        base,
        matched[[*INFERRED_ANGLES, "orientation_template"]],
        matched[[c for c in (MATCHED_CLASS, ORIENTATION_FIT) if c in matched.columns]],
        source[[c for c in INFERRED_SHIFTS if c in source.columns]],
    ]
    return pd.concat([t.reset_index(drop=True) for t in tables], axis=1)


def _mu(latents: pd.DataFrame) -> np.ndarray:
    columns = [c for c in latents.columns if c.startswith("mu_")]
    return latents[columns].to_numpy(np.float32)


def _defocus_um(table: pd.DataFrame, needed: str | None = None) -> np.ndarray | None:
    """Each particle's defocus (µm) from the table, None unless every row has one. ``needed``:
    what models the CTF (then every row must have a defocus > 0, or InputError names the row)."""
    defocus = defocus_um(table)
    if needed is None:
        return defocus if np.isfinite(defocus).all() else None
    bad = np.flatnonzero(~(defocus > 0))
    if len(bad):
        value = _column(table, DEFOCUS, np.nan)[bad[0]]
        shown = repr(value) if isinstance(value, str) else str(value)
        raise InputError(
            f"particle table: row {bad[0] + 1} has {DEFOCUS} = {shown}; {needed} "
            "models each particle's CTF and needs a defocus > 0 Å in every row"
        )
    return defocus


def _ctf_user(orientation: OrientationConfig, ctf: CtfModel | None) -> str | None:
    """What needs each particle's defocus in the matching: ``orientation.ctf``, or None."""
    return "orientation.ctf" if ctf is not None and orientation.ctf else None


def _check_box_shape(
    images: ParticleImages, model_config: ModelConfig, checkpoint_path: Path
) -> None:
    """InputError before any encoding when the particles are not the boxes the model was
    trained on (an empty stack has no shape to check)."""
    box_shape = tuple(images.shape[1:]) if len(images) else None
    expected = (model_config.box_size_px,) * model_config.ndim
    if box_shape is not None and box_shape != expected:
        raise InputError(
            f"particle images are {box_shape} but the model in {checkpoint_path} expects {expected}"
        )


def _encode(
    model: AffinityVAE,
    model_config: ModelConfig,
    images: ParticleImages,
    size: tuple[int, int],
    device: str,
    defocus_um: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``mu`` ``(n, k)``, ``pose`` ``(n, p)``, the decoder's rotation ``(n, d, d)`` of every
    particle (NaN where the decoder does not turn) and the encoder's shift ``(n, d)`` (voxels;
    None when the model renders centred), read by the training's prefetching reader; its progress
    logged a batch at a time. ``size``: ``(n, batch size)``; ``defocus_um``: each particle's
    defocus when the model's pose search needs it, else None."""
    n, batch_size = size
    every = Split(np.arange(n), np.zeros(n, dtype=np.int64), defocus_um)
    source = StreamedBatches(images, every, torch.device(device))
    k, p = model_config.latent_dims, model_config.pose_dims
    mu = np.empty((n, k), np.float32)
    pose = np.empty((n, p), np.float32)
    d = model_config.ndim
    rotation = np.full((n, d, d), np.nan, np.float64)
    shift_px = np.empty((n, d), np.float64) if model_config.translation_px > 0 else None
    batches = zip(
        batch_indices(n, batch_size), source.iterate(batch_indices(n, batch_size)), strict=True
    )
    with torch.inference_mode(), Progress(n, "encoding particles", log) as progress:
        for idx, (x, _) in batches:
            focus = None if defocus_um is None else source.defocus_um(idx)
            encoding = model.encode(x, defocus_um=focus)  # x: (b, 1, *box)
            mu[idx.numpy()] = encoding.mu.float().cpu().numpy()
            pose[idx.numpy()] = encoding.pose.float().cpu().numpy()
            turned = model.pose_rotation(encoding.pose)
            if turned is not None:
                rotation[idx.numpy()] = turned.double().cpu().numpy()
            if shift_px is not None:
                shift_px[idx.numpy()] = encoding.shift_px.double().cpu().numpy()
            progress.advance(len(idx))
    return mu, pose, rotation, shift_px


def _labels(table: pd.DataFrame) -> pd.DataFrame:
    """The table's labels beside the latents, with placeholders for columns a user's table lacks."""
    return pd.DataFrame(
        {
            "image": table[IMAGE].astype(str).to_numpy(),
            "class_name": _column(table, CLASS_NAME, "unknown").astype(str),
            "class_number": _column(table, CLASS_NUMBER, 0).astype(int),
            "split": _column(table, SPLIT, "unseen").astype(str),
            **{f"angle_{a}": _column(table, c, np.nan).astype(float) for a, c in _ANGLES},
        }
    )


def inferred_angles(rotation: np.ndarray) -> pd.DataFrame:
    """The model's orientation of each particle as angles: 3-D ``inferred_rot/tilt/psi``, RELION
    ZYZ degrees of the matrix ``A`` the decoder turns its canonical particle by (a particle is
    that canonical particle rotated actively by ``A``, :mod:`cryoavae.geometry.rotations`); 2-D
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
