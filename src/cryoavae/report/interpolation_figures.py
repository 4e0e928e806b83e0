"""Figure of a model's latent interpolations
(:class:`cryoavae.inference.interpolate.Interpolations`).

One row per class pair ("A -> B") and one per pose sweep ("pose sweep: class"), one column per
step. 3-D volumes are shown by their central z slice. Each row has its own grey scale so that
faint and strong classes both stay readable; within a row the scale is shared, so brightness
changes along the row are real.
"""

from __future__ import annotations

import os

import matplotlib.pyplot as plt
import numpy as np

from cryoavae.inference.interpolate import Interpolations
from cryoavae.report.figure import save_figure

__all__ = ["plot_interpolations"]

PANEL_INCHES = 1.15


def _as_images(stack: np.ndarray, ndim: int) -> np.ndarray:
    """``(n, h, w)`` images, or the central z slices ``(n, h, w)`` of ``(n, d, h, w)`` volumes."""
    return stack[:, stack.shape[1] // 2] if ndim == 3 else stack


def _rows(interpolations: Interpolations) -> list[tuple[str, list[str], np.ndarray]]:
    """``[(row label, column labels, images (n_steps, h, w))]`` in display order."""
    rows = []
    for pair in interpolations.class_pairs:
        label = f"{pair.class_a} -> {pair.class_b}\n{pair.why}, cos {pair.centroid_cosine:.2f}"
        columns = [f"t = {t:.2f}" for t in pair.fractions]
        rows.append((label, columns, _as_images(pair.images, interpolations.ndim)))
    for sweep in interpolations.pose_sweeps:
        if sweep.position_unit == "degrees":
            columns = [f"{a:.0f}°" for a in sweep.positions]
        else:
            columns = [f"s = {s:+.2g}" for s in sweep.positions]
        label = f"pose sweep: {sweep.class_name}"
        rows.append((label, columns, _as_images(sweep.images, interpolations.ndim)))
    return rows


def _title(interpolations: Interpolations) -> str:
    what = (
        "central z slice of each decoded volume" if interpolations.ndim == 3 else "decoded images"
    )
    lines = [f"Latent interpolations of the trained decoder ({what}; grey scale shared per row)"]
    if interpolations.class_pairs:
        lines.append(
            "A -> B rows: z moves in a straight line from class A's mean mu (t = 0) to class B's "
            "(t = 1), train particles, pose fixed at their mean"
        )
    if interpolations.pose_sweeps:
        if interpolations.pose_encoding == "circular":
            lines.append(
                "pose sweep rows: the class's mean mu with the in-plane angle going round the "
                "full circle"
            )
        else:
            lines.append(
                "pose sweep rows: the class's mean mu with the pose moved along its train "
                "particles' principal pose direction, 5th to 95th percentile (s from the mean)"
            )
    lines.extend(interpolations.notes)
    return "\n".join(lines)


def plot_interpolations(
    path: str | os.PathLike, interpolations: Interpolations, ndim: int | None = None
) -> None:
    """Draw the interpolation grid and write it as a PNG atomically.

    ``ndim`` (2 or 3) says whether the decoded outputs are images or volumes; ``None`` takes it
    from ``interpolations``. Raises ValueError when there is nothing to draw or ``ndim``
    disagrees with the stored outputs.
    """
    ndim = interpolations.ndim if ndim is None else ndim
    if ndim != interpolations.ndim:
        raise ValueError(
            f"plot_interpolations: ndim = {ndim} but the interpolations are {interpolations.ndim}-D"
        )
    rows = _rows(interpolations)
    if not rows:
        raise ValueError("plot_interpolations: no class pair and no pose sweep to draw")
    n_rows, n_cols = len(rows), max(len(columns) for _, columns, _ in rows)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(PANEL_INCHES * n_cols + 1.6, PANEL_INCHES * n_rows + 1.3),
        layout="constrained",
        squeeze=False,
    )
    for r, (label, columns, images) in enumerate(rows):
        vmin, vmax = float(images.min()), float(images.max())
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(images):
                ax.set_axis_off()
                continue
            ax.imshow(images[c], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
            ax.set_title(columns[c], fontsize=7, pad=2)
        axes[r, 0].set_ylabel(label, fontsize=8, rotation=0, ha="right", va="center")
    fig.suptitle(_title(interpolations), fontsize=9)
    save_figure(fig, path)
