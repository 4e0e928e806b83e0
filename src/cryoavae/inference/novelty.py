"""Novelty: how unlike every seen class a particle's mu is, and the threshold that flags it.

A :class:`NoveltyModel` is fitted on the ``train`` particles' mu alone (:func:`fit_novelty`) and
scores any particle; higher is more novel. The scores (:data:`SCORES`):

- ``mahalanobis`` (the default): the smallest Mahalanobis distance from mu to a seen class, each
  class a Gaussian with its own covariance shrunk by Ledoit-Wolf (Lee et al. 2018 share one
  covariance); in the class's standard deviations;
- ``mahalanobis_shared``: the same with one covariance of the class-centred training mu;
- ``knn``: the Euclidean distance to the ``neighbors``-th nearest training particle (Sun et al.
  2022 normalise mu first; here mu is left as it is: its length carries class information);
- ``centroid_cosine``: 1 - the cosine to the nearest class centroid (mean unit mu), the class
  ``annotate`` and ``apply`` predict (the score before this module);
- ``mahalanobis_fit``: with template matching, ``mahalanobis`` plus how poorly the particle fits
  its matched template (1 - ``orientation_fit``), each standardised on the training particles: a
  particle of a new class can sit in a seen class's region of mu and still fit its template
  worse than that class's own particles do. The model's own evidence beside its latent, from
  the ``orientation_fit`` column the orientation step writes;
- ``mahalanobis_class_fit``: the same with the misfit standardised on the training particles
  matched to the same class's template (each template's own mean and spread): how well a
  template can explain its particles differs by class (a large complex's more than a small
  protein's at the same noise), so one standardisation over all classes lets an unseen
  particle matched to a well-fitting class's template pass as an ordinary fit of a
  poorly-fitting class. It needs the ``orientation_class`` column (one template per class);
  a particle without it is standardised over all classes.

Why ``mahalanobis``: it told unseen particles from seen ones best on the val split of the CNN
study (``config/shrec10_cnn.yaml``) for both the Affinity-VAE and the beta-VAE
(``docs/science.md``, "Novelty: which score").

The threshold is set on held-out seen particles (the ``val`` split, never ``test``): the score at
or below which a fraction ``seen_recall`` of them fall; a particle above it is novel. A study
without val particles calibrates on ``train`` (more particles are then flagged; the model says
which split it used). ``models/<variant>/novelty.json`` keeps the fitted model
(:mod:`cryoavae.inference.novelty_json`), which ``annotate`` and ``apply`` read, so a new
particle set is flagged by the threshold the study set.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
import sklearn
from sklearn.covariance import LedoitWolf
from sklearn.neighbors import NearestNeighbors

from cryoavae.core.errors import InputError
from cryoavae.inference.latents import (
    WORKING_MEMORY_MB,
    class_centroids,
    fit_column,
    latent_columns,
    matched_classes,
)

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_SCORE",
    "SCORES",
    "NoveltyModel",
    "fit_novelty",
    "seen_recall_threshold",
]

SCORES = (
    "mahalanobis",
    "mahalanobis_shared",
    "knn",
    "centroid_cosine",
    "mahalanobis_fit",
    "mahalanobis_class_fit",
)
# the scores that need each particle's fit to its matched template, not mu alone
FIT_SCORES = ("mahalanobis_fit", "mahalanobis_class_fit")
DEFAULT_SCORE = "mahalanobis"
# the scores computed from the stored Gaussians and centroids alone (cheap at any size)
GAUSSIAN_SCORES = ("mahalanobis", "mahalanobis_shared", "centroid_cosine")
# a covariance's ridge, relative to its mean variance, so that a degenerate class inverts
RIDGE = 1e-6
# a class's misfit is standardised on its own training particles only with at least this many
# matched to its template (fewer: over all classes)
MIN_CLASS_FITS = 5


@dataclass(frozen=True)
class NoveltyModel:
    """A fitted novelty score and its threshold (module docstring).

    ``means`` ``(c, k)``, ``precisions`` ``(c, k, k)`` (inverse shrunk covariances) and
    ``centroids`` ``(c, k)`` (unit) per class of ``classes``; ``shared_precision`` ``(k, k)``.
    ``train_mu`` ``(n_train, k)``: the training particles' mu, for ``knn`` only; it is not stored
    in ``novelty.json`` (the study's latents table holds it). ``standardisation``: the mean and
    standard deviation over the training particles of the Mahalanobis distance and of the
    template misfit (1 - fit), for ``mahalanobis_fit``; None without fits. ``class_misfit``:
    per class, the mean and standard deviation of the misfit over the training particles
    matched to that class's template, for ``mahalanobis_class_fit``.
    """

    score: str
    classes: tuple[str, ...]
    means: np.ndarray
    precisions: np.ndarray
    shared_precision: np.ndarray
    centroids: np.ndarray
    n_train: int
    neighbors: int
    seen_recall: float
    threshold: float
    calibration_split: str
    n_calibration: int
    calibration_seen_recall: float
    train_mu: np.ndarray | None = field(default=None, repr=False)
    standardisation: tuple[float, float, float, float] | None = None
    class_misfit: dict[str, tuple[float, float]] = field(default_factory=dict)

    def scores(
        self,
        mu: np.ndarray,
        names: Sequence[str] | None = None,
        fit: np.ndarray | None = None,
        matched: np.ndarray | None = None,
    ) -> pd.DataFrame:
        """Scores ``names`` (default: every score the model can give: ``knn`` needs
        ``train_mu``, the fit scores the fits) of particles ``mu`` ``(n, k)`` whose fits to
        their matched templates are ``fit`` ``(n,)``, those templates' classes ``matched``
        ``(n,)`` (None: unknown), one column each."""
        mu = np.asarray(mu, np.float64)
        if mu.ndim != 2 or mu.shape[1] != self.means.shape[1]:
            raise InputError(
                f"novelty: particles have {mu.shape[-1]} latent dimensions, the model "
                f"{self.means.shape[1]}"
            )
        if names is None:
            names = [s for s in SCORES if self.can_give(s, fit is not None)]
        return pd.DataFrame({name: self._score(name, mu, fit, matched) for name in names})

    def can_give(self, name: str, with_fits: bool) -> bool:
        """Whether the model gives score ``name`` (to particles with fits, if ``with_fits``)."""
        if name == "knn":
            return self.train_mu is not None
        if name in FIT_SCORES:
            return with_fits and self.standardisation is not None
        return True

    def score_of(
        self, mu: np.ndarray, fit: np.ndarray | None = None, matched: np.ndarray | None = None
    ) -> np.ndarray:
        """The model's own score (``self.score``) of particles ``mu`` ``(n, k)`` (fits ``fit``
        to templates of classes ``matched``)."""
        return self.scores(mu, [self.score], fit, matched)[self.score].to_numpy()

    def is_novel(self, scores: np.ndarray) -> np.ndarray:
        """Whether each of the model's own scores lies above the threshold."""
        return np.asarray(scores, np.float64) > self.threshold

    def _score(
        self, name: str, mu: np.ndarray, fit: np.ndarray | None, matched: np.ndarray | None
    ) -> np.ndarray:
        if name in FIT_SCORES:
            if fit is None or self.standardisation is None:
                raise InputError(
                    f"novelty: {name} needs each particle's orientation_fit "
                    "(orientation.method: template_matching)"
                )
            distance_mean, distance_sd, misfit_mean, misfit_sd = self.standardisation
            distance = self._score("mahalanobis", mu, None, None)
            misfit = 1.0 - np.asarray(fit, np.float64)
            if name == "mahalanobis_class_fit":
                misfit_mean, misfit_sd = self._class_misfit_spread(matched, len(mu))
            return (distance - distance_mean) / distance_sd + (misfit - misfit_mean) / misfit_sd
        if name == "mahalanobis":
            return np.sqrt(_squared_distances(mu, self.means, self.precisions).min(axis=1))
        if name == "mahalanobis_shared":
            shared = np.broadcast_to(self.shared_precision, self.precisions.shape)
            return np.sqrt(_squared_distances(mu, self.means, shared).min(axis=1))
        if name == "centroid_cosine":
            norm = np.linalg.norm(mu, axis=1, keepdims=True)
            unit = mu / np.where(norm > 0, norm, 1.0)
            return 1.0 - (unit @ self.centroids.T).max(axis=1)
        if name == "knn":
            return _knn_distance(self.train_mu, mu, self.neighbors)
        raise InputError(f"novelty: unknown score {name!r}; expected one of {list(SCORES)}")

    def _class_misfit_spread(self, matched: np.ndarray | None, n: int):
        """Per particle, the misfit's training mean and sd of its matched template's class
        (over all classes where the class is unknown or had too few training fits)."""
        _, _, overall_mean, overall_sd = self.standardisation
        mean, sd = np.full(n, overall_mean), np.full(n, overall_sd)
        if matched is None:
            return mean, sd
        names = np.asarray(matched, dtype=object)
        for name, (m, s) in self.class_misfit.items():
            rows = names == name
            mean[rows], sd[rows] = m, s
        return mean, sd


