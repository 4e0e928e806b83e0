"""What training reads, checked before its first step, and where the splits are kept.

The checks (:func:`check_inputs`, :func:`select_splits`, :func:`check_augmentation`) raise
InputError on the first problem, so a launcher can make them before it starts any process;
:func:`place_splits` holds the train and val particles on the device or reads them per batch
(:mod:`cryoavae.particles.batches`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryoavae.core.errors import InputError
from cryoavae.model.config import ModelConfig
from cryoavae.particles import DEFOCUS, ParticleImages, defocus_um
from cryoavae.particles.batches import (
    ResidentBatches,
    Split,
    StreamedBatches,
    batch_source,
    keep_on_device,
    select_split,
    value_range,
)
from cryoavae.train.config import TrainingConfig


def check_inputs(
    table: pd.DataFrame,
    images: ParticleImages,
    affinity: np.ndarray,
    model_config: ModelConfig,
    class_names: list[str],
) -> None:
    """InputError when the images, model and affinity do not fit together."""
    box_shape = tuple(images.shape[1:])
    expected = (model_config.box_size_px,) * model_config.ndim
    if box_shape != expected:
        raise InputError(
            f"particle images are {box_shape} but model.ndim = {model_config.ndim}, "
            f"box_size_px = {model_config.box_size_px} expect {expected}"
        )
    if affinity.ndim != 2 or affinity.shape[0] != affinity.shape[1]:
        raise InputError(f"affinity matrix has shape {affinity.shape}; expected square")
    if len(class_names) > affinity.shape[0]:
        raise InputError(
            f"particle table has class numbers up to {len(class_names)} but the affinity matrix "
            f"covers {affinity.shape[0]} classes"
        )
    if model_config.measure_ctf:
        if not (defocus_um(table) > 0).all():  # NaN (missing, not a number) fails too
            raise InputError(
                f"particle table: model.measure_ctf needs each particle's defocus ({DEFOCUS} "
                "> 0 Å in every row)"
            )
    if len(images) != len(table):
        raise ValueError(f"images index {len(images)} particles, table has {len(table)}")


def check_augmentation(config: TrainingConfig, model_config: ModelConfig) -> None:
    """InputError for an augmentation the particles' dimension does not allow."""
    if config.augment == "wedge_turns" and model_config.ndim != 3:
        raise InputError(
            "training.augment = 'wedge_turns' turns subtomograms about x, y and z; use 'none' "
            "for 2-D images"
        )


def select_splits(
    table: pd.DataFrame, images: ParticleImages, config: TrainingConfig
) -> tuple[Split, Split]:
    """Train and val rows; ``unseen`` rows are never read."""
    train, val = select_split(table, "train"), select_split(table, "val")
    if len(train) == 0:
        raise InputError("particle table has no rows with cryoavaeSplit = 'train'")
    if config.reconstruction_loss == "bce":
        low, high = value_range(images, train.rows)
        if low < 0 or high > 1:
            raise InputError(
                f"training.reconstruction_loss = 'bce' needs images in [0, 1]; these span "
                f"[{low:.3g}, {high:.3g}] (use 'mse' for normalised particles)"
            )
    return train, val


def place_splits(
    table: pd.DataFrame,
    images: ParticleImages,
    config: TrainingConfig,
    device: torch.device,
    resident: bool | None,
) -> tuple[ResidentBatches | StreamedBatches, ResidentBatches | StreamedBatches]:
    """The train and val batches, both held on the device or both read from the stacks."""
    train_split, val_split = select_splits(table, images, config)
    if resident is None:  # one decision for both splits, which share the device's memory
        resident = keep_on_device((len(train_split) + len(val_split)) * images.item_bytes, device)
    train = batch_source(images, train_split, device, resident)
    val = batch_source(images, val_split, device, resident)
    return train, val
