"""What a trained model's latent space says: classes, cluster separation, pose, prior, open set.

Input is the latents table that ``embed_particles`` writes, one row per particle:
``image``, ``class_name``, ``class_number``, ``split`` (``train``/``val``/``test``/``unseen``),
``angle_rot``, ``angle_tilt``, ``angle_psi`` (RELION ZYZ, degrees; 2-D data uses ``angle_psi``
only), ``mu_0..mu_{k-1}`` and ``pose_0..pose_{p-1}`` (``p`` may be 0).

One rule throughout: whatever is fitted (classifier, class centroids, pose maps) is fitted on the
``train`` particles and scored on the held-out particles of the seen classes and on the ``unseen``
particles, so no number is flattered by the particles the encoder was trained on. The held-out
particles are the ``test`` split when the study has one (never used for any choice: ``val`` is
where settings, checkpoints and thresholds are chosen), else ``val``; ``metrics.json`` says which
(``scored_split``). Seen classes have ``train`` particles, unseen ones ``unseen`` particles, but
for junk: an extraction's false-positive boxes (class ``background``, split ``unseen``), scored
apart from them (:mod:`.open_set`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass, section_schema
from cryoavae.evaluate.classify import assigned_class_metrics, classification, cosine_silhouette
from cryoavae.evaluate.open_set import novelty_metrics
from cryoavae.evaluate.orientation import aligned_orientation_metrics
from cryoavae.evaluate.pose_correlation import pose_metrics
from cryoavae.evaluate.prior import prior_agreement, unseen_neighbours
from cryoavae.evaluate.projection import umap_projection
from cryoavae.inference.latents import (
    LATENT_COLUMNS,
    class_centroids,
    class_cosine_matrix,
    latent_columns,
    matched_classes,
)
from cryoavae.inference.novelty import NoveltyModel
from cryoavae.particles import SPLITS
from cryoavae.particles.picks import BACKGROUND_CLASS

log = logging.getLogger(__name__)

SECTION = "evaluation"
CLASSIFIERS = tuple(section_schema(SECTION)["properties"]["classifier"]["enum"])


class EvaluationConfig(section_dataclass(SECTION)):
    """The ``evaluation`` section of the study config, with the schema's defaults and bounds.

    ``classifier``: read-out trained on the training particles' mu, each after a StandardScaler:
    ``"logistic_regression"`` (default; linear, so it measures linear separability),
    ``"knn"`` (``knn_neighbors`` neighbours; flatters a plain beta-VAE) or ``"mlp"``.
    ``umap_n_neighbors``, ``umap_min_dist``: umap-learn's parameters for the 2-D map of mu.
    ``interpolation_steps``, ``interpolation_pose_classes``: see
    :func:`cryoavae.inference.interpolate.interpolate_latents`.
    """


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics (JSON-ready) and the arrays the figures draw.

    - ``metrics``: see :func:`evaluate_latents`.
    - ``seen_classes``, ``unseen_classes``: in the order of the study's class list.
    - ``confusion_counts``: ``(n_seen, n_seen)`` int, rows = true class, columns = predicted
      class, over the val particles, indexed like ``seen_classes``.
    - ``umap_xy``: ``(n, 2)`` UMAP coordinates of every particle's mu (None if not asked for);
      ``umap_class``, ``umap_split``: ``(n,)`` the particles' class names and splits.
    - ``class_cosine``, ``class_affinity``: ``(c, c)`` DataFrames over seen then unseen classes:
      mean pairwise cosine of mu between the classes' particles, and the prior affinity.
    - ``pose_table``: one row per scored val particle (2-D: ``class_name``, ``true_angle_deg``,
      ``pose_feature``, ``predicted_angle_deg``, ``error_deg``; 3-D: ``class_name``,
      ``error_deg``, ``true_r00..true_r22``, ``predicted_r00..predicted_r22``); None without pose.
    - ``orientation_errors``: 3-D, per scored seen particle, the error of the model's orientation
      (``inferred_*``; :func:`.orientation.aligned_orientation_metrics`), empty without them.
    - ``novelty``: held-out, unseen and junk particles with ``nearest_seen``,
      ``nearest_cosine``, ``novelty``, ``is_novel`` and every score
      (:func:`.open_set.novelty_metrics`); ``novelty_model``: the fitted novelty model
      (``novelty.json``).
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
    novelty_model: NoveltyModel
    orientation_errors: pd.DataFrame | None = None


def evaluate_latents(
    latents: pd.DataFrame,
    class_names: Sequence[str],
    affinity: np.ndarray,
    config: EvaluationConfig,
    seed: int,
    ndim: int,
    embed_umap: bool = True,
    umap_cache_dir: str | None = None,
    symmetry: dict[str, np.ndarray] | None = None,
) -> EvaluationResult:
    """Every metric of ``metrics.json`` and the arrays behind the figures.

    ``affinity`` is ``(n_classes, n_classes)`` indexed like ``class_names`` (the study's full class
    list, unseen classes included). ``ndim`` is 2 for images, 3 for subtomograms.
    ``embed_umap=False`` skips the UMAP (``umap_xy`` is None) when only the numbers are wanted;
    ``umap_cache_dir`` keeps its numba compilation for the next process
    (:func:`.projection.cache_umap_compilation`). ``symmetry``: classes' point groups placed in
    their maps' frames (:mod:`cryoavae.structures.symmetry`); else ``config.symmetry``'s groups
    in scipy's standard orientation.

    Keys of ``metrics``:

    - ``classifier``, ``accuracy``, ``macro_f1``, ``per_class`` (``{class: {precision, recall,
      f1, support}}``): classifier on train mu, scored on the held-out particles
      (``scored_split``: test when there are any, else val); ``assigned_*``: the class the
      annotated tables write, on the same particles (:func:`.classify.assigned_class_metrics`).
    - ``silhouette``: cosine silhouette of the held-out particles' mu by class (seen classes).
    - ``pose_correlation``, ``pose_correlation_per_class``, ``pose_predictor_per_class``,
      ``pose_angle_median_error_deg``, ``pose_metric_description``: see the description string.
    - ``prior_correlation`` (Pearson r), ``prior_correlation_spearman``, ``prior_mean_abs_error``:
      over pairs of distinct seen classes, the held-out particles' mean pairwise cosine of mu
      against the affinity (the quantity the affinity loss pulls towards the prior).
    - ``unseen``: ``{class: {nearest_seen, nearest_seen_cosine, highest_affinity_seen,
      highest_affinity, affinity_rank_of_nearest, match}}``, nearest by cosine between the unseen
      class's centroid and the seen classes' training centroids (centroid = mean unit mu); a tie
      for the highest affinity counts as a match; ``unseen_match_fraction``. A prior equal for
      every seen class (``affinity.source`` uniform or none) ranks none: highest, rank and match
      are None there, and the fraction counts only the classes it ranks.
    - ``novelty_auroc``: AUROC of the novelty score (``config.novelty_score``, fitted on the
      train particles) for unseen versus seen held-out particles; 0.5 = indistinguishable; None
      without unseen; with every score's, the threshold set on val, the fractions of unseen
      particles flagged and of held-out seen ones kept, and the same for junk
      (:func:`.open_set.novelty_metrics`: ``novelty_*``, ``n_junk``).
    - ``n_train``, ``n_val``, ``n_test``, ``n_unseen``, ``scored_split``, ``*_dim``.

    Raises:
        InputError: latents or an affinity that cannot be scored (see :func:`_check_latents`).
    """
    class_names = [str(c) for c in class_names]
    affinity = np.asarray(affinity, dtype=np.float64)
    mu_cols, pose_cols = _check_latents(latents, class_names, affinity, ndim)
    p = _particles(latents, class_names, mu_cols, pose_cols)
    read_outs, counts, pose_table, errors = _read_out_metrics(
        latents, p, config, seed, ndim, symmetry
    )
    shown, cosine, prior = _class_structure(p, affinity)
    seen = slice(len(p.seen))
    agreement = prior_agreement(cosine[seen, seen], prior[seen, seen])
    open_set, novelty, novelty_model = _open_set_metrics(latents, p, affinity, config)
    metrics = {"classifier": config.classifier, **read_outs, **agreement, **open_set, **p.sizes()}
    _log_metrics(metrics)
    umap_args = (config.umap_n_neighbors, config.umap_min_dist, seed, umap_cache_dir)
    umap_xy = umap_projection(p.mu, *umap_args, config.umap_max_points) if embed_umap else None
    return EvaluationResult(
        metrics=metrics,
        ndim=ndim,
        seen_classes=tuple(p.seen),
        unseen_classes=tuple(p.unseen_classes),
        confusion_counts=counts,
        umap_xy=umap_xy,
        umap_class=p.names,
        umap_split=p.split,
        class_cosine=pd.DataFrame(cosine, index=shown, columns=shown),
        class_affinity=pd.DataFrame(prior, index=shown, columns=shown),
        pose_table=pose_table,
        orientation_errors=errors,
        novelty=novelty.reset_index(drop=True),
        novelty_model=novelty_model,
    )


@dataclass(frozen=True)
class _Particles:
    """The latents table as arrays, with the split masks and class lists every metric shares."""

    names: np.ndarray  # (n,) class names
    split: np.ndarray  # (n,) train, val, test or unseen
    mu: np.ndarray  # (n, k)
    pose: np.ndarray  # (n, p)
    train: np.ndarray  # (n,) bool
    held_out: np.ndarray  # (n,) bool: the seen-class particles scored (see scored_split)
    scored_split: str  # test when the table has test particles, else val
    unseen: np.ndarray  # (n,) bool: particles of unseen classes (not junk)
    junk: np.ndarray  # (n,) bool: an extraction's false positives (background, unseen)
    seen: list[str]  # classes with train particles, in the study's order
    unseen_classes: list[str]  # classes with unseen particles, in the study's order
    index: dict[str, int]  # class name -> row of the affinity
    latent_dim: int  # the number of mu columns
    pose_dim: int  # the number of pose columns

    @property
    def scored(self) -> np.ndarray:
        """The particles the class structure is scored on: held out for seen classes, unseen for
        unseen ones."""
        return self.held_out | self.unseen

    def sizes(self) -> dict[str, int]:
        """The particle counts and latent widths ``metrics.json`` reports."""
        return {
            "n_train": int(self.train.sum()),
            "n_val": int((self.split == "val").sum()),
            "n_test": int((self.split == "test").sum()),
            "scored_split": self.scored_split,
            "n_unseen": int(self.unseen.sum()),
            "latent_dim": self.latent_dim,
            "pose_dim": self.pose_dim,
        }


def _particles(
    latents: pd.DataFrame, class_names: list[str], mu_cols: list[str], pose_cols: list[str]
) -> _Particles:
    names = latents["class_name"].astype(str).to_numpy()
    split = latents["split"].astype(str).to_numpy()
    junk = (split == "unseen") & (names == BACKGROUND_CLASS)
    train, unseen = split == "train", (split == "unseen") & ~junk
    scored_split = "test" if (split == "test").any() else "val"
    present_seen = set(names[train])
    present_unseen = set(names[unseen])
    return _Particles(
        names=names,
        split=split,
        mu=latents[mu_cols].to_numpy(np.float64),
        pose=latents[pose_cols].to_numpy(np.float64),
        train=train,
        held_out=split == scored_split,
        scored_split=scored_split,
        unseen=unseen,
        junk=junk,
        seen=[c for c in class_names if c in present_seen],
        unseen_classes=[c for c in class_names if c in present_unseen],
        index={c: i for i, c in enumerate(class_names)},
        latent_dim=len(mu_cols),
        pose_dim=len(pose_cols),
    )


def _read_out_metrics(
    latents: pd.DataFrame,
    p: _Particles,
    config: EvaluationConfig,
    seed: int,
    ndim: int,
    symmetry: dict[str, np.ndarray] | None,
) -> tuple[dict, np.ndarray, pd.DataFrame | None, pd.DataFrame | None]:
    """What read-outs fitted on the train particles recover from the val particles: class
    (classifier and silhouette) and pose; with the confusion counts, the pose table and (3-D)
    each scored particle's orientation error."""
    train, val = p.train, p.held_out
    metrics, counts = classification(
        p.mu[train], p.names[train], p.mu[val], p.names[val], p.seen, config, seed
    )
    metrics = {**metrics, "silhouette": cosine_silhouette(p.mu[val], p.names[val], seed)}
    pose_scores, pose_table = pose_metrics(latents, p.pose, p.names, train, val, p.seen, ndim)
    metrics.update(pose_scores)
    if ndim != 3:
        return metrics, counts, pose_table, None
    groups = dict(config.symmetry) if symmetry is None else symmetry
    aligned, _, errors = aligned_orientation_metrics(latents, p.names, train, val, p.seen, groups)
    return {**metrics, **aligned}, counts, pose_table, errors


