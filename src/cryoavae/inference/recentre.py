"""Particles moved onto the centres an earlier model's template matching found.

Picks sit a voxel or more off their particles' centres, and an encoder sees such a particle as a
different shape: trained and embedded on them, a model confuses classes that centred particles
keep apart. Subtomogram averaging answers this by re-extracting at refined positions and
iterating; this is that step for a model variant (``training.recentre_from``): the particle table
gains ``cryoavaeRecentre*Angst``, the centres the first variant's matching found
(``inferred_shift_*_angstrom``), and :class:`~cryoavae.particles.ParticleImages` reads every
particle moved onto its centre, so the second variant trains, embeds and matches on them.

Shifts stay relative to the boxes as picked: the second variant's matcher finds what is left of
each particle's offset, and :func:`with_recentring` adds the first's back before latents.tsv is
written, so averages, the STAR tables and the evaluation read one convention whichever variant
wrote them.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from cryoavae.core.errors import InputError
from cryoavae.inference.latents import INFERRED_SHIFTS
from cryoavae.particles import IMAGE, RECENTRE

__all__ = ["recentred_table", "with_recentring"]


def recentred_table(
    table: pd.DataFrame, latents: pd.DataFrame, latents_path: str | os.PathLike
) -> pd.DataFrame:
    """``table`` with ``RECENTRE`` columns: each particle's centre (Å from its box's centre, x, y,
    z) as the latents table of ``latents_path`` found it, row for row."""
    missing = [c for c in INFERRED_SHIFTS if c not in latents.columns]
    if missing:
        raise InputError(
            f"{latents_path}: has no {missing}: re-centring needs the centres template matching "
            "finds with orientation.max_shift_angstrom > 0"
        )
    if not _same_rows(latents, table):
        raise InputError(
            f"{latents_path}: its {len(latents)} particles are not the particle table's "
            f"{len(table)}, row for row (was the table changed after that variant embedded it?)"
        )
    shifts = latents[list(INFERRED_SHIFTS)].to_numpy(np.float64)
    if not np.isfinite(shifts).all():
        row = int(np.argmax(~np.isfinite(shifts).all(axis=1)))
        raise InputError(f"{latents_path}: row {row + 1} has no centre ({list(INFERRED_SHIFTS)})")
    recentred = table.drop(columns=[c for c in RECENTRE if c in table.columns])
    return recentred.assign(**{c: shifts[:, a] for a, c in enumerate(RECENTRE)})


def with_recentring(latents: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """``latents`` of particles read re-centred by ``table``'s ``RECENTRE`` columns, with shifts
    relative to the boxes as picked: the re-centring added to what the matcher found (or put in
    its place where nothing was searched). Unchanged when ``table`` has no such columns."""
    if not all(c in table.columns for c in RECENTRE):
        return latents
    if not _same_rows(latents, table):
        raise InputError(
            f"the latents of {len(latents)} particles are not the re-centred table's "
            f"{len(table)}, row for row"
        )
    centres = table[list(RECENTRE)].to_numpy(np.float64)
    latents = latents.copy()
    for a, column in enumerate(INFERRED_SHIFTS):
        found = latents[column].to_numpy(np.float64) if column in latents.columns else 0.0
        latents[column] = centres[:, a] + found
    return latents


def _same_rows(latents: pd.DataFrame, table: pd.DataFrame) -> bool:
    """Whether the latents table holds the particle table's images, row for row."""
    return len(latents) == len(table) and np.array_equal(
        latents["image"].astype(str).to_numpy(), table[IMAGE].astype(str).to_numpy()
    )
