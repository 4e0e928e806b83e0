"""A variant's inference as jobs over consecutive parts of the particle table.

``inference.jobs`` splits the work :func:`cryoavae.inference.embed.embed_particles` does in one
process into jobs a cluster can spread (rules in ``workflow/rules/inference.smk``):

1. ``encode_particles``, one job per part: the part's labels, ``mu``, pose and the encoder's
   orientation (``inference/encoded_<job>.tsv``);
2. ``fit_references``, one job: the k-means centres of the train particles' ``mu`` (read from
   every part's table, no image), their decoded templates refined on a seeded subset of the
   particles (``orientation.reference_particles`` per template), saved for every job to share
   (``inference/references.npz``);
3. ``match_particles``, one job per part: its particles matched against those references
   (``inference/matched_<job>.tsv``);
4. ``embed_particles``: the parts gathered, in table order, into ``latents.tsv``.

A variant re-centred from another (:mod:`cryoavae.inference.recentre`) reads its particles moved
onto their found centres: its ``encoded_*``/``matched_*`` shifts are what is left of each
particle's offset, and only ``latents.tsv`` holds the whole shift from the box as picked.

Each job reads only its own part's images, so memory does not grow with the data set, and the
result does not depend on the number of jobs: a particle's encoding and match use nothing from
the other particles but the shared references.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from cryoavae.inference.latents import MATCHED_CLASS, read_latents
from cryoavae.particles import ParticleImages

__all__ = ["gather_parts", "job_rows", "table_part"]


def job_rows(n: int, job: int, jobs: int) -> np.ndarray:
    """The table rows ``(m,)`` of job ``job`` of ``jobs``: consecutive, the parts as even as can
    be, together every row once."""
    if not 0 <= job < jobs:
        raise ValueError(f"job {job} is not one of {jobs} jobs")
    return np.array_split(np.arange(n), jobs)[job]


def table_part(
    table: pd.DataFrame, images: ParticleImages, rows: np.ndarray
) -> tuple[pd.DataFrame, ParticleImages]:
    """Rows ``rows`` of a particle table and their images, numbered from 0 as a table of their
    own."""
    return table.iloc[rows].reset_index(drop=True), images.subset(rows)


def gather_parts(paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """The parts' tables (encoded or matched), in job order, as one table."""
    return pd.concat([read_part(path) for path in paths], ignore_index=True)


def read_part(path: str | os.PathLike) -> pd.DataFrame:
    """One job's table: a latents table's columns as :func:`read_latents` reads them, or a
    matched part's (angles, template, shifts)."""
    header = pd.read_csv(path, sep="\t", nrows=0).columns
    if "mu_0" in header:
        return read_latents(path)
    return pd.read_csv(path, sep="\t", dtype={MATCHED_CLASS: str})
