"""What a trained model's latent space says: classes, cluster separation, pose, prior, open set.

Input is the latents table that ``embed_particles`` writes, one row per particle:
``image``, ``class_name``, ``class_number``, ``split`` (``train``/``val``/``unseen``),
``angle_rot``, ``angle_tilt``, ``angle_psi`` (RELION ZYZ, degrees; 2-D data uses ``angle_psi``
only), ``mu_0..mu_{k-1}`` and ``pose_0..pose_{p-1}`` (``p`` may be 0).

One rule throughout: whatever is fitted (classifier, class centroids, pose maps) is fitted on the
``train`` particles and scored on the held-out ``val`` particles of the seen classes and on the
``unseen`` particles, so no number is flattered by the particles the encoder was trained on.
Seen classes are those with ``train`` particles; unseen classes are those with ``unseen`` ones.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
    silhouette_score,
)
from sklearn.neighbors import KNeighborsClassifier, NearestNeighbors
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from .atomic import atomic_path, write_text_atomic
from .errors import InputError

__all__ = [
    "CLASSIFIERS",
    "EvaluationConfig",
    "EvaluationResult",
    "assign_nearest_class",
    "class_centroids",
    "class_cosine_matrix",
    "confusion_fractions",
    "evaluate_latents",
    "latent_columns",
    "rotation_matrices",
    "write_confusion_csv",
    "write_metrics_json",
]

log = logging.getLogger(__name__)

CLASSIFIERS = ("logistic_regression", "knn", "mlp")
CONFIG_SECTION = "evaluation"
REQUIRED_COLUMNS = ("class_name", "split", "angle_rot", "angle_tilt", "angle_psi")
SPLITS = ("train", "val", "unseen")
# Silhouette is O(n^2) in memory and time; above this many particles it is estimated on a seeded
# subsample (sklearn's sample_size), which changes it by far less than its run-to-run spread.
SILHOUETTE_MAX_POINTS = 5000
# Median geodesic angle between a fixed rotation and uniformly random ones, the error of a pose
# that carries no orientation at all: the angle's CDF is (t - sin t) / pi, so t - sin t = pi / 2.
RANDOM_ROTATION_MEDIAN_ERROR_DEG = 132.35


@dataclass(frozen=True)
class EvaluationConfig:
    """The ``evaluation`` section of the study config (defaults match the schema).

    ``classifier``: read-out trained on the training particles' mu, each after a StandardScaler:
    ``"logistic_regression"`` (default; linear, so it measures linear separability),
    ``"knn"`` (``knn_neighbors`` neighbours; flatters a plain beta-VAE) or ``"mlp"``.
    ``umap_n_neighbors``, ``umap_min_dist``: umap-learn's parameters for the 2-D map of mu.
    """

    classifier: str = "logistic_regression"
    umap_n_neighbors: int = 15
    umap_min_dist: float = 0.1
    knn_neighbors: int = 5

    def __post_init__(self):
        if self.classifier not in CLASSIFIERS:
            raise InputError(
                f"config {CONFIG_SECTION}.classifier: got {self.classifier!r}; "
                f"expected one of {list(CLASSIFIERS)}"
            )
        _check_int(self.umap_n_neighbors, "umap_n_neighbors", 2, 200)
        _check_int(self.knn_neighbors, "knn_neighbors", 1, 100)
        if not 0.0 <= float(self.umap_min_dist) <= 1.0:
            raise InputError(
                f"config {CONFIG_SECTION}.umap_min_dist: got {self.umap_min_dist!r}; "
                "expected a number in [0, 1]"
            )


def _check_int(value, key: str, low: int, high: int) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not low <= value <= high
    ):
        raise InputError(
            f"config {CONFIG_SECTION}.{key}: got {value!r}; expected an integer in [{low}, {high}]"
        )


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics (JSON-ready) and the arrays the figures draw.

    - ``metrics``: see :func:`evaluate_latents`.
    - ``seen_classes``, ``unseen_classes``: in the order of the study's class list.
    - ``confusion_counts``: ``(n_seen, n_seen)`` int, rows = true class, columns = predicted
      class, over the val particles, indexed like ``seen_classes``.
    - ``umap_xy``: ``(n, 2)`` UMAP coordinates of every particle's mu (None if not asked for);
      ``umap_class``,
      ``umap_split``: ``(n,)`` the particles' class names and splits.
    - ``class_cosine``, ``class_affinity``: ``(c, c)`` DataFrames over seen then unseen classes:
      mean pairwise cosine of mu between the classes' particles, and the prior affinity.
    - ``pose_table``: one row per scored val particle (2-D: ``class_name``, ``true_angle_deg``,
      ``pose_feature``, ``predicted_angle_deg``, ``error_deg``; 3-D: ``class_name``,
      ``error_deg``, ``true_r00..true_r22``, ``predicted_r00..predicted_r22``); None without pose.
    - ``novelty``: val and unseen particles with ``nearest_seen``, ``nearest_cosine`` and
      ``novelty`` (cosine distance to the nearest seen-class centroid).
    """

    metrics: dict
    ndim: int
    seen_classes: tuple[str, ...]
    unseen_classes: tuple[str, ...]
    confusion_counts: np.ndarray
    umap_xy: np.ndarray | None
    umap_class: np.ndarray
    umap_split: np.ndarray
    class_cosine: pd.DataFrame
    class_affinity: pd.DataFrame
    pose_table: pd.DataFrame | None
    novelty: pd.DataFrame


