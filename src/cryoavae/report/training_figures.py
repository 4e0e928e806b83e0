"""The training history as a figure: did the loss terms settle, and did validation follow?

Drawn from the ``history.tsv`` that :func:`cryoavae.train.train_model` writes (one row per epoch).
Renders off-screen (Agg) and writes its PNG atomically, like the other report figures.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cryoavae.report.figure import save_figure

__all__ = ["plot_training_history"]

# (history column, panel title); the validation column is "val_" + column
LOSS_PANELS = (
    ("loss", "total loss"),
    ("reconstruction", "reconstruction"),
    ("kl", "KL divergence"),
    ("affinity", "affinity (mean |cos - A|)"),
)


def plot_training_history(path: str | os.PathLike, history: pd.DataFrame, title: str = "") -> None:
    """Loss terms per epoch (train solid, validation dashed), the beta and gamma schedules, and
    the training speed. ``history`` has the columns of :data:`cryoavae.train.HISTORY_COLUMNS`."""
    missing = [c for c in ("epoch", "beta", "gamma", "samples_per_s") if c not in history]
    if missing:
        raise ValueError(f"plot_training_history: history lacks columns {missing}")
    epoch = history["epoch"].to_numpy()
    marker = "o" if len(epoch) <= 30 else None  # a single epoch still shows as a point
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (column, name) in zip(axes.flat, LOSS_PANELS, strict=False):
        ax.plot(epoch, history[column], marker=marker, ms=3, label="train")
        val = history[f"val_{column}"].to_numpy(dtype=float)
        if np.isfinite(val).any():
            ax.plot(epoch, val, ls="--", marker=marker, ms=3, label="validation (z = mu)")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=8)

    weights = axes.flat[4]  # two axes, so gamma dashed: flat schedules would hide each other
    beta = weights.plot(epoch, history["beta"], color="tab:purple", lw=2.5, label="beta")
    weights.set_ylabel("beta", color="tab:purple")
    gamma_axis = weights.twinx()
    gamma = gamma_axis.plot(epoch, history["gamma"], color="tab:green", ls="--", label="gamma")
    gamma_axis.set_ylabel("gamma", color="tab:green")
    weights.legend(handles=beta + gamma, fontsize=8)
    weights.set_title("loss weights (schedules)", fontsize=10)
    weights.set_xlabel("epoch")

    speed = axes.flat[5]
    speed.plot(epoch, history["samples_per_s"], color="tab:grey", marker=marker, ms=3)
    speed.set_title("training speed (samples/s, validation included)", fontsize=10)
    speed.set_xlabel("epoch")
    speed.set_ylim(bottom=0)
    speed.grid(alpha=0.3)

    final = history.iloc[-1]
    last = f"last epoch: loss {final['loss']:.4g}"
    if np.isfinite(float(final.get("val_loss", np.nan))):
        last += f", validation loss {final['val_loss']:.4g}"
    headline = (
        f"{title + ': ' if title else ''}loss terms per epoch, training (solid) and validation "
        f"(dashed); {last}.\nA validation curve that rises while training falls means "
        "overfitting; validation encodes z = mu, so its KL and reconstruction are not sampled."
    )
    fig.suptitle(headline, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(fig, path)
