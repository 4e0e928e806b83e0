"""The class averages' Fourier shell correlations with the classes' maps."""

from __future__ import annotations

import math
import os

import matplotlib.pyplot as plt

from cryoavae.report.figure import save_figure


def plot_average_fsc(
    path: str | os.PathLike,
    curves: dict,
    voxel_size_angstrom: float,
    angles_from: str | None = None,
) -> None:
    """One panel per class: FSC against the noise-free map of the averages (module
    :mod:`cryoavae.evaluate.averages`): the model's classes and orientations (solid), the true
    members with the model's orientations (dash-dot) and with the true ones (dashed), with the 0.5
    and 0.143 thresholds. ``angles_from``: where the table's angles came from when they are not a
    simulation's truth (e.g. "the STAR file's angles"); the figure then says so instead of
    "true"."""
    known = "true" if angles_from is None else "given"  # the classes and angles of the table
    angles = "the true orientations" if angles_from is None else angles_from
    classes = list(dict.fromkeys(c for c, _ in curves))
    if not classes:
        fig, ax = plt.subplots(figsize=(6, 2))
        ax.axis("off")
        ax.text(
            0.5,
            0.5,
            "no class averages to compare with a map (no maps or no poses)",
            ha="center",
            va="center",
        )
        save_figure(fig, path)
        return
    cols = min(4, len(classes))
    rows = math.ceil(len(classes) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, c in zip(axes.ravel(), classes, strict=False):
        for label, style, legend in (
            ("predicted", "-", "model's class and pose"),
            ("inferred", "-.", f"{known} class, model's pose"),
            (known, "--", f"given class, {angles}" if angles_from else "true class and pose"),
        ):
            if (c, label) in curves:
                frequency, curve = curves[(c, label)]
                ax.plot(frequency / voxel_size_angstrom, curve, style, label=legend)
        for threshold in (0.5, 0.143):
            ax.axhline(threshold, color="grey", linewidth=0.6)
        ax.set_title(c, fontsize=9)
        ax.set_ylim(-0.2, 1.05)
        ax.set_xlabel("spatial frequency (1/Å)", fontsize=8)
    for ax in axes.ravel()[len(classes) :]:
        ax.axis("off")
    axes[0, 0].set_ylabel("FSC with the class's map")
    axes[0, 0].legend(fontsize=7)
    inferred = any(label == "inferred" for _, label in curves)
    fig.suptitle(
        f"Class averages from the model's classes and orientations, against {angles}"
        if inferred
        else f"Class averages from {angles} (the model's pose gives none)"
    )
    fig.tight_layout()
    save_figure(fig, path)