def _class_structure(
    p: _Particles, affinity: np.ndarray
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Seen then unseen classes, their mean pairwise cosine of mu over the scored particles and
    their prior affinity, both ``(c, c)``, for the prior's agreement and its figure."""
    shown = p.seen + p.unseen_classes
    scored = p.scored
    cosine = class_cosine_matrix(p.mu[scored], p.names[scored], shown)
    ids = [p.index[c] for c in shown]
    return shown, cosine, affinity[np.ix_(ids, ids)]


def _open_set_metrics(
    latents: pd.DataFrame, p: _Particles, affinity: np.ndarray, config: EvaluationConfig
) -> tuple[dict, pd.DataFrame, NoveltyModel]:
    """Where unseen classes land among the seen classes' training centroids, and how well the
    novelty scores tell unseen particles (and junk) from held-out ones; with the novelty table
    and model."""
    centroids = class_centroids(p.mu[p.train], p.names[p.train], p.seen)
    unseen_report, match_fraction = unseen_neighbours(
        p.mu[p.unseen], p.names[p.unseen], p.unseen_classes, centroids, p.seen, affinity, p.index
    )
    novelty, table, model = novelty_metrics(
        latents,
        p.seen,
        p.held_out,
        p.unseen,
        p.junk,
        config.novelty_score,
        config.novelty_seen_recall,
        config.novelty_neighbors,
    )
    metrics = {"unseen": unseen_report, "unseen_match_fraction": match_fraction}
    by_template = matched_classes(latents) is not None
    assigned = assigned_class_metrics(table, p.scored_split, p.seen, by_template)
    return {**metrics, **assigned, **novelty}, table, model


def _log_metrics(metrics: dict) -> None:
    """The headline numbers, and where each unseen class landed, for the run log."""
    log.info(
        "%s on %d train / %d %s particles: accuracy %.3f, macro-F1 %.3f (class written: "
        "accuracy %s by %s); silhouette %s; "
        "pose correlation %s; prior correlation %s; novelty AUROC %s (%s), unseen flagged %s",
        metrics["classifier"],
        metrics["n_train"],
        metrics["n_" + metrics["scored_split"]],
        metrics["scored_split"],
        metrics["accuracy"],
        metrics["macro_f1"],
        metrics["assigned_accuracy"],
        metrics["assigned_by"],
        metrics["silhouette"],
        metrics["pose_correlation"],
        metrics["prior_correlation"],
        metrics["novelty_auroc"],
        metrics["novelty_score"],
        metrics["novelty_unseen_recall"],
    )
    for name, report in metrics["unseen"].items():
        log.info(
            "unseen %s: nearest seen %s, highest-affinity seen %s",
            name,
            report["nearest_seen"],
            report["highest_affinity_seen"],
        )


def _check_latents(latents, class_names, affinity, ndim) -> tuple[list[str], list[str]]:
    """The mu and pose columns; InputError for a missing column, a class not in
    ``class_names``, a split other than train/val/test/unseen, an affinity of the wrong shape,
    fewer than two seen classes or no held-out (test or val) particles."""
    missing = [c for c in LATENT_COLUMNS if c not in latents.columns]
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
    names = latents["class_name"].astype(str)
    junk = (latents["split"].astype(str) == "unseen") & (names == BACKGROUND_CLASS)
    unknown = sorted(set(names[~junk]) - set(class_names))
    if unknown:
        raise InputError(
            f"latents table: class_name {unknown} not in the study's classes {class_names}"
        )
    splits = latents["split"].astype(str)
    bad = sorted(set(splits) - set(SPLITS))
    if bad:
        raise InputError(f"latents table: split {bad}; expected one of {list(SPLITS)}")
    seen = set(names[splits == "train"])
    if len(seen) < 2:
        raise InputError(
            f"latents table: {len(seen)} class(es) with train particles; need two or more"
        )
    if not splits.isin(["val", "test"]).any():
        raise InputError("latents table: no test or val particles to score on")
    orphan = sorted(set(names[splits.isin(["val", "test"])]) - seen)
    if orphan:
        raise InputError(f"latents table: held-out classes {orphan} have no train particles")
    both = sorted(set(names[splits == "unseen"]) & seen)
    if both:
        raise InputError(f"latents table: classes {both} are in both the train and unseen splits")
    values = latents[mu_cols + pose_cols].to_numpy(np.float64)
    if not np.isfinite(values).all():
        raise InputError("latents table: mu/pose columns hold NaN or infinite values")
    return mu_cols, pose_cols
