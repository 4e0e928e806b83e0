"""The latent space against the prior: class-pair cosines versus A; where unseen classes land."""

from __future__ import annotations

import numpy as np
from scipy import stats

from cryoavae.inference.latents import class_centroids


def unseen_neighbours(mu, names, unseen_classes, centroids, seen, affinity, index):
    """Per unseen class: the nearest seen class by centroid cosine and the highest-affinity one.

    A prior that is the same for every seen class (the identity of ``affinity.source`` uniform or
    none) names no highest-affinity class: its ``highest_affinity_seen``, rank and ``match`` are
    None, and the match fraction counts only the classes the prior does rank (None if none),
    so an uninformed prior never scores as a perfect one."""
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
        ranked = bool(np.ptp(prior) > 0)
        report[name] = {
            "nearest_seen": seen[nearest],
            "nearest_seen_cosine": float(cos[row, nearest]),
            "highest_affinity_seen": seen[top] if ranked else None,
            "highest_affinity": float(prior[top]),
            "affinity_rank_of_nearest": rank if ranked else None,
            "match": bool(rank == 1) if ranked else None,
        }
    matches = [v["match"] for v in report.values() if v["match"] is not None]
    return report, (float(np.mean(matches)) if matches else None)


def prior_agreement(cosine: np.ndarray, prior: np.ndarray) -> dict:
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
