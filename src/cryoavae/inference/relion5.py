"""The results as a RELION 5 tomography particle set, to re-extract, refine in RELION 5, Warp 2.

:func:`write_relion5_particles` turns an annotated STAR file (:mod:`cryoavae.inference.annotate`)
into ``particles_relion5.star`` (a new particle set's: ``<set>_relion5.star``). Blocks:

- ``data_general``: ``rlnTomoSubTomosAre2DStacks 0``; ``data_optics``: one optics group per
  tomogram, named after it (as RELION 5 makes them from a ``tomograms.star``), with
  ``rlnImagePixelSize`` and ``rlnTomoTiltSeriesPixelSize`` (the pixel of the positions; RELION's
  extraction writes its boxes' own), ``rlnVoltage``, ``rlnSphericalAberration``,
  ``rlnAmplitudeContrast``, written only where the tilt series is known (a simulated tomogram's).
  Particles cut out of your own tomograms get no optics block: their tilt series' pixel is
  yours (a binned tomogram's voxel spans several), and RELION 5 builds the optics groups from
  your ``tomograms.star`` when a particle file has none (``ParticleSet::read``). A STAR study
  (your own particles) keeps your file's blocks as they are.
- ``data_particles``: ``rlnTomoName`` and ``rlnCenteredCoordinateX/Y/ZAngst`` as picked
  (:mod:`cryoavae.particles.positions`); ``rlnTomoSubtomogramRot/Tilt/Psi``, ``rlnAngleRot/Tilt/
  Psi`` and ``rlnOriginX/Y/ZAngst`` (below); ``rlnClassNumber``, the predicted class (1-based
  in the study's class list); ``rlnOpticsGroup`` with optics; for Warp 2's
  ``ts_export_particles`` (which reads pixels, not centred Å) ``rlnMicrographName``
  (``<rlnTomoName>.tomostar``), ``rlnCoordinateX/Y/Z`` (voxels of the picked tomogram: give it
  ``--coords_angpix`` = that voxel size) and ``rlnPixelSize`` (the same, to turn the origins into
  those voxels); and the results RELION keeps without reading: ``cryoavaePredictedClass``,
  ``cryoavaeNovelty``, ``cryoavaeCentroidCosine``, ``cryoavaeSplit``, ``cryoavaeUmapX/Y``. Your
  own particles keep every column of yours; ours drop the study's bookkeeping (true class,
  shard, box files: RELION re-extracts from the tilt series).
- ``data_cryoavae_classes``: ``rlnClassNumber`` → ``cryoavaeClassName``, the study's class list
  (RELION reads its blocks by name and skips this one).

Orientation: RELION 5's rotation of a particle is ``A = A_sub @ A_ang`` (``ParticleSet::
getMatrix3x3``: ``A_subtomogram * A_particle``), each RELION's matrix of its three angles
(:mod:`cryoavae.geometry.rotations`: the particle is the reference turned actively by ``A``, in
the tomogram's axes). ``A_sub`` (``rlnTomoSubtomogram*``) is the frame the particle's box was made
in, ``A_ang`` (``rlnAngle*``) the particle within that box: the model's orientation
(``cryoavaeAngle*``), which it measured in the box it saw. Our boxes are cut along the
tomogram's axes, so ``A_sub`` is the identity (written 0, 0, 0); boxes of yours made in a frame
(RELION 5's extraction writes it) keep their ``rlnTomoSubtomogram*``, and ``A_sub @ A_model`` is
the particle in the tomogram. The angles are in the model's frame, one per class: they agree
with that class's ``class_averages.mrcs``, the reference to refine them against. Without them
(a decoder that does not turn its particle) our particles get no ``rlnAngle*`` and yours keep
their own, and the log says so; 2-D angles are never written.

Particles flagged novel (``cryoavaeIsNovel`` 1) are left out, and the log says how many: the
annotation gives them no angles and no origin (:mod:`cryoavae.inference.annotate`: the model has
no template of theirs), and ``rlnClassNumber`` would put them in a seen class the novelty model
says they are not. A RELION 5 particle set is refined against a reference, and every particle in
it needs angles in that reference's frame; the novel ones stay in ``particles_annotated.star``
with their score, to be picked out and averaged apart.

Shift: RELION 5 places a particle at ``centred / pixel + size / 2 - A_sub @ origin / pixel``
(``ParticleSet::getPosition``): ``rlnOrigin*Angst`` is in the box's axes and subtracted, which
``cryoavaeOrigin*Angst`` already is (minus the particle's offset from the box centre), so it
becomes ``rlnOrigin*Angst`` and the coordinates stay as picked; RELION 5's extraction applies the
origins (and zeroes them) when it re-extracts. Where the model measured no shift, yours keep
your origins and ours have none. A box cut without resampling sits on the voxel nearest the
pick: where extraction recorded that centre (``cryoavaeBoxCentre*Angst``), the origin also
carries the pick's distance from it, so the coordinates as picked minus the origin land on the
particle.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.inference.annotate import ANGLE_COLUMNS, COLUMNS, ORIGIN_COLUMNS
from cryoavae.particles.positions import CENTRED, TOMO_NAME, TOMOGRAM_VOXEL_SIZE

log = logging.getLogger(__name__)

__all__ = ["CLASSES_BLOCK", "SUBTOMOGRAM_ANGLES", "write_relion5_particles"]

CLASSES_BLOCK = "cryoavae_classes"
SUBTOMOGRAM_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
ANGLE_PRIORS = ("rlnAngleRotPrior", "rlnAngleTiltPrior", "rlnAnglePsiPrior")
COORDINATES = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
PREDICTED, PREDICTED_NUMBER, IS_NOVEL = COLUMNS[0], COLUMNS[1], COLUMNS[4]
RESULTS = tuple(c for c in COLUMNS if c != PREDICTED_NUMBER)
OPTICS_KEYS = {  # optics setting -> RELION label
    "voltage_kv": "rlnVoltage",
    "cs_mm": "rlnSphericalAberration",
    "amplitude_contrast": "rlnAmplitudeContrast",
}


def write_relion5_particles(
    annotated_star: str | os.PathLike,
    class_names: Sequence[str],
    out_path: str | os.PathLike,
    optics: Mapping | None = None,
) -> pd.DataFrame:
    """Write the RELION 5 particle set of ``annotated_star`` to ``out_path``; return its particles.

    ``optics``: the tilt series of our own particles (``tilt_series_pixel_size_angstrom``,
    ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``), None where unknown (module docstring).
    A table holding ``cryoavaeShard`` is one of ours; any other is the user's.

    Raises:
        InputError: no annotated particle table, or particles of ours without tomogram positions
            (extracted before they were recorded: extract them again).
    """
    annotated_star, out_path = Path(annotated_star), Path(out_path)
    blocks = P.read_star_blocks(annotated_star, what="annotated particle STAR file")
    name = _results_block(blocks, annotated_star)
    table = _kept_particles(blocks[name], annotated_star)
    own = P.SHARD in table.columns
    if own:
        particles = _own_particles(table, annotated_star)
        names = particles[TOMO_NAME].astype(str)
        out_blocks = {"general": {"rlnTomoSubTomosAre2DStacks": 0}}
        if optics is not None:
            groups = {tomo: k + 1 for k, tomo in enumerate(pd.unique(names))}
            particles["rlnOpticsGroup"] = names.map(groups).to_numpy(np.int64)
            out_blocks["optics"] = _optics_block(groups, optics)
        else:
            log.info("%s: no optics block: RELION 5 takes it from your tomograms.star", out_path)
    else:
        particles = _user_particles(table, annotated_star)
        out_blocks = {k: v for k, v in blocks.items() if k != name}
    _add_results(particles, table, own, out_path)
    out_blocks = {**out_blocks, name or "particles": particles}
    out_blocks[CLASSES_BLOCK] = pd.DataFrame(
        {P.CLASS_NUMBER: np.arange(1, len(class_names) + 1), P.CLASS_NAME: list(class_names)}
    )
    P.write_star_blocks(out_path, out_blocks, "cryoavae: the particles as a RELION 5 particle set")
    log.info("%s: %d particles, classes %s", out_path, len(particles), _counts(particles))
    return particles


def _kept_particles(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The particles with results and not flagged novel (module docstring), each count left out
    in the log."""
    done = pd.to_numeric(table[PREDICTED_NUMBER], errors="coerce").notna().to_numpy()
    if not done.all():
        log.warning("%s: %d particles without results left out", path, (~done).sum())
    novel = np.zeros(len(table), dtype=bool)
    if IS_NOVEL in table.columns:
        novel = done & (pd.to_numeric(table[IS_NOVEL], errors="coerce") == 1).to_numpy()
    if novel.any():
        log.info(
            "%s: %d particles flagged novel (cryoavaeIsNovel 1) left out: no template of the "
            "model's is theirs, so they have no angles to refine (particles_annotated.star "
            "keeps them)",
            path,
            int(novel.sum()),
        )
    return table[done & ~novel].reset_index(drop=True)


