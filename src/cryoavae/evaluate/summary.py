"""The comparison table across model variants of a study."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

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
        ranked = [u for u in unseen.values() if u.get("match") is not None]  # prior ranks them
        row["unseen_matched"] = (
            f"{sum(bool(u['match']) for u in ranked)}/{len(ranked)}"
            if ranked or not unseen
            else "–"
        )
        row["epochs"] = s.get("epochs")
        rows.append(row)
    return pd.DataFrame(rows)


def summary_markdown(
    study: str, table: pd.DataFrame, metrics: Sequence[Mapping], figures: Mapping[str, str]
) -> str:
    """The study's results as a Markdown fragment for the README: one table row per variant,
    where each unseen class landed, and thumbnails of the first variant's figures.

    ``figures`` maps a caption to a path relative to the repository root (the README's folder).
    """
    lines = [
        f"**Study `{study}`** (numbers from its `metrics.json` files, written by the pipeline):",
        "",
        "| variant | accuracy | macro-F1 | silhouette | pose corr. | novelty AUROC | unseen "
        "matched | train s | device |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for _, row in table.iterrows():
        cells = [_fmt(row[c]) for c in ("accuracy", "macro_f1", "silhouette", "pose_correlation")]
        lines.append(
            f"| {row['variant']} | {' | '.join(cells)} | {_fmt(row['novelty_auroc'])} | "
            f"{row['unseen_matched']} | {_fmt(row['train_seconds'], 0)} | {row['device']} |"
        )
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
