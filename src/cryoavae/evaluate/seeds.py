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
    ("assigned_accuracy", "class written"),
    ("novelty_auroc", "novelty AUROC"),
    ("novelty_unseen_recall", "unseen flagged"),
    ("unseen_match_fraction", "unseen placed"),
    ("prior_correlation", "prior r"),
    ("pose_geodesic_median_deg", "orientation median (°)"),
    ("pose_within_20deg", "within 20°"),
    ("pose_within_40deg", "within 40°"),
)
PER_CLASS = "pose_within_20deg_per_class"
#: class_averages.tsv's resolutions (Å at FSC 0.5 against the class's map) whose ratio says how
#: far the average a user can make (the predicted class, turned by the model's orientations)
#: falls behind the one the true orientations make
PREDICTED_RESOLUTION = "predicted_fsc5_vs_map_angstrom"
TRUE_RESOLUTION = "true_fsc5_vs_map_angstrom"
#: and their FSC curves' areas, whose ratio keeps seeing what the resolutions stop seeing once
#: both averages reach Nyquist (half of a class's orientations flipped, or 30 degrees off)
PREDICTED_AREA = "predicted_fsc_area_vs_map"
TRUE_AREA = "true_fsc_area_vs_map"
#: the FSC area ratio an average must reach to pass: measured on config/shrec10_cnn.yaml's particles
#: with orientation errors put in by hand (tools/calibrate_average_test.py), 20 degrees of
#: error about random axes keeps the classes at or above it and 30 degrees, or half of the
#: particles flipped by 180 degrees, takes every large complex (over 200 kDa) below it
AREA_RATIO_PASS = 0.9
#: class_averages.tsv's correlations of the decoded class mean, and of the map's radial blob (its
#: spherical average: size without shape), with the class's map; their difference is above 0
#: only where the decoder shows shape beyond size
DECODED_CC = "decoded_vs_map_cc"
BLOB_CC = "radial_blob_vs_map_cc"


