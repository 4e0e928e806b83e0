"""One model variant's evaluation, from the files its training and embedding wrote."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from pathlib import Path

from ..affinity.io import read_affinity_csv
from ..errors import InputError
from ..latents import read_latents
from .evaluation import EvaluationConfig, EvaluationResult, evaluate_latents

#: Training figures copied into ``metrics.json`` from ``train_summary.json``.
TRAINING_KEYS = ("train_seconds", "train_samples_per_second", "device")


def evaluate_variant(
    latents_path: str | os.PathLike,
    affinity_path: str | os.PathLike,
    train_summary_path: str | os.PathLike,
    class_names: Sequence[str],
    config: EvaluationConfig,
    seed: int,
) -> EvaluationResult:
    """:func:`evaluate_latents` on a variant's ``latents.tsv`` against the study's prior, with
    the training time and device of ``train_summary.json`` added to the metrics."""
    summary_path = Path(train_summary_path)
    try:
        training = json.loads(summary_path.read_text())
        ndim = int(training["ndim"])
        extra = {key: training[key] for key in TRAINING_KEYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{summary_path}: not a training summary ({exc!r})") from None
    result = evaluate_latents(
        read_latents(latents_path),
        class_names,
        read_affinity_csv(affinity_path, class_names),
        config,
        seed=seed,
        ndim=ndim,
    )
    return dataclasses.replace(result, metrics={**result.metrics, **extra})
