"""A study's seeds in one table: each metric's mean and standard deviation over the seeds.

A number from one seed says little: the particles, the split and the training all change with the
seed, and the project's pose and open-set scores move by several points between seeds. The
aggregate is what results tables quote; each seed's own ``metrics.json`` stays beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from cryoavae.evaluate.summary import angles_note

__all__ = ["SEED_METRICS", "seed_summary_markdown", "seed_summary_table"]

#: (metrics.json key, column heading): the headline numbers, with those that show a failure
#: (the fraction within 20 and 40 degrees) beside the median that can hide one.
SEED_METRICS = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("novelty_auroc", "novelty AUROC"),
    ("novelty_unseen_recall", "unseen flagged"),
    ("unseen_match_fraction", "unseen placed"),
    ("prior_correlation", "prior r"),
    ("pose_geodesic_median_deg", "orientation median (°)"),
    ("pose_within_20deg", "within 20°"),
    ("pose_within_40deg", "within 40°"),
)
PER_CLASS = "pose_within_20deg_per_class"


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def seed_summary_table(
    variants: Sequence[str], seeds: Sequence[int], metrics: Mapping[tuple[str, int], Mapping]
) -> pd.DataFrame:
    """One row per variant: for each of :data:`SEED_METRICS` (and each class's fraction within
    20°, ``within_20deg:<class>``) the mean and sample standard deviation over ``seeds``
    (``<key>_mean``, ``<key>_sd``; sd is NaN for one seed), and ``n_seeds``.

    ``metrics[(variant, seed)]`` is that run's ``metrics.json``. A metric a run lacks (no pose,
    no unseen class) counts as missing for that seed, not as zero.
    """
    rows = []
    for variant in variants:
        runs = [metrics[(variant, seed)] for seed in seeds]
        values = {key: [_number(m.get(key)) for m in runs] for key, _ in SEED_METRICS}
        classes = sorted({c for m in runs for c in (m.get(PER_CLASS) or {})})
        for c in classes:
            values[f"within_20deg:{c}"] = [_number((m.get(PER_CLASS) or {}).get(c)) for m in runs]
        row: dict[str, object] = {"variant": variant, "n_seeds": len(seeds)}
        for key, series in values.items():
            finite = np.array([v for v in series if math.isfinite(v)])
            row[f"{key}_mean"] = float(finite.mean()) if len(finite) else math.nan
            row[f"{key}_sd"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def _cell(row: pd.Series, key: str, digits: int) -> str:
    mean, sd = row.get(f"{key}_mean", math.nan), row.get(f"{key}_sd", math.nan)
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" if not math.isfinite(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def seed_summary_markdown(
    study: str,
    table: pd.DataFrame,
    seeds: Sequence[int],
    scored_split: str,
    command: str,
    figures: Mapping[str, str] | None = None,
    angles_from: str | None = None,
) -> str:
    """The aggregate as a Markdown fragment for README and ``docs/science.md``: the command that
    made it, which particles were scored, one row per variant and, when there is a pose, each
    class's fraction within 20° (a median pooled over classes hides a class that fails).
    ``figures`` maps a caption to a link relative to the Markdown file's folder: thumbnails of
    the first seed's first variant (``tools/update_readme_results.py`` copies them to the
    README's ``docs/images/``). ``angles_from``: what the pose was scored against when it is not
    a simulation's truth (e.g. "the STAR file's angles")."""
    digits = {"pose_geodesic_median_deg": 1}
    over = (
        f"seed {seeds[0]}"
        if len(seeds) == 1
        else f"mean ± sd over seeds {', '.join(map(str, seeds))}"
    )
    lines = [
        f"**Study `{study}`**, {over}, scored on the {scored_split} split (written by the "
        f"pipeline: `{command}`):",
        "",
        "| variant | " + " | ".join(title for _, title in SEED_METRICS) + " |",
        "|---|" + "---|" * len(SEED_METRICS),
    ]
    for _, row in table.iterrows():
        cells = [_cell(row, key, digits.get(key, 3)) for key, _ in SEED_METRICS]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    lines += angles_note(angles_from)
    classes = [c.split(":", 1)[1][: -len("_mean")] for c in table.columns if _is_class(c)]
    if classes:
        lines += [
            "",
            "Fraction of each class's scored particles whose orientation is within 20° of "
            f"{angles_from or 'the truth'} (modulo the class's symmetry):",
            "",
            "| variant | " + " | ".join(classes) + " |",
            "|---|" + "---|" * len(classes),
        ]
        for _, row in table.iterrows():
            cells = [_cell(row, f"within_20deg:{c}", 2) for c in classes]
            lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    if figures:
        thumbnails = " ".join(f'<img src="{p}" alt="{c}" width="260">' for c, p in figures.items())
        lines += ["", thumbnails]
    return "\n".join(lines) + "\n"


def _is_class(column: str) -> bool:
    return column.startswith("within_20deg:") and column.endswith("_mean")
