"""A variant's results back into the copick project: each particle's predicted class,
orientation and score as picks of user ``cryoavae``, one file per run and class.

For variant ``v``: ``<overlay>/ExperimentRuns/<run>/Picks/cryoavae_<v>_<class>.json`` for every
run the study read and every seen class (empty where no particle was predicted to be it, so a
rerun leaves no stale file behind), under the overlay root only: the input picks (another user's
files, or the static root's) are never written. Each point is one particle of the run, from the
variant's ``particles_annotated.star`` (:mod:`cryoavae.inference.annotate`; the source cannot
import it, so its column names are spelled here and a test holds them equal):

- ``location``: the pick's own location, unchanged (a false positive, which has none, gets the
  centre of its box);
- ``transformation_[:3, :3]``: RELION's matrix ``A`` of ``cryoavaeAngleRot/Tilt/Psi`` (copick's
  convention, :mod:`.picks`: the model's frame of the class carried into the tomogram's); the
  identity, with the file's ``trust_orientation`` false, where the model gives no orientation;
- ``transformation_[:3, 3]``: the particle's refined centre minus ``location`` (Å, the
  tomogram's axes, since boxes are cut along them): the centre of the box it was cut from
  (``cryoavaeBoxCentre*Angst``) plus the shift found in it, which is minus
  ``cryoavaeOrigin*Angst`` (RELION subtracts its origin; no shift searched: 0). So ``location +
  translation`` is where the model puts the particle, as copick's RELION export reads a point;
- ``score``: ``cryoavaeCentroidCosine``, the cosine to the predicted class's latent centroid
  (high is like the class).

A particle the study's novelty model flags (``cryoavaeIsNovel`` 1) is in no file: the nearest
seen class is the one it was matched against, not one it belongs to, and the annotation gives it
no orientation (the model has no template of it). Written as a pick of that class it would
count as one, and take the class's ``trust_orientation`` with it; the log says how many were
left out, and ``particles_annotated.star`` keeps them. A table without the flag (annotated
before there was one) leaves none out.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae import particles as P
from cryoavae.core.atomic import atomic_path
from cryoavae.core.copick_config import NAME, OUR_USER, CopickProject
from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import relion_angles_to_matrices
from cryoavae.sources.copick.picks import (
    BOX_CENTRE_COLUMNS,
    LOCATION_COLUMNS,
    RUN_COLUMN,
    write_picks_file,
)

log = logging.getLogger(__name__)

PREDICTED = "cryoavaePredictedClass"
COSINE = "cryoavaeCentroidCosine"
IS_NOVEL = "cryoavaeIsNovel"
ANGLES = ("cryoavaeAngleRot", "cryoavaeAngleTilt", "cryoavaeAnglePsi")
ORIGINS = ("cryoavaeOriginXAngst", "cryoavaeOriginYAngst", "cryoavaeOriginZAngst")


def write_copick_results(
    project: CopickProject,
    annotated_star: str | os.PathLike,
    runs: Sequence[str],
    classes: Sequence[str],
    variant: str,
    voxel_spacing: float,
    manifest_path: str | os.PathLike,
) -> pd.DataFrame:
    """Write the picks files of this module for ``runs`` x ``classes`` (the seen classes) and a
    manifest TSV (run, object, points, path); return the manifest. Particles flagged novel are
    in no file (module docstring).

    Raises:
        InputError: a table without the columns a copick study writes, a particle of another
            run or class, a name copick cannot take.
    """
    table = _particle_table(Path(annotated_star))
    for name in (variant, *classes):
        if not NAME.match(name):
            raise InputError(f"{name!r} cannot name a copick session or object (no '_')")
    predicted = table[PREDICTED].astype(str).to_numpy()
    run_of = table[RUN_COLUMN].astype(str).to_numpy()
    for values, allowed, what in ((predicted, classes, "class"), (run_of, runs, "run")):
        stray = sorted(set(values) - set(allowed))
        if stray:
            raise InputError(
                f"{annotated_star}: particles of {what} {stray[0]!r}, not one of {list(allowed)}"
            )
    locations, transforms, oriented = point_geometry(table)
    cosine = table[COSINE].to_numpy(np.float64)
    kept = ~flagged_novel(table)
    rows = []
    for run in runs:
        for name in classes:
            mask = (run_of == run) & (predicted == name) & kept
            path = (
                project.overlay
                / "ExperimentRuns"
                / run
                / "Picks"
                / f"{OUR_USER}_{variant}_{name}.json"
            )
            meta = {
                "pickable_object_name": name,
                "user_id": OUR_USER,
                "session_id": variant,
                "run_name": run,
                "voxel_spacing": float(voxel_spacing),
            }
            trust = bool(oriented[mask].all()) if mask.any() else bool(oriented[kept].all())
            write_picks_file(path, meta, locations[mask], transforms[mask], cosine[mask], trust)
            rows.append({"run": run, "object": name, "points": int(mask.sum()), "path": str(path)})
    manifest = pd.DataFrame(rows, columns=["run", "object", "points", "path"])
    with atomic_path(manifest_path) as tmp:
        manifest.to_csv(tmp, sep="\t", index=False)
    log.info(
        "%d picks files of %d particles under %s; %d flagged novel (cryoavaeIsNovel 1) left out",
        len(rows),
        int(kept.sum()),
        project.overlay,
        int((~kept).sum()),
    )
    return manifest


def flagged_novel(table: pd.DataFrame) -> np.ndarray:
    """Whether each particle ``(n,)`` is flagged novel (none where the table has no flag)."""
    if IS_NOVEL not in table:
        return np.zeros(len(table), dtype=bool)
    return (pd.to_numeric(table[IS_NOVEL], errors="coerce") == 1).to_numpy()


def point_geometry(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per particle: ``location`` (n, 3) Å, ``transformation_`` (n, 4, 4) and whether the model
    oriented it (n,), by the rules of this module."""
    n = len(table)
    centres = table[list(BOX_CENTRE_COLUMNS)].to_numpy(np.float64)
    if all(c in table for c in ORIGINS):
        centres = centres - np.nan_to_num(table[list(ORIGINS)].to_numpy(np.float64))
    locations = table[list(LOCATION_COLUMNS)].to_numpy(np.float64)
    picked = np.isfinite(locations).all(axis=1)
    locations = np.where(picked[:, None], locations, centres)
    transforms = np.tile(np.eye(4), (n, 1, 1))
    oriented = np.zeros(n, dtype=bool)
    if all(c in table for c in ANGLES):
        angles = table[list(ANGLES)].to_numpy(np.float64)
        oriented = np.isfinite(angles).all(axis=1)
        transforms[oriented, :3, :3] = relion_angles_to_matrices(angles[oriented])
    transforms[:, :3, 3] = centres - locations
    return locations, transforms, oriented


def _particle_table(path: Path) -> pd.DataFrame:
    """The block of an annotated STAR file holding the particles, with the columns needed."""
    blocks = P.read_star_blocks(path, what="annotated particle table")
    tables = [t for t in blocks.values() if isinstance(t, pd.DataFrame) and P.IMAGE in t]
    if len(tables) != 1:
        raise InputError(f"{path}: expected one table with {P.IMAGE}, found {len(tables)}")
    table = tables[0]
    needed = [RUN_COLUMN, PREDICTED, COSINE, *LOCATION_COLUMNS, *BOX_CENTRE_COLUMNS]
    missing = [c for c in needed if c not in table]
    if missing:
        raise InputError(
            f"{path}: lacks columns {missing}; picks go back into a copick project only from a "
            "particle_source: copick study's particles_annotated.star"
        )
    return table
