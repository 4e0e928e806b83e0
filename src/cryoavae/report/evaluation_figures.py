"""Figures of one model variant's evaluation, drawn from an :class:`EvaluationResult`.

Each figure states in its title what it shows and how to read the number on it, so that it stands
on its own in the report. Every writer renders off-screen (Agg) and writes its PNG atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import patheffects
from matplotlib.lines import Line2D

from cryoavae.evaluate import EvaluationResult, confusion_fractions
from cryoavae.report.figure import save_figure

__all__ = [
    "plot_confusion_matrix",
    "plot_pose_correlation",
    "plot_prior_vs_latent",
    "plot_umap",
]

# Fill colours of unseen-class stars (black-edged), distinct from the seen classes' palette.
UNSEEN_FILLS = ("white", "gold", "violet", "lightgrey", "cyan", "orange")
OUTLINE = [patheffects.withStroke(linewidth=3, foreground="white")]


def _class_colours(classes: Sequence[str]) -> dict[str, tuple]:
    """One distinct colour per class: tab10 up to 10 classes, tab20 up to 20, else turbo."""
    n = len(classes)
    if n <= 10:
        colours = plt.get_cmap("tab10").colors[:n]
    elif n <= 20:
        colours = plt.get_cmap("tab20").colors[:n]
    else:
        colours = plt.get_cmap("turbo")(np.linspace(0.05, 0.95, n))
    return {c: tuple(colours[i]) for i, c in enumerate(classes)}


def _fmt(value, spec: str = ".2f") -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)


def plot_umap(path: str | os.PathLike, result: EvaluationResult) -> None:
    """UMAP of every particle's mu: seen classes coloured and named at their centroids, unseen
    classes as black-edged stars named "<class> (unseen)"."""
    if result.umap_xy is None:
        raise ValueError("plot_umap: the result has no UMAP; evaluate with embed_umap=True")
    xy, names, split = result.umap_xy, result.umap_class, result.umap_split
    colours = _class_colours(result.seen_classes)
    fig, ax = plt.subplots(figsize=(8.5, 6.5), layout="constrained")
    handles = []
    for c in result.seen_classes:
        pts = xy[(names == c) & (split != "unseen")]
        ax.scatter(pts[:, 0], pts[:, 1], s=5, alpha=0.5, color=colours[c], linewidths=0)
        handles.append(Line2D([], [], ls="", marker="o", color=colours[c], label=c))
    for i, c in enumerate(result.unseen_classes):
        pts = xy[(names == c) & (split == "unseen")]
        fill = UNSEEN_FILLS[i % len(UNSEEN_FILLS)]
        ax.scatter(
            pts[:, 0],
            pts[:, 1],
            s=45,
            marker="*",
            facecolor=fill,
            edgecolor="black",
            linewidths=0.6,
            zorder=3,
        )
        handles.append(
            Line2D([], [], ls="", marker="*", ms=11, mfc=fill, mec="black", label=f"{c} (unseen)")
        )
    # Names at each class's centroid (median, robust to stragglers), drawn last to stay on top;
    # unseen names sit just above their stars so that the stars stay visible.
    for c in (*result.seen_classes, *result.unseen_classes):
        pts = xy[names == c]
        if not len(pts):
            continue
        unseen = c not in result.seen_classes
        ax.annotate(
            f"{c} (unseen)" if unseen else c,
            np.median(pts, axis=0),
            xytext=(0, 12 if unseen else 0),
            textcoords="offset points",
            ha="center",
            va="bottom" if unseen else "center",
            fontsize=10,
            fontweight="bold",
            path_effects=OUTLINE,
            zorder=4,
        )
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("UMAP 1")
    ax.set_ylabel("UMAP 2")
    m = result.metrics
    ax.set_title(
        f"UMAP of the latent means mu (cosine), {len(xy)} particles; "
        f"silhouette ({m.get('scored_split', 'val')}, cosine) = {_fmt(m.get('silhouette'))}\n"
        f"dots: seen classes (train and held out); stars: unseen classes, never trained on",
        fontsize=10,
    )
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        fontsize=9,
        title="class",
        frameon=False,
    )
    save_figure(fig, path)


def _heatmap(ax, values, labels_y, labels_x, vmin, vmax, cmap, number_format, title):
    """Matrix as an image with its values written in the cells (if there is room)."""
    image = ax.imshow(values, vmin=vmin, vmax=vmax, cmap=cmap)
    ax.set_xticks(range(len(labels_x)), labels_x, rotation=45, ha="right", fontsize=9)
    ax.set_yticks(range(len(labels_y)), labels_y, fontsize=9)
    ax.set_title(title, fontsize=10)
    if max(values.shape) <= 20:
        # White text on dark cells: the cell colour's luminance decides, whatever the colour map.
        rgba = image.cmap(image.norm(np.where(np.isfinite(values), values, vmin)))
        dark = rgba[..., :3] @ np.array([0.299, 0.587, 0.114]) < 0.5
        for (i, j), v in np.ndenumerate(values):
            text = "" if not np.isfinite(v) else format(v, number_format)
            color = "white" if dark[i, j] else "black"
            ax.text(j, i, text, ha="center", va="center", fontsize=8, color=color)
    return image


def plot_confusion_matrix(path: str | os.PathLike, result: EvaluationResult) -> None:
    """Confusion matrix of the held-out particles (``scored_split``): counts (left) and
    row-normalised (right)."""
    counts = np.asarray(result.confusion_counts)
    fractions = confusion_fractions(result)
    classes = list(result.seen_classes)
    side = max(4.0, 0.45 * len(classes) + 2.0)
    fig, axes = plt.subplots(1, 2, figsize=(2 * side + 1.5, side + 1.0), layout="constrained")
    image = _heatmap(
        axes[0], counts, classes, classes, 0, max(int(counts.max()), 1), "Blues", "d", "counts"
    )
    fig.colorbar(image, ax=axes[0], shrink=0.8, label="particles")
    image = _heatmap(
        axes[1],
        fractions,
        classes,
        classes,
        0.0,
        1.0,
        "Blues",
        ".2f",
        "fraction of each true class (diagonal = recall)",
    )
    fig.colorbar(image, ax=axes[1], shrink=0.8, label="fraction of row")
    for ax in axes:
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
    m = result.metrics
    fig.suptitle(
        f"{m.get('classifier', 'classifier')} trained on mu of {m.get('n_train')} train particles, "
        f"scored on {int(counts.sum())} {m.get('scored_split', 'val')} particles\n"
        f"accuracy {_fmt(m.get('accuracy'), '.3f')}, macro-F1 {_fmt(m.get('macro_f1'), '.3f')}",
        fontsize=11,
    )
    save_figure(fig, path)


def _message_figure(path, title: str, message: str) -> None:
    fig, ax = plt.subplots(figsize=(7, 3), layout="constrained")
    ax.axis("off")
    ax.set_title(title, fontsize=11)
    ax.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=10)
    save_figure(fig, path)


def _panel_grid(n: int, panel_inches: float = 3.0, max_columns: int = 4):
    columns = min(n, max_columns)
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(panel_inches * columns, panel_inches * rows + 1.2),
        layout="constrained",
        squeeze=False,
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, axes.flat[:n]


def plot_pose_correlation(path: str | os.PathLike, result: EvaluationResult) -> None:
    """Pose against the true orientation, one panel per seen class (held-out particles).

    2-D: the chosen pose feature against the true in-plane angle; 3-D: rotation-matrix entries
    predicted from the pose against the true ones. Without pose dimensions: a note saying so.
    With the model's orientations (3-D, the orientation step's), their errors instead: that is
    the orientation the study gives, and the pose channel's read-out would misstate it.
    """
    if result.orientation_errors is not None and len(result.orientation_errors):
        _plot_orientation_errors(path, result)
        return
    m, table = result.metrics, result.pose_table
    if table is None or table.empty:
        _message_figure(path, "Pose", str(m.get("pose_metric_description", "No pose metrics.")))
        return
    classes = [c for c in result.seen_classes if c in set(table["class_name"])]
    colours = _class_colours(result.seen_classes)
    per_class = m.get("pose_correlation_per_class", {})
    predictor = m.get("pose_predictor_per_class", {})
    fig, axes = _panel_grid(len(classes))
    for ax, c in zip(axes, classes, strict=True):
        rows = table[table["class_name"] == c]
        error = float(np.median(np.abs(rows["error_deg"])))
        if result.ndim == 2:
            ax.scatter(
                rows["true_angle_deg"],
                rows["pose_feature"],
                s=6,
                alpha=0.6,
                color=colours[c],
                linewidths=0,
            )
            ax.set_xlabel("true in-plane angle (deg)")
            ax.set_ylabel(predictor.get(c, "pose"))
            ax.set_title(f"{c}: |r| = {_fmt(per_class.get(c))}, error {error:.0f} deg", fontsize=9)
        else:
            true = rows.filter(like="true_r").to_numpy().reshape(-1)
            predicted = rows.filter(like="predicted_r").to_numpy().reshape(-1)
            ax.scatter(true, predicted, s=3, alpha=0.3, color=colours[c], linewidths=0)
            ax.plot([-1, 1], [-1, 1], color="black", lw=0.8, ls="--")
            ax.set_xlim(-1.1, 1.1)
            ax.set_ylim(-1.6, 1.6)
            ax.set_xlabel("true rotation-matrix entry")
            ax.set_ylabel("predicted from pose")
            ax.set_title(f"{c}: r = {_fmt(per_class.get(c))}, error {error:.0f} deg", fontsize=9)
    if result.ndim == 2:
        headline = (
            f"Pose vs true in-plane angle ({m.get('scored_split', 'val')} particles). "
            f"Mean |r| over classes = "
            f"{_fmt(m.get('pose_correlation'))}; median angle error of the map fitted on train = "
            f"{_fmt(m.get('pose_angle_median_error_deg'), '.0f')} deg\n"
            "|r| = 1: the pose tracks the angle; 0: no relation (the sign may differ by class). "
            "A 180-degree symmetric shape cannot be better than its symmetry allows."
        )
    else:
        headline = (
            "True rotation predicted from the pose (quadratic map fitted on train, "
            f"{m.get('scored_split', 'val')} particles shown). "
            f"Mean r = {_fmt(m.get('pose_correlation'))}; median geodesic error = "
            f"{_fmt(m.get('pose_angle_median_error_deg'), '.0f')} deg\n"
            "r = 1: the pose determines the orientation; 0: it carries none (error about 132 deg "
            "for orientations over all of SO(3)). Symmetric molecules raise the error."
        )
    fig.suptitle(headline, fontsize=10)
    save_figure(fig, path)


def _plot_orientation_errors(path: str | os.PathLike, result: EvaluationResult) -> None:
    """Per seen class, the histogram of its scored particles' orientation errors (degrees, after
    the class's frame alignment, modulo its symmetry), with the fractions within 20 and 40
    degrees and the median in each title: a class that fails shows a flat histogram whatever
    the pooled median says."""
    m, errors = result.metrics, result.orientation_errors
    classes = [c for c in result.seen_classes if c in set(errors["class_name"])]
    colours = _class_colours(result.seen_classes)
    fig, axes = _panel_grid(len(classes))
    bins = np.arange(0.0, 185.0, 5.0)
    for ax, c in zip(axes, classes, strict=True):
        e = errors.loc[errors["class_name"] == c, "error_deg"].to_numpy(np.float64)
        ax.hist(e, bins=bins, color=colours[c])
        ax.axvline(20.0, color="black", lw=0.8, ls="--")
        ax.set_xlim(0, 180)
        ax.set_xlabel("orientation error (deg)")
        ax.set_ylabel("particles")
        ax.set_title(
            f"{c}: median {np.median(e):.0f} deg\n"
            f"{np.mean(e <= 20):.0%} within 20, {np.mean(e <= 40):.0%} within 40",
            fontsize=9,
        )
    fig.suptitle(
        f"The model's orientations against the truth ({m.get('scored_split', 'val')} particles; "
        "each class's frame aligned on its train particles, symmetric copies counted). "
        f"Within 20 deg: {_fmt(m.get('pose_within_20deg'))} of all\n"
        "Random orientations over SO(3) put 0.6 % within 20 deg and most particles beyond 90.",
        fontsize=10,
    )
    save_figure(fig, path)


def _prior_scatter(
    ax, prior: np.ndarray, cosine: np.ndarray, classes: list[str], n_seen: int, metrics: dict
) -> None:
    """The scatter panel: latent cosine against prior affinity per class pair, with the line
    where they agree and the agreement metrics in the title."""
    seen_i, seen_j = np.triu_indices(n_seen, k=1)
    ax.scatter(
        prior[seen_i, seen_j],
        cosine[seen_i, seen_j],
        s=30,
        color="tab:blue",
        edgecolor="black",
        linewidths=0.4,
        label="seen - seen pairs",
    )
    if len(seen_i) <= 15:
        for i, j in zip(seen_i, seen_j, strict=True):
            ax.annotate(
                f"{classes[i]}-{classes[j]}",
                (prior[i, j], cosine[i, j]),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
    if len(classes) > n_seen:
        block_prior, block_cos = prior[n_seen:, :n_seen], cosine[n_seen:, :n_seen]
        ax.scatter(
            block_prior.reshape(-1),
            block_cos.reshape(-1),
            s=80,
            marker="*",
            facecolor="white",
            edgecolor="black",
            linewidths=0.7,
            label="unseen - seen pairs",
        )
    finite = np.concatenate([prior[np.isfinite(cosine)], cosine[np.isfinite(cosine)], [-0.1, 1.0]])
    low, high = finite.min() - 0.05, finite.max() + 0.05
    ax.plot([low, high], [low, high], color="grey", lw=0.8, ls="--", label="latent = prior")
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_aspect("equal")
    ax.set_xlabel("prior affinity")
    ax.set_ylabel("mean cosine of mu between the classes' particles")
    ax.legend(fontsize=8, loc="upper left")
    n_pairs = int(np.isfinite(cosine[seen_i, seen_j]).sum())
    ax.set_title(
        f"Pearson r = {_fmt(metrics.get('prior_correlation'))}, Spearman = "
        f"{_fmt(metrics.get('prior_correlation_spearman'))}\nmean |latent - prior| = "
        f"{_fmt(metrics.get('prior_mean_abs_error'))} over {n_pairs} seen pairs",
        fontsize=10,
    )


def plot_prior_vs_latent(path: str | os.PathLike, result: EvaluationResult) -> None:
    """Latent class cosine against the prior affinity: scatter over class pairs, and both matrices.

    Circles: pairs of seen classes (the correlation in the title is over these); stars: an unseen
    class against each seen class, for which the prior was never shown to the model.
    """
    cosine = result.class_cosine.to_numpy()
    prior = result.class_affinity.to_numpy()
    classes = list(result.class_cosine.index)
    n_seen = len(result.seen_classes)
    side = max(4.0, 0.4 * len(classes) + 2.0)
    fig, axes = plt.subplots(1, 3, figsize=(3 * side + 2, side + 1.2), layout="constrained")

    _prior_scatter(axes[0], prior, cosine, classes, n_seen, result.metrics)
    labels = [c if i < n_seen else f"{c} (unseen)" for i, c in enumerate(classes)]
    image = _heatmap(axes[1], prior, labels, labels, -1.0, 1.0, "RdBu_r", ".2f", "prior affinity")
    _heatmap(
        axes[2],
        cosine,
        labels,
        labels,
        -1.0,
        1.0,
        "RdBu_r",
        ".2f",
        "latent: mean cosine of mu (val / unseen particles)",
    )
    fig.colorbar(image, ax=axes[1:], shrink=0.8, label="cosine similarity / affinity")
    fig.suptitle(
        "Prior versus learned latent space: points on the dashed line mean the latent space took "
        "on the prior's structure",
        fontsize=11,
    )
    save_figure(fig, path)
