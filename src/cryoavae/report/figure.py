"""Writing a figure: one PNG, atomically, and the figure closed whatever happens."""

from __future__ import annotations

import os

import matplotlib.pyplot as plt

from cryoavae.core.atomic import atomic_path

DPI = 130


def save_figure(fig, path: str | os.PathLike, dpi: int = DPI) -> None:
    """Write ``fig`` as a PNG to ``path`` through a temporary file, then close it."""
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png")
    finally:
        plt.close(fig)
