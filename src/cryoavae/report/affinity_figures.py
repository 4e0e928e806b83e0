"""Figures of the affinity prior."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage
from scipy.spatial.distance import squareform

from cryoavae.report.figure import save_figure

__all__ = ["cluster_order", "plot_affinity_heatmap"]

# Above this many classes the numbers no longer fit in the cells.
_MAX_ANNOTATED = 24


def cluster_order(a: np.ndarray) -> np.ndarray:
    """Order of the classes (n,) that puts similar classes next to each other.

    Average-linkage clustering on the distance 1 - a, leaves in optimal order, so the blocks of
    the heatmap are the groups the prior sees.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if n < 3:
        return np.arange(n)
    d = np.clip(1.0 - (a + a.T) / 2, 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    tree = linkage(squareform(d, checks=False), method="average", optimal_ordering=True)
    return leaves_list(tree)


def plot_affinity_heatmap(
    path: str | Path, class_names: Sequence[str], a: np.ndarray, title: str
) -> None:
    """Write a PNG heatmap of the affinity matrix ``a`` (n, n), ordered by clustering.

    Colours run from -1 (blue) to 1 (red) whatever the values, so heatmaps of different priors
    compare by eye; cells carry their values when n <= 24.
    """
    a = np.asarray(a, dtype=np.float64)
    names = [str(c) for c in class_names]
    order = cluster_order(a)
    m = a[np.ix_(order, order)]
    labels = [names[i] for i in order]
    n = len(labels)
    size = float(np.clip(0.45 * n + 2.5, 4.0, 16.0))
    fig, ax = plt.subplots(figsize=(size + 1.2, size))
    try:
        image = ax.imshow(m, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
        ax.set_xticks(range(n), labels, rotation=90)
        ax.set_yticks(range(n), labels)
        ax.set_title(title)
        if n <= _MAX_ANNOTATED:
            font = 9 if n <= 12 else 6
            rows, cols = np.indices(m.shape)
            for r, c, v in zip(rows.ravel(), cols.ravel(), m.ravel(), strict=True):
                ax.text(
                    c,
                    r,
                    f"{v:.2f}",
                    ha="center",
                    va="center",
                    fontsize=font,
                    color="white" if abs(v) > 0.6 else "black",
                )
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="affinity (cosine)")
        fig.tight_layout()
        save_figure(fig, path, dpi=120)
    finally:
        plt.close(fig)
