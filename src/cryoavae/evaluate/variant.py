"""One model variant's evaluation, from the files its training and embedding wrote."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae.affinity.io import read_affinity_csv
from cryoavae.core.errors import InputError
from cryoavae.evaluate.evaluation import EvaluationConfig, EvaluationResult, evaluate_latents

#: Training figures copied into ``metrics.json`` from ``train_summary.json``.
TRAINING_KEYS = ("train_seconds", "train_samples_per_second", "device")
OPTIONAL_KEYS = ("cpu_model", "threads")  # summaries written before they were recorded lack them


def evaluate_variant(
    latents: pd.DataFrame,
    affinity_path: str | os.PathLike,
    train_summary_path: str | os.PathLike,
    class_names: Sequence[str],
    config: EvaluationConfig,
    seed: int,
    umap_cache_dir: str | None = None,
    symmetry: dict[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """:func:`evaluate_latents` on a variant's latents table against the study's prior (its
    ``affinity.csv``), with the training time, device, CPU and threads of its
    ``train_summary.json`` added to the metrics."""
    summary_path = Path(train_summary_path)
    try:
        training = json.loads(summary_path.read_text())
        ndim = int(training["ndim"])
        extra = {key: training[key] for key in TRAINING_KEYS}
        extra.update({key: training[key] for key in OPTIONAL_KEYS if key in training})
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{summary_path}: not a training summary ({exc!r})") from None
    result = evaluate_latents(
        latents,
        class_names,
        read_affinity_csv(affinity_path, class_names),
        config,
        seed=seed,
        ndim=ndim,
        umap_cache_dir=umap_cache_dir,
        symmetry=symmetry,
    )
    return dataclasses.replace(result, metrics={**result.metrics, **extra})