def latent_columns(latents: pd.DataFrame, prefix: str) -> list[str]:
    """Columns ``{prefix}_0, {prefix}_1, ...`` in index order (``mu_10`` after ``mu_9``)."""
    found = {}
    for column in latents.columns:
        head, _, index = str(column).rpartition("_")
        if head == prefix and index.isdigit():
            found[int(index)] = column
    if sorted(found) != list(range(len(found))):
        raise InputError(f"latents table: columns {prefix}_* are not numbered 0..n-1: {found}")
    return [found[i] for i in range(len(found))]


def evaluate_latents(
    latents: pd.DataFrame,
    class_names: Sequence[str],
    affinity: np.ndarray,
    config: EvaluationConfig,
    seed: int,
    ndim: int,
    embed_umap: bool = True,
) -> EvaluationResult:
    """Every metric of ``metrics.json`` and the arrays behind the figures.

    ``affinity`` is ``(n_classes, n_classes)`` indexed like ``class_names`` (the study's full class
    list, unseen classes included). ``ndim`` is 2 for images, 3 for subtomograms.
    ``embed_umap=False`` skips the UMAP (``umap_xy`` is None) when only the numbers are wanted.

    Keys of ``metrics``:

    - ``classifier``, ``accuracy``, ``macro_f1``, ``per_class`` (``{class: {precision, recall,
      f1, support}}``): classifier on train mu, scored on val.
    - ``silhouette``: cosine silhouette of the val particles' mu by class (seen classes only).
    - ``pose_correlation``, ``pose_correlation_per_class``, ``pose_predictor_per_class``,
      ``pose_angle_median_error_deg``, ``pose_metric_description``: see the description string.
    - ``prior_correlation`` (Pearson r), ``prior_correlation_spearman``, ``prior_mean_abs_error``:
      over pairs of distinct seen classes, the val particles' mean pairwise cosine of mu against
      the affinity (the quantity the affinity loss pulls towards the prior).
    - ``unseen``: ``{class: {nearest_seen, nearest_seen_cosine, highest_affinity_seen,
      highest_affinity, affinity_rank_of_nearest, match}}``, nearest by cosine between the unseen
      class's centroid and the seen classes' training centroids (centroid = mean unit mu); a tie
      for the highest affinity counts as a match; ``unseen_match_fraction``.
    - ``novelty_auroc``: AUROC of the novelty score (cosine distance to the nearest seen training
      centroid) for unseen versus seen val particles; 0.5 = indistinguishable; None without unseen.
    - ``n_train``, ``n_val``, ``n_unseen``, ``latent_dim``, ``pose_dim``.

    Raises:
        InputError: a missing column, a class not in ``class_names``, a split other than
            train/val/unseen, an affinity of the wrong shape, fewer than two seen classes or no
            val particles.
    """
    class_names = [str(c) for c in class_names]
    affinity = np.asarray(affinity, dtype=np.float64)
    mu_cols, pose_cols = _check_latents(latents, class_names, affinity, ndim)
    names = latents["class_name"].astype(str).to_numpy()
    split = latents["split"].astype(str).to_numpy()
    mu = latents[mu_cols].to_numpy(np.float64)  # (n, k)
    pose = latents[pose_cols].to_numpy(np.float64)  # (n, p)
    train, val, unseen = (split == s for s in SPLITS)
    present_seen = set(names[train])
    present_unseen = set(names[unseen])
    seen = [c for c in class_names if c in present_seen]
    unseen_classes = [c for c in class_names if c in present_unseen]
    index = {c: i for i, c in enumerate(class_names)}

    metrics: dict = {"classifier": config.classifier}
    cls_metrics, counts = _classification(
        mu[train], names[train], mu[val], names[val], seen, config, seed
    )
    metrics.update(cls_metrics)
    metrics["silhouette"] = _cosine_silhouette(mu[val], names[val], seed)

    pose_metrics, pose_table = _pose_metrics(latents, pose, names, train, val, seen, ndim)
    metrics.update(pose_metrics)

    # Class structure of the latent space: val particles for seen classes, unseen particles for
    # unseen ones; both against the prior.
    shown = seen + unseen_classes
    scored = val | unseen
    cosine = class_cosine_matrix(mu[scored], names[scored], shown)
    ids = [index[c] for c in shown]
    prior = affinity[np.ix_(ids, ids)]
    metrics.update(
        _prior_agreement(cosine[: len(seen), : len(seen)], prior[: len(seen), : len(seen)])
    )

    centroids = class_centroids(mu[train], names[train], seen)
    unseen_report, match_fraction = _unseen_neighbours(
        mu[unseen], names[unseen], unseen_classes, centroids, seen, affinity, index
    )
    metrics["unseen"] = unseen_report
    metrics["unseen_match_fraction"] = match_fraction
    novelty = assign_nearest_class(mu[scored], centroids, seen)
    novelty.insert(0, "split", split[scored])
    novelty.insert(0, "class_name", names[scored])
    if "image" in latents.columns:
        novelty.insert(0, "image", latents["image"].to_numpy()[scored])
    is_unseen = (novelty["split"] == "unseen").to_numpy()
    metrics["novelty_auroc"] = (
        float(roc_auc_score(is_unseen, novelty["novelty"]))
        if 0 < is_unseen.sum() < len(is_unseen)
        else None
    )
    metrics.update(
        n_train=int(train.sum()),
        n_val=int(val.sum()),
        n_unseen=int(unseen.sum()),
        latent_dim=len(mu_cols),
        pose_dim=len(pose_cols),
    )

    log.info(
        "%s on %d train / %d val particles: accuracy %.3f, macro-F1 %.3f; silhouette %s; "
        "pose correlation %s; prior correlation %s; novelty AUROC %s",
        config.classifier,
        metrics["n_train"],
        metrics["n_val"],
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["silhouette"],
        metrics["pose_correlation"],
        metrics["prior_correlation"],
        metrics["novelty_auroc"],
    )
    for name, report in unseen_report.items():
        log.info(
            "unseen %s: nearest seen %s, highest-affinity seen %s",
            name,
            report["nearest_seen"],
            report["highest_affinity_seen"],
        )
    umap_xy = None
    if embed_umap:
        start = time.perf_counter()
        umap_xy = _umap(mu, config, seed)
        log.info("UMAP of %d particles: %.1f s", len(mu), time.perf_counter() - start)
    return EvaluationResult(
        metrics=metrics,
        ndim=ndim,
        seen_classes=tuple(seen),
        unseen_classes=tuple(unseen_classes),
        confusion_counts=counts,
        umap_xy=umap_xy,
        umap_class=names,
        umap_split=split,
        class_cosine=pd.DataFrame(cosine, index=shown, columns=shown),
        class_affinity=pd.DataFrame(prior, index=shown, columns=shown),
        pose_table=pose_table,
        novelty=novelty.reset_index(drop=True),
    )


