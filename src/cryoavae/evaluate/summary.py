"""The comparison table across model variants of a study."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

#: The figures of a study's first variant that its summary.md shows, beside metrics.json.
SUMMARY_FIGURES = ("umap", "confusion_matrix", "pose_correlation")

COLUMNS = (
    "accuracy",
    "macro_f1",
    "silhouette",
    "pose_correlation",
    "prior_correlation",
    "novelty_auroc",
    "novelty_unseen_recall",
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
        ranked = [u for u in unseen.values() if u.get("match") is not None]  # prior ranks them
        row["unseen_matched"] = (
            f"{sum(bool(u['match']) for u in ranked)}/{len(ranked)}"
            if ranked or not unseen
            else "–"
        )
        row["epochs"] = s.get("epochs")
        rows.append(row)
    return pd.DataFrame(rows)


def figure_links(metrics_json: str | os.PathLike, markdown: str | os.PathLike) -> dict[str, str]:
    """Caption -> link of the :data:`SUMMARY_FIGURES` beside ``metrics_json`` (the evaluation
    writes them there), relative to the folder of ``markdown``: the study's own figures, so the
    links work wherever the results folder is (``tools/update_readme_results.py`` copies them to
    ``docs/images/`` for the README and rewrites the links there)."""
    folder = Path(os.path.relpath(Path(metrics_json).parent, Path(markdown).parent))
    return {name: (folder / f"{name}.png").as_posix() for name in SUMMARY_FIGURES}


def angles_note(angles_from: str | None) -> list[str]:
    """A line saying what the pose scores compare with, when it is not a simulation's truth."""
    if angles_from is None:
        return []
    return [
        "",
        f"The pose scores compare the model's pose with {angles_from}, not with a known truth.",
    ]


