"""Results back onto the user's own particles: a STAR table RELION, Warp and ``starfile`` read.

``particles_annotated.star`` is the input particle table (for a STAR study: the user's own
file, every data block, rows in their order) with columns added per particle:

- ``cryoavaePredictedClass``, ``cryoavaePredictedClassNumber``: the particle's seen class and
  its 1-based number in the study's class list. With the orientation step and one template per
  class, the class whose template the particle's orientation was matched against (its own
  density chose it among the encoder's ``orientation.candidate_templates`` nearest), so that
  class and angles agree; otherwise the class whose latent centroid (mean unit mu of its
  training particles) is nearest in cosine;
- ``cryoavaeCentroidCosine``: the cosine to that class's centroid;
- ``cryoavaeNovelty``: how unlike every seen class the particle is (higher: more novel), the
  study's novelty score (``evaluation.novelty_score``, by default the smallest Mahalanobis
  distance of mu to a seen class; :mod:`cryoavae.inference.novelty`), and ``cryoavaeIsNovel``:
  1 where it lies above the threshold the study set on its val particles
  (``evaluation.novelty_seen_recall`` of them lie at or below it), else 0;
- ``cryoavaeSplit``: how the study used the particle (train / val / test / unseen: a class held
  out of training), or ``applied`` for a new particle set (:mod:`cryoavae.inference.apply`);
- ``cryoavaeUmapX``, ``cryoavaeUmapY``: its position in the study's UMAP of mu, when there is one
  (a new set's particles are placed by their nearest study particles);
- ``cryoavaeAngleRot``, ``cryoavaeAngleTilt``, ``cryoavaeAnglePsi`` (3-D) or ``cryoavaeAnglePsi``
  (2-D): the model's orientation of the particle (RELION's ZYZ convention, degrees), when its
  decoder turns by the pose (``model.decoder: gaussian_splat`` with a rotation pose, e.g.
  ``model.pose_encoding: rotation6d``; the default CNN decoder gives none, and says so in the
  log). The frame is the model's own, one per class: the angles agree with
  that class's ``class_averages.mrcs`` volume, not with an outside reference, so they are named
  apart from ``rlnAngleRotPrior`` etc. rather than silently taken as priors; empty for a
  particle flagged novel (below);
- ``cryoavaeOriginXAngst``, ``cryoavaeOriginYAngst``, ``cryoavaeOriginZAngst`` (when template
  matching searched shifts): the particle's offset in RELION's convention (Å, subtracted from the
  box's centre to reach the particle's: minus where the particle sits), relative to the model's
  template, so named apart from ``rlnOriginXAngst`` and the user's own refinement; empty for a
  particle flagged novel.

A particle flagged novel (``cryoavaeIsNovel`` 1) gets empty (NaN) ``cryoavaeAngle*`` and
``cryoavaeOrigin*Angst``. Its orientation was matched against a template made from the
training particles (:mod:`cryoavae.orientation.templates`: the k-means centre of their mu
nearest its own, or the one that fits it best), a shape the novelty model says it is not, so the
angles would name a frame of no reference the study has. Its origin goes with them: the
matcher's centre is found against that same template's spherical average (orientation-free, but
the template's size and radial profile; :mod:`cryoavae.orientation.matcher`) and then refined
together with the rotations, so it holds only as far as the template fits. The model has no
template of a novel particle to measure either against; an empty column says so, where a number
would be taken as a result.

Only these tables blank them: ``latents.tsv`` (and an applied set's TSV) keeps the matcher's
answer for every particle beside its flag, and the evaluation scores the orientation of every
``val`` particle of a seen class from it, flagged novel or not
(:mod:`cryoavae.evaluate.orientation`): a seen particle flagged novel by mistake still counts
with the orientation it was given, so the flag never hides a failed match.

RELION keeps columns it does not know and warns about them; the names never clash with its own.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.inference.latents import (
    assign_nearest_class,
    fit_column,
    latent_columns,
    matched_classes,
)
from cryoavae.inference.novelty import NoveltyModel, fit_novelty

log = logging.getLogger(__name__)

SOURCE_ROW = "cryoavaeSourceRow"  # written by cryoavae.sources.star
COLUMNS = (
    "cryoavaePredictedClass",
    "cryoavaePredictedClassNumber",
    "cryoavaeCentroidCosine",
    "cryoavaeNovelty",
    "cryoavaeIsNovel",
    "cryoavaeSplit",
    "cryoavaeUmapX",
    "cryoavaeUmapY",
)
ANGLE_COLUMNS = {  # latents column -> STAR column
    "inferred_rot": "cryoavaeAngleRot",
    "inferred_tilt": "cryoavaeAngleTilt",
    "inferred_psi": "cryoavaeAnglePsi",
}
ORIGIN_COLUMNS = {  # latents column -> STAR column; RELION's sign: the origin is minus the shift
    "inferred_shift_x_angstrom": "cryoavaeOriginXAngst",
    "inferred_shift_y_angstrom": "cryoavaeOriginYAngst",
    "inferred_shift_z_angstrom": "cryoavaeOriginZAngst",
}


PREDICTED, PREDICTED_NUMBER, COSINE, NOVELTY, IS_NOVEL, SPLIT, UMAP_X, UMAP_Y = COLUMNS


def class_assignments(
    latents: pd.DataFrame,
    reference: pd.DataFrame,
    class_names: Sequence[str],
    novelty: NoveltyModel | None = None,
) -> pd.DataFrame:
    """Seen class (:func:`~cryoavae.inference.latents.assign_nearest_class`: the matched
    template's, else the nearest centroid's), its number, cosine, novelty and whether it is
    novel for every row of ``latents``, against the centroids of the ``train`` rows of
    ``reference`` (a latents table, possibly the same) and the novelty model fitted on them
    (``models/<variant>/novelty.json``; None: fitted here with the default score and recall)."""
    train = reference[reference["split"].astype(str) == "train"]
    if train.empty:
        raise InputError("reference latents hold no training particles to build centroids from")
    order = {name: i for i, name in enumerate(class_names)}
    mu_columns = latent_columns(train, "mu")
    if latent_columns(latents, "mu") != mu_columns:
        raise InputError(
            f"latents have {len(latent_columns(latents, 'mu'))} mu columns, the reference "
            f"{len(mu_columns)}: embed both with the same model"
        )
    if novelty is None:
        novelty = fit_novelty(reference, class_names)
    mu = latents[mu_columns].to_numpy(np.float64)
    matched = matched_classes(latents)
    nearest = assign_nearest_class(mu, novelty.centroids, novelty.classes, matched)
    score = novelty.score_of(mu, fit_column(latents), matched)
    return pd.DataFrame(
        {
            PREDICTED: nearest["nearest_seen"].to_numpy(),
            PREDICTED_NUMBER: nearest["nearest_seen"].map(order).fillna(-1).astype(int) + 1,
            COSINE: nearest["nearest_cosine"].to_numpy(),
            NOVELTY: score,
            IS_NOVEL: novelty.is_novel(score).astype(int),
        }
    )


def annotate_particles(
    source_star: str | os.PathLike,
    latents: pd.DataFrame,
    reference: pd.DataFrame,
    class_names: Sequence[str],
    out_path: str | os.PathLike,
    umap_xy: pd.DataFrame | None = None,
    source_rows: np.ndarray | None = None,
    novelty: NoveltyModel | None = None,
) -> pd.DataFrame:
    """Write ``source_star`` with the columns of this module added; return its particle table.

    ``latents`` row ``i`` belongs to row ``source_rows[i]`` of the source's particle table
    (default: row ``i``). ``umap_xy``: columns ``umap_x``, ``umap_y`` in the order of
    ``latents``. ``novelty``: the study's novelty model (:func:`class_assignments`). Source rows
    without a latents row get empty values (NaN).

    Raises:
        InputError: the source has no particle table, rows do not line up, or a column clashes.
    """
    source_star, out_path = Path(source_star), Path(out_path)
    blocks = P.read_star_blocks(source_star, what="particle STAR file")
    name = _particle_block(blocks, source_star)
    table = blocks[name].reset_index(drop=True)
    rows = np.arange(len(latents)) if source_rows is None else np.asarray(source_rows, np.int64)
    if len(rows) != len(latents) or (len(rows) and (rows.min() < 0 or rows.max() >= len(table))):
        raise InputError(
            f"{source_star}: its {len(table)} particles do not match the {len(latents)} "
            "embedded ones (was the STAR file changed after the study read it?)"
        )
    ours = (*COLUMNS, *ANGLE_COLUMNS.values(), *ORIGIN_COLUMNS.values())
    clash = [c for c in ours if c in table.columns]
    if clash:
        log.warning("%s: replacing its columns %s with this study's", source_star, clash)
    added = class_assignments(latents, reference, class_names, novelty)
    added[SPLIT] = latents["split"].astype(str).to_numpy()
    if umap_xy is not None:
        added[UMAP_X] = umap_xy["umap_x"].to_numpy()
        added[UMAP_Y] = umap_xy["umap_y"].to_numpy()
    _add_poses(added, latents, out_path)
    full = pd.DataFrame(index=np.arange(len(table)), columns=added.columns, dtype=object)
    full.iloc[rows] = added.to_numpy(dtype=object)
    for column in added.columns:  # numbers stay numbers in the STAR file
        if column not in (PREDICTED, SPLIT):
            full[column] = pd.to_numeric(full[column])
    annotated = pd.concat([table.drop(columns=clash), full], axis=1)
    header = "cryoavae: particles annotated with their latent-space results"
    P.write_star_blocks(out_path, {**blocks, name: annotated}, header)
    log.info(
        "%s: %d particles annotated (classes %s, median novelty %.3f, %d flagged novel)",
        out_path,
        len(added),
        added[PREDICTED].value_counts().to_dict(),
        float(np.median(added[NOVELTY])) if len(added) else float("nan"),
        int(added[IS_NOVEL].sum()),
    )
    return annotated


def _add_poses(added: pd.DataFrame, latents: pd.DataFrame, out_path: Path) -> None:
    """The model's angles and origins into ``added``'s columns, empty (NaN) for the particles
    flagged novel (module docstring)."""
    for source, column in ANGLE_COLUMNS.items():
        if source in latents.columns:
            added[column] = latents[source].to_numpy(np.float64)
    if not set(ANGLE_COLUMNS) & set(latents.columns):
        log.warning(
            "%s gets no orientations (cryoavaeAngle*): this model's decoder does not turn its "
            "particle; for orientations train with model.decoder: gaussian_splat and "
            "model.pose_encoding: rotation6d (pose_dims: 6; 2-D: circular), and set "
            "orientation.method: template_matching to match them against its templates",
            out_path,
        )
    for source, column in ORIGIN_COLUMNS.items():
        if source in latents.columns:
            added[column] = -latents[source].to_numpy(np.float64)
    poses = [c for c in (*ANGLE_COLUMNS.values(), *ORIGIN_COLUMNS.values()) if c in added]
    novel = added[IS_NOVEL].to_numpy() == 1
    if poses and novel.any():
        added.loc[novel, poses] = np.nan
        log.info(
            "%s: the %d particles flagged novel get no orientation or origin (empty %s): the "
            "model has no template of theirs; latents.tsv keeps what the matcher found",
            out_path,
            int(novel.sum()),
            ", ".join(poses),
        )


def _particle_block(blocks: dict, path: Path) -> str:
    names = [n for n, t in blocks.items() if isinstance(t, pd.DataFrame) and P.IMAGE in t]
    if len(names) != 1:
        raise InputError(f"{path}: expected one table with {P.IMAGE}, found {len(names)}")
    return names[0]


def read_umap(path: str | os.PathLike) -> pd.DataFrame:
    """The UMAP table the evaluation writes (``image``, ``umap_x``, ``umap_y``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: UMAP table not found")
    return pd.read_csv(path, sep="\t")