def _check_latents(latents, class_names, affinity, ndim) -> tuple[list[str], list[str]]:
    missing = [c for c in REQUIRED_COLUMNS if c not in latents.columns]
    if missing:
        raise InputError(f"latents table: missing columns {missing}")
    if ndim not in (2, 3):
        raise InputError(f"evaluate_latents: ndim must be 2 or 3, got {ndim!r}")
    mu_cols = latent_columns(latents, "mu")
    if not mu_cols:
        raise InputError("latents table: no mu_0..mu_{k-1} columns")
    pose_cols = latent_columns(latents, "pose")
    n = len(class_names)
    if affinity.shape != (n, n):
        raise InputError(
            f"affinity: shape {affinity.shape} does not match the {n} classes {class_names}"
        )
    unknown = sorted(set(latents["class_name"].astype(str)) - set(class_names))
    if unknown:
        raise InputError(
            f"latents table: class_name {unknown} not in the study's classes {class_names}"
        )
    splits = latents["split"].astype(str)
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise InputError(f"latents table: split {bad}; expected one of {list(SPLITS)}")
    names = latents["class_name"].astype(str)
    seen = set(names[splits == "train"])
    if len(seen) < 2:
        raise InputError(
            f"latents table: {len(seen)} class(es) with train particles; need two or more"
        )
    if not (splits == "val").any():
        raise InputError("latents table: no val particles to score on")
    orphan = sorted(set(names[splits == "val"]) - seen)
    if orphan:
        raise InputError(f"latents table: val classes {orphan} have no train particles")
    both = sorted(set(names[splits == "unseen"]) & seen)
    if both:
        raise InputError(f"latents table: classes {both} are in both the train and unseen splits")
    values = latents[mu_cols + pose_cols].to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise InputError("latents table: mu/pose columns hold NaN or infinite values")
    return mu_cols, pose_cols


