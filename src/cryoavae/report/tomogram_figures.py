"""Figures of simulated tomograms: a central slice with the particles marked, and a gallery of
extracted subtomograms per class."""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Protocol

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.patches import Circle
from scipy import ndimage

from cryoavae import particles as P
from cryoavae.report.figure import save_figure

__all__ = ["plot_tomogram_slice", "plot_tomogram_particles"]

#: Gaussian low-pass (voxels) of the displayed slices: at 10 Å a WBP slice is shot noise first.
_DISPLAY_SIGMA_PX = 1.5


class TomogramView(Protocol):
    """What the slice figure reads of a simulated tomogram (the sources' ``SimulatedTomogram``
    has these; the report does not import a particle source)."""

    name: str
    plan: Any
    central_slice: np.ndarray
    central_z: int
    radii_px: np.ndarray
    class_names: Sequence[str]
    voxel_size_angstrom: float


def _colours(n: int) -> np.ndarray:
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return np.array([cmap(i % cmap.N) for i in range(n)])


def _shown(image: np.ndarray) -> tuple[np.ndarray, float, float]:
    smooth = ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), _DISPLAY_SIGMA_PX)
    low, high = np.percentile(smooth, [1, 99.5])
    return smooth, float(low), float(high)


def plot_tomogram_slice(path: str | os.PathLike, tomogram: TomogramView) -> None:
    """The tomogram's central z slice, low-passed for display, with a circle on every particle
    the slice cuts (its packing sphere's cross-section), coloured by class."""
    plan = tomogram.plan.sample
    slice_yx = tomogram.central_slice
    z0 = tomogram.central_z
    radii = tomogram.radii_px[plan.class_index]
    dz = plan.positions_px[:, 2] - z0
    cut = np.abs(dz) < radii
    names = tomogram.class_names
    colours = _colours(len(names))
    height, width = slice_yx.shape
    scale = 9.0 / max(height, width)
    fig, ax = plt.subplots(figsize=(width * scale + 2.6, height * scale + 0.8))
    try:
        shown, low, high = _shown(slice_yx)
        ax.imshow(shown, cmap="gray", vmin=low, vmax=high, origin="lower")
        for p in np.flatnonzero(cut):
            x, y = plan.positions_px[p, :2]
            r = float(np.sqrt(radii[p] ** 2 - dz[p] ** 2))
            ax.add_patch(Circle((x, y), r, fill=False, lw=1.0, color=colours[plan.class_index[p]]))
        for c, name in enumerate(names):
            n = int((plan.class_index[cut] == c).sum())
            ax.plot([], [], "o", mfc="none", color=colours[c], label=f"{name} ({n})")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        ax.set_xlabel("x (voxels)")
        ax.set_ylabel("y (voxels)")
        ax.set_title(
            f"{tomogram.name}: z = {z0} of {len(plan)} particles, "
            f"{tomogram.voxel_size_angstrom:g} Å/voxel (display low-pass "
            f"{_DISPLAY_SIGMA_PX:g} voxels)",
            fontsize=9,
        )
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    save_figure(fig, path)


def plot_tomogram_particles(
    path: str | os.PathLike,
    star_paths: Sequence[str | os.PathLike],
    class_names: Sequence[str],
    unseen: Collection[str],
    seed: int,
    per_class: int = 6,
) -> None:
    """Up to ``per_class`` extracted subtomograms of every class (a seeded draw across the
    shards' tables), each shown as the mean of its five central z slices."""
    tables = []
    for star in star_paths:
        table = P.read_particle_table(star)
        index, stacks = P.split_image_references(table[P.IMAGE])
        table["_index"], table["_stack"] = index, [str(Path(star).parent / s) for s in stacks]
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    rng = np.random.default_rng(seed)
    stacks = {name: P.open_stack(name, box_ndim=3) for name in table["_stack"].unique()}
    present = [c for c in class_names if (table[P.CLASS_NAME] == c).any()]
    present += sorted(set(table[P.CLASS_NAME]) - set(class_names))  # e.g. background picks
    rows = max(1, len(present))
    fig, axes = plt.subplots(rows, per_class, figsize=(1.3 * per_class + 1.2, 1.3 * rows + 0.4))
    axes = np.atleast_2d(axes).reshape(rows, per_class)
    try:
        for r, name in enumerate(present):
            chosen = table[table[P.CLASS_NAME] == name]
            chosen = chosen.iloc[rng.permutation(len(chosen))[:per_class]]
            for c in range(per_class):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c < len(chosen):
                    row = chosen.iloc[c]
                    box = np.asarray(stacks[row["_stack"]][int(row["_index"])])
                    middle = box.shape[0] // 2
                    ax.imshow(box[middle - 2 : middle + 3].mean(axis=0), cmap="gray")
                else:
                    ax.axis("off")
            label = f"{name}\n(unseen)" if name in unseen else name
            axes[r, 0].set_ylabel(label, fontsize=8)
        fig.suptitle("Extracted subtomograms (mean of the 5 central z slices)", fontsize=9)
        fig.tight_layout()
    except BaseException:
        plt.close(fig)
        raise
    save_figure(fig, path)
