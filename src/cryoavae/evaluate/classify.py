"""How well mu separates the seen classes: a classifier read-out and the cosine silhouette."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    silhouette_score,
)
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cryoavae.core.errors import InputError
from cryoavae.evaluate.projection import WORKING_MEMORY_MB

# Silhouette is O(n^2) in memory and time; above this many particles it is estimated on a seeded
# subsample (sklearn's sample_size), which changes it by far less than its run-to-run spread.
SILHOUETTE_MAX_POINTS = 5000


def _make_classifier(config, seed: int):
    if config.classifier == "logistic_regression":
        model = LogisticRegression(max_iter=2000)
    elif config.classifier == "knn":
        model = KNeighborsClassifier(n_neighbors=config.knn_neighbors)
    else:
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=seed)
    return make_pipeline(StandardScaler(), model)


def classification(x_train, y_train, x_val, y_val, labels, config, seed):
    """Classifier on train mu, scored on val; confusion counts ``(n_seen, n_seen)``."""
    if config.classifier == "knn" and len(x_train) < config.knn_neighbors:
        raise InputError(
            f"config evaluation.knn_neighbors: got {config.knn_neighbors}, "
            f"but only {len(x_train)} train particles"
        )
    model = _make_classifier(config, seed).fit(x_train, y_train)
    predicted = model.predict(x_val)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_val, predicted, labels=labels, zero_division=0
    )
    scored = [c for c in labels if c in set(y_val) | set(predicted)]
    per_class = {
        c: {
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
        for i, c in enumerate(labels)
    }
    metrics = {
        "accuracy": float(accuracy_score(y_val, predicted)),
        # Over the classes that occur among the val particles or their predictions: a seen class
        # with no val particles would otherwise count as an F1 of 0.
        "macro_f1": float(f1_score(y_val, predicted, labels=scored, average="macro")),
        "per_class": per_class,
    }
    return metrics, confusion_matrix(y_val, predicted, labels=labels)


def assigned_class_metrics(
    table: pd.DataFrame, scored_split: str, labels, by_template: bool
) -> dict:
    """How often the class written to the annotated tables (``table``'s ``nearest_seen``,
    :func:`~cryoavae.inference.latents.assign_nearest_class`) is its ``class_name``, over the
    rows of ``scored_split``: ``assigned_accuracy`` and ``assigned_macro_f1`` (over the classes
    that occur, as :func:`classification` counts), and ``assigned_by``: ``template`` (the
    matched template's class) or ``centroid`` (the nearest centroid's). The classifier's scores
    say how well mu separates the classes; these, what a user's STAR file gets. None without
    scored rows."""
    rows = table["split"].astype(str).to_numpy() == scored_split
    truth = table["class_name"].astype(str).to_numpy()[rows]
    assigned = table["nearest_seen"].astype(str).to_numpy()[rows]
    by = "template" if by_template else "centroid"
    if len(truth) == 0:
        return {"assigned_accuracy": None, "assigned_macro_f1": None, "assigned_by": by}
    scored = [c for c in labels if c in set(truth) | set(assigned)]
    return {
        "assigned_accuracy": float(np.mean(truth == assigned)),
        "assigned_macro_f1": float(
            f1_score(truth, assigned, labels=scored, average="macro", zero_division=0)
        ),
        "assigned_by": by,
    }


def cosine_silhouette(mu: np.ndarray, names: np.ndarray, seed: int) -> float | None:
    """Cosine silhouette in [-1, 1]; None when fewer than two classes (or too few points)."""
    n_labels = len(np.unique(names))
    if not 2 <= n_labels <= len(names) - 1:
        return None
    sample = SILHOUETTE_MAX_POINTS if len(names) > SILHOUETTE_MAX_POINTS else None
    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        return float(
            silhouette_score(mu, names, metric="cosine", sample_size=sample, random_state=seed)
        )