# --- classification and clusters -------------------------------------------------------------


def _make_classifier(config: EvaluationConfig, seed: int):
    if config.classifier == "logistic_regression":
        model = LogisticRegression(max_iter=2000)
    elif config.classifier == "knn":
        model = KNeighborsClassifier(n_neighbors=config.knn_neighbors)
    else:
        model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=1000, random_state=seed)
    return make_pipeline(StandardScaler(), model)


def _classification(x_train, y_train, x_val, y_val, labels, config, seed):
    """Classifier on train mu, scored on val; confusion counts ``(n_seen, n_seen)``."""
    if config.classifier == "knn" and len(x_train) < config.knn_neighbors:
        raise InputError(
            f"config {CONFIG_SECTION}.knn_neighbors: got {config.knn_neighbors}, "
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


def _cosine_silhouette(mu: np.ndarray, names: np.ndarray, seed: int) -> float | None:
    """Cosine silhouette in [-1, 1]; None when fewer than two classes (or too few points)."""
    n_labels = len(np.unique(names))
    if not 2 <= n_labels <= len(names) - 1:
        return None
    sample = SILHOUETTE_MAX_POINTS if len(names) > SILHOUETTE_MAX_POINTS else None
    return float(
        silhouette_score(mu, names, metric="cosine", sample_size=sample, random_state=seed)
    )


def _unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; a zero row stays zero (it has no direction)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def class_cosine_matrix(mu: np.ndarray, names: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Mean pairwise cosine of mu between the particles of every two classes, ``(c, c)``.

    Equals the dot product of the classes' mean unit vectors; the diagonal includes self-pairs.
    A class with no particles gets NaN.
    """
    u = _unit(np.asarray(mu, dtype=np.float64))
    means = _class_means(u, np.asarray(names), classes)
    return means @ means.T


def class_centroids(mu: np.ndarray, names: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """Each class's centroid direction ``(c, k)``: the normalised mean of its unit mu vectors."""
    u = _unit(np.asarray(mu, dtype=np.float64))
    return _unit(_class_means(u, np.asarray(names), classes))


def _class_means(x: np.ndarray, names: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    ids = np.array([lookup.get(n, -1) for n in names], dtype=np.int64)
    keep = ids >= 0
    sums = np.zeros((len(classes), x.shape[1]))
    np.add.at(sums, ids[keep], x[keep])
    counts = np.bincount(ids[keep], minlength=len(classes)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / counts[:, None]


def assign_nearest_class(
    mu: np.ndarray, centroids: np.ndarray, centroid_names: Sequence[str]
) -> pd.DataFrame:
    """Nearest class by cosine to ``centroids`` ``(c, k)`` for particles ``mu`` ``(n, k)``.

    Returns columns ``nearest_seen``, ``nearest_cosine`` and ``novelty`` = 1 - nearest_cosine
    (0 on a centroid's direction, up to 2 opposite every centroid): the open-set score for
    particles the model has never seen.
    """
    cos = _unit(np.asarray(mu, dtype=np.float64)) @ np.asarray(centroids).T  # (n, c)
    best = np.argmax(cos, axis=1)
    nearest_cos = cos[np.arange(len(cos)), best]
    return pd.DataFrame(
        {
            "nearest_seen": np.asarray(list(centroid_names), dtype=object)[best],
            "nearest_cosine": nearest_cos,
            "novelty": 1.0 - nearest_cos,
        }
    )


def _unseen_neighbours(mu, names, unseen_classes, centroids, seen, affinity, index):
    """Per unseen class: the nearest seen class by centroid cosine and the highest-affinity one."""
    if not unseen_classes:
        return {}, None
    unseen_centroids = class_centroids(mu, names, unseen_classes)
    cos = unseen_centroids @ centroids.T  # (u, s)
    seen_ids = [index[c] for c in seen]
    report = {}
    for row, name in enumerate(unseen_classes):
        nearest = int(np.argmax(cos[row]))
        prior = affinity[index[name], seen_ids]
        top = int(np.argmax(prior))
        rank = int(1 + np.sum(prior > prior[nearest]))
        report[name] = {
            "nearest_seen": seen[nearest],
            "nearest_seen_cosine": float(cos[row, nearest]),
            "highest_affinity_seen": seen[top],
            "highest_affinity": float(prior[top]),
            "affinity_rank_of_nearest": rank,
            "match": bool(rank == 1),
        }
    matches = [v["match"] for v in report.values()]
    return report, float(np.mean(matches))


def _prior_agreement(cosine: np.ndarray, prior: np.ndarray) -> dict:
    """Correlation of latent class cosine with the prior over pairs of distinct seen classes."""
    upper = np.triu_indices(len(prior), k=1)
    x, y = prior[upper], cosine[upper]
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    out = {
        "prior_correlation": None,
        "prior_correlation_spearman": None,
        "prior_mean_abs_error": None,
    }
    if len(x) >= 1:
        out["prior_mean_abs_error"] = float(np.mean(np.abs(y - x)))
    if len(x) >= 3 and np.ptp(x) > 0 and np.ptp(y) > 0:
        out["prior_correlation"] = float(stats.pearsonr(x, y)[0])
        out["prior_correlation_spearman"] = float(stats.spearmanr(x, y)[0])
    return out


# --- pose --------------------------------------------------------------------------------------

POSE_2D_DESCRIPTION = (
    "2-D: for each seen class, the pose feature that best recovers the in-plane angle "
    "(angle_psi) of that class's training particles is chosen: a single pose dimension, mapped "
    "to the angle by a straight line, or, for each pair of pose dimensions, the angle "
    "atan2(pose_j, pose_i) up to sign and offset. On the class's val particles, "
    "pose_correlation_per_class is |Pearson r| between that dimension and the angle (or the "
    "|circular correlation| for an atan2 angle); pose_correlation is its mean over classes "
    "(1 = the pose tracks the angle exactly, 0 = no relation). pose_angle_median_error_deg is "
    "the median absolute angle error of the fitted map over all val particles (wrapped to "
    "180 degrees; rotational symmetry of a shape inflates it)."
)
POSE_3D_DESCRIPTION = (
    "3-D: for each seen class, a quadratic map from the pose vector to the 9 entries of the true "
    "rotation matrix (from the RELION ZYZ angles) is fitted by ridge regression on that class's "
    "training particles (quadratic so that a quaternion-like pose can be represented exactly). "
    "On its val particles, pose_correlation_per_class is the Pearson r between predicted and "
    "true entries, each entry centred on its own mean and all 9 pooled (centring keeps a "
    "prediction of the average orientation at 0 when orientations are limited to a range); "
    "pose_correlation is its mean over classes (1 = the pose "
    "determines the orientation, 0 = it carries none). pose_angle_median_error_deg is the median "
    "geodesic angle between the true rotation and the prediction projected onto SO(3), over all "
    f"val particles (a pose with no orientation information gives about "
    f"{RANDOM_ROTATION_MEDIAN_ERROR_DEG:.0f} degrees when orientations cover all of SO(3), "
    "less when simulation.rotation_range_deg limits them; symmetric molecules inflate it)."
)
NO_POSE_DESCRIPTION = "The model has no pose dimensions: pose metrics are not defined."
# Fewest particles of a class, per split, for its pose map to be fitted and scored.
MIN_POSE_PARTICLES = 3


def _pose_metrics(latents, pose, names, train, val, seen, ndim):
    empty = {
        "pose_correlation": None,
        "pose_correlation_per_class": {},
        "pose_predictor_per_class": {},
        "pose_angle_median_error_deg": None,
        "pose_metric_description": NO_POSE_DESCRIPTION,
    }
    if pose.shape[1] == 0:
        return empty, None
    if ndim == 2:
        truth = latents["angle_psi"].to_numpy(np.float64)  # (n,) degrees
        fit, description = _pose_2d_class, POSE_2D_DESCRIPTION
    else:
        angles = latents[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy(np.float64)
        truth = rotation_matrices(angles).reshape(-1, 9)  # (n, 9)
        fit, description = _pose_3d_class, POSE_3D_DESCRIPTION
    per_class, predictor, tables = {}, {}, []
    for c in seen:
        tr, va = train & (names == c), val & (names == c)
        if tr.sum() < MIN_POSE_PARTICLES or va.sum() < MIN_POSE_PARTICLES:
            continue
        score, label, table = fit(pose[tr], truth[tr], pose[va], truth[va])
        per_class[c], predictor[c] = score, label
        table.insert(0, "class_name", c)
        tables.append(table)
    if not tables:
        return {**empty, "pose_metric_description": description}, None
    table = pd.concat(tables, ignore_index=True)
    metrics = {
        "pose_correlation": float(np.mean(list(per_class.values()))),
        "pose_correlation_per_class": per_class,
        "pose_predictor_per_class": predictor,
        "pose_angle_median_error_deg": float(np.median(np.abs(table["error_deg"]))),
        "pose_metric_description": description,
    }
    return metrics, table


def _wrap_deg(x):
    """Angles wrapped to [-180, 180) degrees."""
    return (np.asarray(x) + 180.0) % 360.0 - 180.0


def _pearson_columns(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``x`` ``(n, m)`` with ``y`` ``(n,)``; 0 where undefined."""
    xc, yc = x - x.mean(0), y - y.mean()
    denom = np.sqrt((xc**2).sum(0) * (yc**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc[:, None]).sum(0) / denom
    return np.where(denom > 0, r, 0.0)


def _circular_correlation(a_deg: np.ndarray, b_deg: np.ndarray) -> np.ndarray:
    """Jammalamadaka-SenGupta circular correlation of angle columns ``a`` ``(n, m)`` with ``b``.

    The circular analogue of Pearson r: +1 for b = a + const, -1 for b = -a + const.
    """
    a, b = np.radians(a_deg), np.radians(b_deg)
    sa = np.sin(a - stats.circmean(a, high=np.pi, low=-np.pi, axis=0))
    sb = np.sin(b - stats.circmean(b, high=np.pi, low=-np.pi))
    denom = np.sqrt((sa**2).sum(0) * (sb**2).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (sa * sb[:, None]).sum(0) / denom
    return np.where(denom > 0, r, 0.0)


def _pose_2d_class(pose_tr, angle_tr, pose_va, angle_va):
    """Choose and fit the angle predictor on train; score it on val (see POSE_2D_DESCRIPTION).

    Candidates, all evaluated at once as columns of ``(n, m)`` arrays: each single pose dimension
    (map: least-squares line) and each pair's angle atan2(pose_j, pose_i) (map: sign and offset).
    The candidate with the smallest median training error wins.
    """
    p = pose_tr.shape[1]
    pairs = [(i, j) for i in range(p) for j in range(i + 1, p)]
    labels = [f"pose_{i}" for i in range(p)] + [f"atan2(pose_{j}, pose_{i})" for i, j in pairs]

    def features(pose):  # (n, p) -> (n, p + n_pairs): dimensions, then pair angles in degrees
        angles = [np.degrees(np.arctan2(pose[:, j], pose[:, i])) for i, j in pairs]
        return np.concatenate([pose, np.stack(angles, 1)], 1) if angles else pose

    x_tr, x_va = features(pose_tr), features(pose_va)
    is_angle = np.arange(x_tr.shape[1]) >= p
    # Line for single dimensions: angle = slope * x + intercept.
    xc = x_tr - x_tr.mean(0)
    var = (xc**2).sum(0)
    slope = (xc * (angle_tr - angle_tr.mean())[:, None]).sum(0) / np.where(var > 0, var, 1.0)
    intercept = angle_tr.mean() - slope * x_tr.mean(0)
    # Sign and offset for pair angles: angle = sign * phi + offset (mod 360), offset = the
    # circular mean of angle - sign * phi; the sign with the smaller median error wins.
    fits = []
    for sign in (1.0, -1.0):
        residual = np.radians(angle_tr[:, None] - sign * x_tr)
        offset = np.degrees(stats.circmean(residual, high=np.pi, low=-np.pi, axis=0))
        error = np.median(np.abs(_wrap_deg(angle_tr[:, None] - sign * x_tr - offset)), axis=0)
        fits.append((error, sign, offset))
    positive = fits[0][0] <= fits[1][0]
    slope = np.where(is_angle, np.where(positive, 1.0, -1.0), slope)
    intercept = np.where(is_angle, np.where(positive, fits[0][2], fits[1][2]), intercept)

    def predict(x):
        return _wrap_deg(x * slope + intercept)

    train_error = np.median(np.abs(_wrap_deg(predict(x_tr) - angle_tr[:, None])), axis=0)
    best = int(np.argmin(train_error))
    feature = x_va[:, best]
    correlate = _circular_correlation if is_angle[best] else _pearson_columns
    score = abs(float(correlate(feature[:, None], angle_va)[0]))
    predicted = predict(x_va)[:, best]
    table = pd.DataFrame(
        {
            "true_angle_deg": angle_va,
            "pose_feature": feature,
            "predicted_angle_deg": predicted,
            "error_deg": _wrap_deg(predicted - angle_va),
        }
    )
    return score, labels[best], table


def rotation_matrices(angles_deg: np.ndarray) -> np.ndarray:
    """RELION ZYZ Euler angles ``(n, 3)`` (rot, tilt, psi; degrees) to matrices ``(n, 3, 3)``.

    Returns the active rotation Rz(rot) Ry(tilt) Rz(psi); RELION's own matrix is its transpose.
    Either serves the pose metric, which is unchanged by a fixed linear change of the 9 entries.
    """
    from scipy.spatial.transform import Rotation

    return Rotation.from_euler(
        "ZYZ", np.asarray(angles_deg, dtype=np.float64), degrees=True
    ).as_matrix()


def _quadratic_features(z: np.ndarray) -> np.ndarray:
    """``[1, z_i, z_i z_j (i <= j)]`` for ``z`` ``(n, p)``: ``(n, 1 + p + p(p+1)/2)``."""
    i, j = np.triu_indices(z.shape[1])
    return np.concatenate([np.ones((len(z), 1)), z, z[:, i] * z[:, j]], axis=1)


def _project_to_rotation(m: np.ndarray) -> np.ndarray:
    """Nearest rotation matrices ``(n, 3, 3)`` to ``m`` ``(n, 3, 3)`` (SVD, det = +1)."""
    u, _, vt = np.linalg.svd(m)
    det = np.sign(np.linalg.det(u @ vt))
    u = u.copy()
    u[:, :, -1] *= det[:, None]
    return u @ vt


def _pooled_centred_correlation(predicted: np.ndarray, true: np.ndarray) -> float:
    """Pearson r of ``(n, m)`` predictions with the truth, each column centred on its own mean
    and the columns pooled; 0 where undefined."""
    p, t = predicted - predicted.mean(0), true - true.mean(0)
    denom = math.sqrt(float((p**2).sum() * (t**2).sum()))
    return float((p * t).sum() / denom) if denom > 0 else 0.0


def _pose_3d_class(pose_tr, rot_tr, pose_va, rot_va):
    """Quadratic ridge map pose -> rotation entries, fitted on train, scored on val."""
    mean, std = pose_tr.mean(0), pose_tr.std(0)
    std = np.where(std > 0, std, 1.0)
    f_tr = _quadratic_features((pose_tr - mean) / std)
    f_va = _quadratic_features((pose_va - mean) / std)
    ridge = 1e-4 * len(f_tr) * np.eye(f_tr.shape[1])
    ridge[0, 0] = 0.0  # leave the intercept free
    weights = np.linalg.solve(f_tr.T @ f_tr + ridge, f_tr.T @ rot_tr)  # (f, 9)
    predicted = f_va @ weights  # (m, 9)
    score = _pooled_centred_correlation(predicted, rot_va)
    projected = _project_to_rotation(predicted.reshape(-1, 3, 3))
    cos = (np.einsum("nij,nij->n", projected, rot_va.reshape(-1, 3, 3)) - 1.0) / 2.0
    error = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    entries = [f"r{i}{j}" for i in range(3) for j in range(3)]
    table = pd.concat(
        [
            pd.DataFrame({"error_deg": error}),
            pd.DataFrame(rot_va, columns=[f"true_{e}" for e in entries]),
            pd.DataFrame(predicted, columns=[f"predicted_{e}" for e in entries]),
        ],
        axis=1,
    )
    return score, f"quadratic map of {pose_tr.shape[1]} pose dims", table


# --- UMAP --------------------------------------------------------------------------------------


def _umap(mu: np.ndarray, config: EvaluationConfig, seed: int) -> np.ndarray:
    """2-D UMAP of mu ``(n, k)`` with the cosine metric -> ``(n, 2)``; seeded, single-threaded.

    The exact cosine neighbour graph comes from scikit-learn and is handed to umap-learn as
    ``precomputed_knn``: this skips umap's own neighbour search, whose numba JIT compile
    (pynndescent above 4,096 points) costs tens of seconds in every fresh process. umap-learn is
    imported here so that only this step pays its import and its remaining compile (seconds).
    """
    n = len(mu)
    if n < 4:
        return np.zeros((n, 2))
    import umap

    k = min(config.umap_n_neighbors, n - 1)
    distances, neighbours = (
        NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(mu).kneighbors(mu)
    )
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        min_dist=config.umap_min_dist,
        metric="cosine",
        random_state=seed,
        n_jobs=1,  # a seed forces one thread anyway; saying so avoids umap's warning
        precomputed_knn=(neighbours, np.maximum(distances, 0.0), None),
        init="spectral" if n > 10 else "random",
    )
    with warnings.catch_warnings():
        # Without a search index umap cannot transform() new data; we never ask it to.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return np.asarray(reducer.fit_transform(mu), dtype=np.float64)


# --- writers -----------------------------------------------------------------------------------


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
