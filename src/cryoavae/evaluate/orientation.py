"""The model's own estimate of each particle's orientation, against the truth: the geodesic
error after the one rotation per class that aligns the model's canonical frame with the
reference's (the model's frame is its own choice), modulo the molecule's point group.

Defined when the decoder turns a canonical particle by the pose (the latents table then has
``inferred_rot/tilt/psi``, see :func:`cryoavae.inference.embed.inferred_angles`); the fitted
rotation comes from a class's ``train`` particles, the errors from its held-out ones (``val``
below: the evaluation's scored split, ``test`` when the study has one, else ``val``).

Only seen classes are scored: an unseen class has no template of its own, so the orientation
the matcher gave its particles (against a seen class's template) measures nothing and is never
compared with their truth. Within a seen class every held-out particle counts, whether or not the
novelty model flags it novel: the angles come from ``latents.tsv``, which keeps the matcher's
answer for every particle, while the tables a user takes elsewhere
(:mod:`cryoavae.inference.annotate`) leave a flagged particle's empty. So the score is the
matcher's, never improved by the flag dropping the particles it got wrong.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryoavae.geometry.point_groups import symmetry_group
from cryoavae.geometry.rotations import (
    align_rotations,
    geodesic_deg,
    relion_angles_to_matrices,
)
from cryoavae.inference.latents import INFERRED_ANGLES

DESCRIPTION = (
    "pose_geodesic_median_deg: for each seen class, the one rotation that aligns the model's "
    "inferred orientations of its train particles with the true ones (orthogonal Procrustes "
    "over the train particles within 30 degrees of the frame most of them agree with, modulo "
    "the class's point group in evaluation.symmetry, placed in its map's frame) is applied "
    "to its val particles' inferred orientations; the median geodesic "
    "angle to the truth over all val particles (0 = exact up to the model's choice of frame; "
    "about 132 degrees carries no orientation over all of SO(3)). A median hides a class that "
    "fails: pose_within_20deg / _40deg are the fractions of val particles within 20 and 40 "
    "degrees, overall and per class (random orientations: 0.6 % and 4.6 %)."
)
MIN_PARTICLES = 3
WITHIN_DEG = (20, 40)


def aligned_orientation_metrics(
    latents: pd.DataFrame, names, train, val, seen, symmetry: dict[str, str | np.ndarray]
) -> tuple[dict, dict[str, np.ndarray], pd.DataFrame]:
    """Metrics (JSON-ready), per class the aligning rotation ``Q`` ``(3, 3)``, and each scored
    particle's error (``class_name``, ``error_deg``; empty without the model's orientations)."""
    if not set(INFERRED_ANGLES) <= set(latents.columns):
        empty = {
            f"pose_within_{t}deg{s}": v
            for t in WITHIN_DEG
            for s, v in (("", None), ("_per_class", {}))
        }
        metrics = {"pose_geodesic_median_deg": None, "pose_geodesic_per_class": {}, **empty}
        return metrics, {}, pd.DataFrame({"class_name": [], "error_deg": []})
    inferred = relion_angles_to_matrices(latents[list(INFERRED_ANGLES)].to_numpy(np.float64))
    true = relion_angles_to_matrices(
        latents[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy(np.float64)
    )
    known = np.isfinite(latents[["angle_rot", "angle_tilt", "angle_psi"]].to_numpy()).all(axis=1)
    per_class, rotations, errors = {}, {}, []
    for c in seen:
        tr, va = train & known & (names == c), val & known & (names == c)
        if tr.sum() < MIN_PARTICLES or va.sum() < 1:
            continue
        q, _ = align_rotations(inferred[tr], true[tr], symmetry.get(c))
        group = symmetry_group(symmetry.get(c))
        copies = np.einsum("nij,kjl->nkil", true[va], group)
        error = geodesic_deg((inferred[va] @ q)[:, None], copies).min(axis=1)
        per_class[c], rotations[c] = float(np.median(error)), q
        errors.append(error)
    every = np.concatenate(errors) if errors else np.zeros(0)
    metrics = {
        "pose_geodesic_median_deg": float(np.median(every)) if errors else None,
        "pose_geodesic_per_class": per_class,
        "pose_geodesic_description": DESCRIPTION,
    }
    for limit in WITHIN_DEG:
        metrics[f"pose_within_{limit}deg"] = float(np.mean(every <= limit)) if errors else None
        metrics[f"pose_within_{limit}deg_per_class"] = {
            c: float(np.mean(e <= limit)) for c, e in zip(per_class, errors, strict=True)
        }
    table = pd.DataFrame(
        {
            "class_name": np.repeat(list(per_class), [len(e) for e in errors]).astype(str),
            "error_deg": every,
        }
    )
    return metrics, rotations, table