def fit_novelty(
    latents: pd.DataFrame,
    class_names: Sequence[str],
    score: str = DEFAULT_SCORE,
    seen_recall: float = 0.95,
    neighbors: int = 5,
) -> NoveltyModel:
    """The novelty model of a latents table: the scores fitted on its ``train`` rows only, the
    threshold on its ``val`` rows (``train`` when it has none) at ``seen_recall``.

    ``class_names`` orders the seen classes (the study's list; others follow by name).

    Raises:
        InputError: an unknown score, a recall outside (0, 1], no training particles, or
            fewer training particles than ``neighbors`` for ``knn``.
    """
    if score not in SCORES:
        raise InputError(f"novelty: score {score!r}; expected one of {list(SCORES)}")
    if not 0 < seen_recall <= 1:
        raise InputError(f"novelty: seen_recall must lie in (0, 1], got {seen_recall}")
    split = latents["split"].astype(str).to_numpy()
    train = split == "train"
    if not train.any():
        raise InputError("novelty: the latents hold no training particles to fit on")
    columns = latent_columns(latents, "mu")
    mu = latents.loc[train, columns].to_numpy(np.float64)
    names = latents.loc[train, "class_name"].astype(str).to_numpy()
    order = {c: i for i, c in enumerate(class_names)}
    classes = sorted(set(names), key=lambda c: (order.get(c, len(order)), c))
    if score == "knn" and len(mu) < neighbors:
        raise InputError(f"novelty: knn with {neighbors} neighbours but {len(mu)} train particles")
    means, precisions, shared = _gaussians(mu, names, classes)
    fits, matched = fit_column(latents), matched_classes(latents)
    if score in FIT_SCORES and fits is None:
        raise InputError(
            f"evaluation.novelty_score: {score} needs each particle's orientation_fit "
            "(orientation.method: template_matching)"
        )
    unfitted = NoveltyModel(
        score=score,
        classes=tuple(classes),
        means=means,
        precisions=precisions,
        shared_precision=shared,
        centroids=class_centroids(mu, names, classes),
        n_train=len(mu),
        neighbors=min(neighbors, len(mu)),
        seen_recall=float(seen_recall),
        threshold=math.inf,
        calibration_split="",
        n_calibration=0,
        calibration_seen_recall=math.nan,
        train_mu=mu,
    )
    if fits is not None:
        distance = unfitted.scores(mu, ["mahalanobis"])["mahalanobis"].to_numpy()
        misfit = 1.0 - fits[train]
        spread = [float(max(v.std(), 1e-12)) for v in (distance, misfit)]
        standardisation = (float(distance.mean()), spread[0], float(misfit.mean()), spread[1])
        unfitted = replace(
            unfitted,
            standardisation=standardisation,
            class_misfit=_class_misfit(misfit, matched, train),
        )
    calibration = "val" if (split == "val").any() else "train"
    if calibration == "train":
        log.warning(
            "novelty: no val particles, so the threshold is set on the training particles "
            "(their scores are lower: more particles are flagged novel than seen_recall says)"
        )
    held = split == calibration
    held_fits = None if fits is None else fits[held]
    held_matched = None if matched is None else matched[held]
    mu_held = latents.loc[held, columns].to_numpy(np.float64)
    seen_scores = unfitted.score_of(mu_held, held_fits, held_matched)
    return calibrated(unfitted, seen_scores, calibration)