def _results_block(blocks: dict, path: Path) -> str:
    names = [n for n, t in blocks.items() if isinstance(t, pd.DataFrame) and PREDICTED_NUMBER in t]
    if len(names) != 1:
        raise InputError(
            f"{path}: expected one table with {PREDICTED_NUMBER} (an annotated particle STAR "
            f"file), found {len(names)}"
        )
    return names[0]


def _own_particles(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Our particles' places: RELION 5's (``rlnTomoName``, centred Å, no box frame) and Warp 2's
    (``rlnMicrographName``, voxel coordinates, ``rlnPixelSize``)."""
    missing = [c for c in (TOMO_NAME, *CENTRED, TOMOGRAM_VOXEL_SIZE) if c not in table]
    if missing:
        raise InputError(
            f"{path}: its particles have no tomogram positions (no {missing[0]}): only particles "
            "cut out of tomograms have them; a study extracted before they were recorded needs "
            "its extraction run again (snakemake --forcerun extract_subtomograms)"
        )
    names = table[TOMO_NAME].astype(str)
    particles = pd.DataFrame({TOMO_NAME: names})
    for column in CENTRED:
        particles[column] = pd.to_numeric(table[column]).to_numpy(np.float64)
    for column in SUBTOMOGRAM_ANGLES:
        particles[column] = 0.0
    particles["rlnMicrographName"] = names.map(_tomostar).to_numpy()
    for column in COORDINATES:
        particles[column] = pd.to_numeric(table[column]).to_numpy(np.float64)
    particles["rlnPixelSize"] = pd.to_numeric(table[TOMOGRAM_VOXEL_SIZE]).to_numpy(np.float64)
    return particles


def _tomostar(name: str) -> str:
    """Warp 2's name of a tilt series: its ``.tomostar`` file."""
    return name if name.endswith(".tomostar") else f"{name}.tomostar"


def _user_particles(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The user's own columns, ours (the annotation's) left for :func:`_add_results`."""
    ours = {*COLUMNS, *ANGLE_COLUMNS.values(), *ORIGIN_COLUMNS.values()}
    particles = table[[c for c in table.columns if c not in ours]].copy()
    if not ({TOMO_NAME, *CENTRED} <= set(particles) or set(COORDINATES) <= set(particles)):
        log.warning(
            "%s: no tomogram positions (rlnTomoName with rlnCenteredCoordinate*Angst, or "
            "rlnCoordinateX/Y/Z): the particle set gives classes and poses of your boxes only",
            path,
        )
    return particles


def _add_results(particles: pd.DataFrame, table: pd.DataFrame, own: bool, out: Path) -> None:
    """The model's angles, origins and class into RELION's columns, its scores as ours."""
    angles = list(ANGLE_COLUMNS.values())
    if set(angles) <= set(table.columns):
        replaced = [c for c in ANGLE_PRIORS if c in particles]
        if replaced:  # they held the old angles, in another reference's frame
            log.info("%s: dropped the angle priors %s of the replaced angles", out, replaced)
        for column in replaced:
            del particles[column]
        for column, source in zip(P.ANGLES, angles, strict=True):
            particles[column] = pd.to_numeric(table[source]).to_numpy(np.float64)
    else:
        log.warning(
            "%s: no rlnAngleRot/Tilt/Psi from the model (its decoder gives no 3-D orientation; "
            "train with model.decoder: gaussian_splat and a rotation pose for them): %s",
            out,
            "the particles have no angles" if own else "your own angles are kept",
        )
    origins = list(ORIGIN_COLUMNS.values())
    if set(origins) <= set(table.columns):
        found = table[origins].apply(pd.to_numeric).to_numpy(np.float64)
        particles[list(P.ORIGINS)] = found + P.pick_from_box_centre(table)
    particles[P.CLASS_NUMBER] = pd.to_numeric(table[PREDICTED_NUMBER]).to_numpy(np.int64)
    for column in RESULTS:
        if column in table.columns:
            particles[column] = table[column].to_numpy()


def _optics_block(groups: Mapping[str, int], optics: Mapping) -> pd.DataFrame:
    """One optics group per tomogram (``groups``: name -> number), all with ``optics``."""
    pixel = float(optics["tilt_series_pixel_size_angstrom"])
    block = pd.DataFrame(
        {
            "rlnOpticsGroup": list(groups.values()),
            "rlnOpticsGroupName": list(groups),
            "rlnImagePixelSize": pixel,
            "rlnTomoTiltSeriesPixelSize": pixel,
        }
    )
    for key, column in OPTICS_KEYS.items():
        if optics.get(key) is not None:
            block[column] = float(optics[key])
    return block


def _counts(particles: pd.DataFrame) -> dict:
    if PREDICTED in particles:
        return particles[PREDICTED].astype(str).value_counts().to_dict()
    return particles[P.CLASS_NUMBER].value_counts().to_dict()