def _number(value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return math.nan
    return number


def seed_summary_table(
    variants: Sequence[str],
    seeds: Sequence[int],
    metrics: Mapping[tuple[str, int], Mapping],
    averages: Mapping[tuple[str, int], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per variant: for each of :data:`SEED_METRICS` (and each class's fraction within
    20°, ``within_20deg:<class>``; with ``averages``, each class's resolution ratio,
    ``average_ratio:<class>``) the mean and sample standard deviation over ``seeds``
    (``<key>_mean``, ``<key>_sd``; sd is NaN for one seed), and ``n_seeds``.

    ``metrics[(variant, seed)]`` is that run's ``metrics.json``, ``averages[(variant, seed)]``
    its ``class_averages.tsv``: the ratio is the predicted-class average's resolution over the
    true-pose average's (1: as good), and ``average_area:<class>`` its FSC area over the
    true-pose average's (1: as good; below :data:`AREA_RATIO_PASS` fails, counted per variant
    in ``average_area:<class>_failed``). A metric a run lacks (no pose, no unseen class) counts
    as missing for that seed, not as zero.
    """
    rows = []
    for variant in variants:
        runs = [metrics[(variant, seed)] for seed in seeds]
        values = {key: [_number(m.get(key)) for m in runs] for key, _ in SEED_METRICS}
        classes = sorted({c for m in runs for c in (m.get(PER_CLASS) or {})})
        for c in classes:
            values[f"within_20deg:{c}"] = [_number((m.get(PER_CLASS) or {}).get(c)) for m in runs]
        if averages is not None:
            tables = [averages[(variant, seed)] for seed in seeds]
            values.update(_ratios(tables, "average_ratio", PREDICTED_RESOLUTION, TRUE_RESOLUTION))
            values.update(_ratios(tables, "average_area", PREDICTED_AREA, TRUE_AREA))
            values.update(_ratios(tables, "decoded_margin", DECODED_CC, BLOB_CC, np.subtract))
        row: dict[str, object] = {"variant": variant, "n_seeds": len(seeds)}
        for key, series in values.items():
            finite = np.array([v for v in series if math.isfinite(v)])
            row[f"{key}_mean"] = float(finite.mean()) if len(finite) else math.nan
            row[f"{key}_sd"] = float(finite.std(ddof=1)) if len(finite) > 1 else math.nan
            if key.startswith("average_ratio:"):  # an average that never reached FSC 0.5
                row[f"{key}_failed"] = sum(v == math.inf for v in series)
            if key.startswith("average_area:"):
                row[f"{key}_failed"] = sum(v < AREA_RATIO_PASS for v in series)
            if key.startswith("decoded_margin:"):
                row[f"{key}_failed"] = sum(v <= 0 for v in series)
        rows.append(row)
    return pd.DataFrame(rows)


def _ratios(
    tables: Sequence[pd.DataFrame], name: str, predicted: str, true: str, combine=np.divide
) -> dict[str, list[float]]:
    """``<name>:<class>``: per seed, the class's ``predicted`` column over its ``true`` one (or
    ``combine`` of the two; NaN where a seed has neither; infinite where the predicted average
    never reached FSC 0.5)."""
    ratios: dict[str, dict[int, float]] = {}
    for k, table in enumerate(tables):
        if not {predicted, true} <= set(table.columns):
            continue
        for _, row in table.iterrows():
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = float(combine(_number(row[predicted]), _number(row[true])))
            ratios.setdefault(f"{name}:{row['class_name']}", {})[k] = ratio
    return {
        key: [by_seed.get(k, math.nan) for k in range(len(tables))]
        for key, by_seed in sorted(ratios.items())
    }


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
    lines += [
        "",
        "*accuracy*, *macro-F1*: a classifier fitted on the train particles' mu (how well the "
        "latent space separates the classes); *class written*: how often the class written to "
        "`particles_annotated.star` (`cryoavaePredictedClass`) is right.",
    ]
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
    lines += _ratio_lines(table)
    if figures:
        thumbnails = " ".join(f'<img src="{p}" alt="{c}" width="260">' for c, p in figures.items())
        lines += ["", thumbnails]
    return "\n".join(lines) + "\n"


def _ratio_lines(table: pd.DataFrame) -> list[str]:
    """The per-class tables of the averages' resolution and FSC-area ratios (none without
    averages)."""
    lines = _per_class_lines(
        table,
        "average_ratio",
        "Each class's average over the particles predicted to be in it, turned by the model's "
        "orientations: its resolution (FSC 0.5 against the class's map) over that of the "
        "average of its true particles turned by the true orientations (1.00: as good). Once "
        "both reach Nyquist this ratio stops seeing errors:",
    )
    lines += _per_class_lines(
        table,
        "average_area",
        "The same averages' FSC area (the curve's mean up to Nyquist) over the true-pose "
        f"average's: the test that does not saturate (1.00: as good; below {AREA_RATIO_PASS} "
        "fails, which orientations 30° off or half flipped by 180° do for every large complex):",
    )
    return lines + _per_class_lines(
        table,
        "decoded_margin",
        "Each class's decoded mean (the decoder's rendering of the class's mean mu): its "
        "correlation with the class's map less that of the map's radial blob (the spherical "
        "average: size without shape; `class_averages.tsv`). Above 0: the decoder shows shape "
        "beyond size; at or below 0 fails:",
        digits=3,
    )


def _per_class_lines(table: pd.DataFrame, name: str, caption: str, digits: int = 2) -> list[str]:
    classes = [
        c.split(":", 1)[1][: -len("_mean")]
        for c in table.columns
        if c.startswith(f"{name}:") and c.endswith("_mean")
    ]
    if not classes:
        return []
    lines = [
        "",
        caption,
        "",
        "| variant | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
    ]
    for _, row in table.iterrows():
        cells = [_ratio_cell(row, f"{name}:{c}", digits) for c in classes]
        lines.append(f"| {row['variant']} | " + " | ".join(cells) + " |")
    return lines


def _ratio_cell(row: pd.Series, key: str, digits: int = 2) -> str:
    """The mean ± sd over the seeds with a finite value, and in how many seeds the class failed
    (a resolution ratio is infinite when the average never reached FSC 0.5; an area ratio fails
    below :data:`AREA_RATIO_PASS`, a decoded mean at or below its blob): a failure is counted,
    never left out silently."""
    failed = int(row.get(f"{key}_failed", 0) or 0)
    if not failed:
        return _cell(row, key, digits)
    rest = _cell(row, key, digits)
    return f"failed in {failed}" if rest == "–" else f"{rest}; failed in {failed}"


def _is_class(column: str) -> bool:
    return column.startswith("within_20deg:") and column.endswith("_mean")