def calibrated(model: NoveltyModel, seen_scores: np.ndarray, split: str) -> NoveltyModel:
    """``model`` with its threshold set on the scores of held-out seen particles."""
    threshold = seen_recall_threshold(seen_scores, model.seen_recall)
    achieved = float((np.asarray(seen_scores) <= threshold).mean()) if len(seen_scores) else 1.0
    log.info(
        "novelty (%s): threshold %.4g keeps %.3f of %d %s particles as seen (asked %.3f)",
        model.score,
        threshold,
        achieved,
        len(seen_scores),
        split,
        model.seen_recall,
    )
    return replace(
        model,
        threshold=threshold,
        calibration_split=split,
        n_calibration=len(seen_scores),
        calibration_seen_recall=achieved,
    )


def seen_recall_threshold(seen_scores: np.ndarray, seen_recall: float) -> float:
    """The smallest of ``seen_scores`` at or below which at least ``seen_recall`` of them lie
    (the ``ceil(recall * n)``-th smallest); +inf without scores."""
    s = np.sort(np.asarray(seen_scores, np.float64))
    if len(s) == 0:
        return math.inf
    rank = max(1, math.ceil(seen_recall * len(s) - 1e-9))
    return float(s[rank - 1])


def _class_misfit(
    train_misfit: np.ndarray, matched: np.ndarray | None, train: np.ndarray
) -> dict[str, tuple[float, float]]:
    """Per class whose template at least :data:`MIN_CLASS_FITS` training particles were
    matched to: their misfit's mean and standard deviation."""
    if matched is None:
        return {}
    names = np.asarray(matched[train], dtype=object)
    out = {}
    for name in sorted({c for c in names if c is not None}):
        values = train_misfit[names == name]
        if len(values) >= MIN_CLASS_FITS:
            out[str(name)] = (float(values.mean()), float(max(values.std(), 1e-12)))
    return out


