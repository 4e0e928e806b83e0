"""The open set: how well the novelty scores tell unseen particles from the seen classes' ones.

The novelty model (:mod:`cryoavae.inference.novelty`) is fitted on the ``train`` particles, its
threshold set on the ``val`` particles; both are scored here on the held-out seen particles of
the scored split (``test`` when there is one) against the ``unseen`` particles of the classes
held out of training, and, apart from them, against junk: the false-positive boxes an
extraction adds (class ``background``, split ``unseen``; ``extraction.false_positive_fraction``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from cryoavae.inference.latents import (
    assign_nearest_class,
    fit_column,
    latent_columns,
    matched_classes,
)
from cryoavae.inference.novelty import SCORES, NoveltyModel, fit_novelty

__all__ = ["novelty_metrics"]


def novelty_metrics(
    latents: pd.DataFrame,
    class_names: Sequence[str],
    held_out: np.ndarray,
    unseen: np.ndarray,
    junk: np.ndarray,
    score: str,
    seen_recall: float,
    neighbors: int,
) -> tuple[dict, pd.DataFrame, NoveltyModel]:
    """The novelty metrics of ``metrics.json``, the novelty table and the fitted model.

    ``held_out``, ``unseen``, ``junk``: ``(n,)`` masks of the scored seen particles, the unseen
    classes' particles and the junk. Keys (None where a group is missing):

    - ``novelty_score``: the score the threshold is on (``evaluation.novelty_score``);
    - ``novelty_auroc``: its AUROC, unseen against held-out seen particles (0.5: no better than
      chance); ``novelty_auroc_per_score``: every score's;
    - ``novelty_threshold``, ``novelty_calibration_split`` (``val``; ``train`` without val
      particles), ``novelty_seen_recall_target`` (``evaluation.novelty_seen_recall``);
    - ``novelty_unseen_recall``: the fraction of unseen particles above the threshold (flagged);
      ``novelty_seen_recall``: the fraction of held-out seen particles at or below it (kept);
    - ``novelty_junk_auroc``, ``novelty_junk_auroc_per_score``, ``novelty_junk_recall``: the same
      for junk against held-out seen particles; ``n_junk``.

    The table has the held-out, unseen and junk rows: ``image`` (when the latents have it),
    ``class_name``, ``split``, ``nearest_seen`` (the class the particle is assigned, as the
    annotated tables write it), ``nearest_cosine``, ``novelty`` (the chosen
    score), ``is_novel`` and ``novelty_<score>`` for every score.
    """
    model = fit_novelty(latents, class_names, score, seen_recall, neighbors)
    rows = held_out | unseen | junk
    mu = latents[latent_columns(latents, "mu")].to_numpy(np.float64)[rows]
    fits = fit_column(latents)
    given = [s for s in SCORES if model.can_give(s, fits is not None)]
    matched = matched_classes(latents)
    scores = model.scores(
        mu,
        given,
        None if fits is None else fits[rows],
        None if matched is None else matched[rows],
    )
    seen_s, unseen_s, junk_s = (scores[mask[rows]] for mask in (held_out, unseen, junk))
    own = model.score
    metrics = {
        "novelty_score": own,
        "novelty_auroc": _auroc(seen_s[own], unseen_s[own]),
        "novelty_auroc_per_score": {s: _auroc(seen_s[s], unseen_s[s]) for s in given},
        "novelty_threshold": model.threshold,
        "novelty_calibration_split": model.calibration_split,
        "novelty_seen_recall_target": model.seen_recall,
        "novelty_unseen_recall": _flagged(model, unseen_s[own]),
        "novelty_seen_recall": _kept(model, seen_s[own]),
        "novelty_junk_auroc": _auroc(seen_s[own], junk_s[own]),
        "novelty_junk_auroc_per_score": (
            {s: _auroc(seen_s[s], junk_s[s]) for s in given} if junk.any() else None
        ),
        "novelty_junk_recall": _flagged(model, junk_s[own]),
        "n_junk": int(junk.sum()),
    }
    matched = matched_classes(latents)
    table = assign_nearest_class(
        mu, model.centroids, model.classes, None if matched is None else matched[rows]
    )
    table["novelty"] = scores[own].to_numpy()
    table["is_novel"] = model.is_novel(table["novelty"].to_numpy())
    for s in given:
        table[f"novelty_{s}"] = scores[s].to_numpy()
    for column in ("split", "class_name", "image"):
        if column in latents.columns:
            table.insert(0, column, latents[column].to_numpy()[rows])
    return metrics, table, model


def _auroc(seen: pd.Series, novel: pd.Series) -> float | None:
    """AUROC of a score for novel (positive) against seen particles; None without both."""
    if len(seen) == 0 or len(novel) == 0:
        return None
    labels = np.r_[np.zeros(len(seen)), np.ones(len(novel))]
    return float(roc_auc_score(labels, np.r_[seen.to_numpy(), novel.to_numpy()]))


def _flagged(model: NoveltyModel, scores: pd.Series) -> float | None:
    return float(model.is_novel(scores.to_numpy()).mean()) if len(scores) else None


def _kept(model: NoveltyModel, scores: pd.Series) -> float | None:
    return float((~model.is_novel(scores.to_numpy())).mean()) if len(scores) else None
