"""The figure that compares a study's model variants (a sweep) side by side."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryoavae.report.figure import save_figure

METRICS = (
    ("accuracy", "accuracy (held out)"),
    ("macro_f1", "macro-F1 (held out)"),
    ("silhouette", "silhouette (cosine)"),
    ("pose_correlation", "pose correlation"),
    ("novelty_auroc", "novelty AUROC"),
)


def plot_variant_comparison(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Grouped bars: one group per metric, one bar per variant, value printed on each bar."""
    variants = table["variant"].astype(str).tolist()
    x = np.arange(len(METRICS))
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(2.2 * len(METRICS) + 1, 4.2))
    for k, variant in enumerate(variants):
        row = table.iloc[k]
        values = [float(row[m]) if pd.notna(row.get(m)) else np.nan for m, _ in METRICS]
        bars = ax.bar(x + (k - (len(variants) - 1) / 2) * width, values, width, label=variant)
        for bar, value in zip(bars, values, strict=True):
            if np.isfinite(value):
                ax.annotate(
                    f"{value:.2f}",
                    (bar.get_x() + bar.get_width() / 2, max(value, 0)),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                )
    ax.set_xticks(x, [label for _, label in METRICS])
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_ylim(min(-0.1, np.nanmin(table[[m for m, _ in METRICS]].to_numpy(float)) - 0.1), 1.1)
    ax.set_ylabel("value (1 is best)")
    ax.set_title("Model variants of the study, side by side")
    ax.legend(title="variant", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)


def plot_resources(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Peak memory and wall time of every job, one bar each, the largest first."""
    labels = [
        r if j == "-" else f"{r} {j}" for r, j in zip(table["rule"], table["job"], strict=True)
    ]
    height = max(2.5, 0.28 * len(table) + 1.2)
    fig, (rss, time) = plt.subplots(1, 2, figsize=(11, height), sharey=True)
    y = np.arange(len(table))
    rss.barh(y, table["max_rss_mb"], color="tab:blue")
    time.barh(y, table["seconds"], color="tab:orange")
    rss.set_yticks(y, labels, fontsize=7)
    rss.invert_yaxis()
    rss.set_xlabel("peak memory (max RSS, MB)")
    time.set_xlabel("wall time (s)")
    fig.suptitle("What each job of the study cost (Snakemake benchmark files)")
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