def summary_markdown(
    study: str,
    table: pd.DataFrame,
    metrics: Sequence[Mapping],
    figures: Mapping[str, str],
    angles_from: str | None = None,
) -> str:
    """The study's results as a Markdown fragment: one table row per variant, where each unseen
    class landed, and thumbnails of the first variant's figures.

    ``figures`` maps a caption to a link relative to the Markdown file's folder
    (:func:`figure_links`); ``angles_from`` says what the pose was scored against when it is not
    a simulation's truth (e.g. "the STAR file's angles").
    """
    lines = [
        f"**Study `{study}`** (numbers from its `metrics.json` files, written by the pipeline):",
        "",
        "| variant | accuracy | macro-F1 | silhouette | pose corr. | novelty AUROC | unseen "
        "flagged | unseen matched | train s | device |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        cells = [_fmt(row[c]) for c in ("accuracy", "macro_f1", "silhouette", "pose_correlation")]
        lines.append(
            f"| {row['variant']} | {' | '.join(cells)} | {_fmt(row['novelty_auroc'])} | "
            f"{_fmt(row['novelty_unseen_recall'])} | {row['unseen_matched']} | "
            f"{_fmt(row['train_seconds'], 0)} | {row['device']} |"
        )
    lines += angles_note(angles_from)
    lines.append("")
    for name, m in zip(table["variant"], metrics, strict=True):
        for cls, u in (m.get("unseen") or {}).items():
            if "match" in u and u["match"] is None:  # an identity prior ranks no seen class
                where = "the prior ranks no seen class above another (uniform or none)"
            else:
                where = (
                    f"its highest-affinity seen class is {u.get('highest_affinity_seen')} "
                    f"({'match' if u.get('match') else 'no match'})"
                )
            lines.append(
                f"- `{name}`: unseen {cls} lands nearest {u.get('nearest_seen')}; {where}."
            )
    if figures:
        lines += [
            "",
            " ".join(f'<img src="{p}" alt="{c}" width="260">' for c, p in figures.items()),
        ]
    return "\n".join(lines) + "\n"


def _fmt(value, digits: int = 3) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if number != number else f"{number:.{digits}f}"


RESOURCE_COLUMNS = {
    "s": "seconds",
    "max_rss": "max_rss_mb",
    "io_in": "io_in_mb",
    "io_out": "io_out_mb",
}


def resource_table(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per job from Snakemake's benchmark files (``.../benchmarks/<rule>[/<job>].tsv``):
    rule, job, seconds, max_rss_mb, io_in_mb, io_out_mb, sorted by peak memory."""
    rows = []
    for path in map(Path, paths):
        parts = path.with_suffix("").parts
        parts = parts[len(parts) - parts[::-1].index("benchmarks") :]
        measured = pd.read_csv(path, sep="\t").iloc[-1]  # the last run of the job
        row = {"rule": parts[0], "job": "/".join(parts[1:]) or "-"}
        for source, name in RESOURCE_COLUMNS.items():
            value = pd.to_numeric(measured.get(source), errors="coerce")
            row[name] = float(value) if pd.notna(value) else float("nan")
        rows.append(row)
    columns = ["rule", "job", *RESOURCE_COLUMNS.values()]
    table = pd.DataFrame(rows, columns=columns)
    return table.sort_values("max_rss_mb", ascending=False, ignore_index=True)


# --------------------------------------------------------------------------- the console's end

MAX_VARIANT_LINES = 8
MAX_UNSEEN_CLASSES = 3
KEYS = ("macro_f1", "accuracy")  # the headline scores of each variant, in this order


def run_summary(
    study_dir: str | os.PathLike,
    study: str,
    seeds: Sequence[int],
    variants: Sequence[str],
    report_command: str,
) -> list[str]:
    """The few lines (at most 14) a successful run ends the console with: each variant's macro-F1
    and accuracy (mean over the seeds whose ``metrics.json`` exist), where its unseen classes
    landed, and the files to open next, so that a user need not dig through the job log.

    Read from the files on disk alone; none (a partial target that stopped before evaluation)
    gives no lines, and an unreadable one is left out: a summary must never fail a run.
    """
    study_dir = Path(study_dir)
    found = {}
    for variant in variants:
        runs = [_metrics(study_dir / f"seed{s}/models/{variant}/metrics.json") for s in seeds]
        if any(runs):
            found[variant] = [m for m in runs if m]
    if not found:
        return []
    runs = [m for ms in found.values() for m in ms]
    split = "/".join(sorted({str(m.get("scored_split", "val")) for m in runs}))
    lines = [f"cryoavae: study {study}, scored on the {split} split:"]
    for variant, ms in list(found.items())[:MAX_VARIANT_LINES]:
        lines.append(f"  {variant}: {_variant_scores(ms)}{_unseen_landing(ms)}")
    if len(found) > MAX_VARIANT_LINES:
        lines.append(f"  ... {len(found) - MAX_VARIANT_LINES} more variants in summary.md")
    return lines + _files_to_open(study_dir, seeds, list(found), report_command)


def _metrics(path: Path) -> dict | None:
    """A metrics.json, None when it is missing, unreadable or not an object."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _variant_scores(runs: Sequence[Mapping]) -> str:
    """``macro-F1 0.812 (accuracy 0.850)``; over several seeds the mean ± sd and their count."""
    macro_f1, accuracy = (_mean_sd([_number(m.get(k)) for m in runs]) for k in KEYS)
    seeds = f" over {len(runs)} seeds" if len(runs) > 1 else ""
    return f"macro-F1 {macro_f1} (accuracy {accuracy}){seeds}"


def _mean_sd(values: Sequence[float]) -> str:
    finite = [v for v in values if v == v]
    if not finite:
        return "–"
    mean = sum(finite) / len(finite)
    if len(finite) == 1:
        return f"{mean:.3f}"
    sd = (sum((v - mean) ** 2 for v in finite) / (len(finite) - 1)) ** 0.5
    return f"{mean:.3f} ± {sd:.3f}"


def _unseen_landing(runs: Sequence[Mapping]) -> str:
    """``; unseen 3h84 → 1s3x (prior agrees)``: each unseen class's nearest seen class (the most
    common over the seeds, with how many agree) and whether the prior put it there too."""
    classes = list(dict.fromkeys(c for m in runs for c in (m.get("unseen") or {})))
    if not classes:
        return ""
    parts = []
    for cls in classes[:MAX_UNSEEN_CLASSES]:
        reports = [(m.get("unseen") or {}).get(cls) or {} for m in runs]
        nearest = [str(r.get("nearest_seen")) for r in reports if r.get("nearest_seen")]
        if not nearest:
            continue
        landed = max(dict.fromkeys(nearest), key=nearest.count)
        agree = f" in {nearest.count(landed)} of {len(runs)} seeds" if len(runs) > 1 else ""
        prior = next((r.get("highest_affinity_seen") for r in reports if r), None)
        verdict = {None: "", landed: " (prior agrees)"}.get(prior, f" (prior: {prior})")
        parts.append(f"{cls} → {landed}{agree}{verdict}")
    hidden = len(classes) - MAX_UNSEEN_CLASSES
    more = f", +{hidden} more" if hidden > 0 else ""
    return f"; unseen {', '.join(parts)}{more}" if parts else ""


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _files_to_open(
    study_dir: Path, seeds: Sequence[int], variants: Sequence[str], report_command: str
) -> list[str]:
    """The study's summary.md, its first annotated particle table and the report command."""
    lines = ["Open:"]
    summary = study_dir / "summary.md"
    if summary.is_file():
        lines.append(f"  {summary}: every variant's metrics and figures")
    annotated = [
        study_dir / f"seed{s}" / "models" / v / "particles_annotated.star"
        for s in seeds
        for v in variants
    ]
    first = next((path for path in annotated if path.is_file()), None)
    if first is not None:
        each = " (one per variant and seed)" if len(annotated) > 1 else ""
        lines.append(f"  {first}: the particles with the cryoavae* columns{each}")
    lines.append(f"  {report_command}: every figure in one HTML page")
    return lines