def _gaussians(
    mu: np.ndarray, names: np.ndarray, classes: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per class: mean and Ledoit-Wolf precision (the shared one for a class of fewer than two
    particles); and the shared precision of the class-centred particles."""
    ids = pd.Index(list(classes)).get_indexer(names.astype(object))
    means = np.stack([mu[ids == i].mean(axis=0) for i in range(len(classes))])
    shared = _precision(mu - means[ids])
    precisions = np.stack(
        [
            _precision(mu[ids == i] - means[i]) if (ids == i).sum() >= 2 else shared
            for i in range(len(classes))
        ]
    )
    return means, precisions, shared


def _precision(centred: np.ndarray) -> np.ndarray:
    """The inverse of the Ledoit-Wolf covariance of ``centred`` rows, with a small ridge."""
    k = centred.shape[1]
    if len(centred) < 2:
        return np.eye(k)
    covariance = LedoitWolf(assume_centered=True).fit(centred).covariance_
    scale = float(np.trace(covariance)) / k
    ridge = RIDGE * (scale if scale > 0 else 1.0)
    return np.linalg.inv(covariance + ridge * np.eye(k))


def _squared_distances(mu: np.ndarray, means: np.ndarray, precisions: np.ndarray) -> np.ndarray:
    """``(n, c)`` squared Mahalanobis distances of ``mu`` ``(n, k)`` to each class."""
    out = np.empty((len(mu), len(means)))
    for i, (mean, precision) in enumerate(zip(means, precisions, strict=True)):
        d = mu - mean
        out[:, i] = np.einsum("ij,jk,ik->i", d, precision, d)
    return np.maximum(out, 0.0)


def _knn_distance(train_mu: np.ndarray | None, mu: np.ndarray, k: int) -> np.ndarray:
    if train_mu is None:
        raise InputError("novelty: knn needs the training particles' mu (the study's latents)")
    if len(mu) == 0:
        return np.zeros(0)
    near = NearestNeighbors(n_neighbors=k)
    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        distances, _ = near.fit(train_mu).kneighbors(mu)
    return distances[:, -1]
