"""Evaluation outputs on disk: ``metrics.json`` and the confusion matrix as a long CSV."""

from __future__ import annotations

import json
import math
import os
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from cryoavae.core.atomic import atomic_path, write_text_atomic

if TYPE_CHECKING:  # evaluation imports this module
    from cryoavae.evaluate.evaluation import EvaluationResult


def _json_ready(value):
    """numpy scalars and arrays to Python, NaN and infinities to None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        return float(value) if math.isfinite(value) else None
    return value


def write_metrics_json(path: str | os.PathLike, metrics: dict) -> None:
    """Write ``metrics`` as indented JSON, atomically (NaN becomes null)."""
    write_text_atomic(path, json.dumps(_json_ready(metrics), indent=2, allow_nan=False) + "\n")


def write_confusion_csv(path: str | os.PathLike, result: EvaluationResult) -> None:
    """Confusion matrix of the val particles as a long CSV, atomically.

    Columns: ``true_class``, ``predicted_class``, ``count``, ``fraction_of_true`` (count divided
    by the true class's val particles, i.e. the row-normalised matrix; 0 for an empty row). One
    row per (true, predicted) pair of seen classes, in class-list order; pivot for a matrix.
    """
    counts = np.asarray(result.confusion_counts)
    fractions = confusion_fractions(result)
    classes = list(result.seen_classes)
    table = pd.DataFrame(
        {
            "true_class": np.repeat(classes, len(classes)),
            "predicted_class": np.tile(classes, len(classes)),
            "count": counts.reshape(-1),
            "fraction_of_true": fractions.reshape(-1),
        }
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def confusion_fractions(result: EvaluationResult) -> np.ndarray:
    """Row-normalised confusion matrix ``(n_seen, n_seen)``: each row sums to 1 (0 if empty)."""
    counts = np.asarray(result.confusion_counts, dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    return counts / np.where(totals > 0, totals, 1)


def write_umap_table(path: str | os.PathLike, latents: pd.DataFrame, result: EvaluationResult):
    """Every particle's UMAP position (``image``, ``umap_x``, ``umap_y``, in latents order) as
    TSV, atomically, for the annotated STAR and the interactive page."""
    if result.umap_xy is None:
        raise ValueError("write_umap_table: the evaluation was run without UMAP")
    table = pd.DataFrame(
        {
            "image": latents["image"].astype(str).to_numpy(),
            "umap_x": result.umap_xy[:, 0],
            "umap_y": result.umap_xy[:, 1],
        }
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
