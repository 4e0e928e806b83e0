"""The comparison table across model variants of a study."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

COLUMNS = (
    "accuracy",
    "macro_f1",
    "silhouette",
    "pose_correlation",
    "prior_correlation",
    "novelty_auroc",
    "train_seconds",
    "train_samples_per_second",
    "device",
)


def summary_table(
    variants: Sequence[str], metrics: Sequence[Mapping], summaries: Sequence[Mapping]
) -> pd.DataFrame:
    """One row per variant: the headline metrics and how many unseen classes landed right."""
    rows = []
    for name, m, s in zip(variants, metrics, summaries, strict=True):
        row = {"variant": name, **{key: m.get(key) for key in COLUMNS}}
        unseen = m.get("unseen") or {}
        row["unseen_matched"] = (
            f"{sum(bool(u.get('match')) for u in unseen.values())}/{len(unseen)}"
        )
        row["epochs"] = s.get("epochs")
        rows.append(row)
    return pd.DataFrame(rows)
