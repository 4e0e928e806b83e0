"""``cryoavae init``: a complete study config around the user's own STAR file.

A study on one's own particles needs settings the files already say (the classes, the box, the
voxel size) and a few choices the user has to make knowingly (which classes to hold out, which
prior). This module reads the file with the import's own reader
(:func:`cryoavae.sources.star.describe_star_particles`, so the config and the run cannot read it
differently), sizes the model for the box, and hands the result to :mod:`.study_yaml`, which
writes it with comments saying what to change and validates it before the file appears.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryoavae.cli.study_yaml import StudyText, write_study
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_schema
from cryoavae.sources.star import StarContents, describe_star_particles

PRIORS = ("none", "uniform", "structures", "csv")
# the schema's pattern of a class or study name (letters, digits, _.-; a letter or digit first)
NAME = re.compile(section_schema("star")["properties"]["classes"]["items"]["pattern"])
PDB_ID = re.compile(section_schema("structures")["properties"]["ids"]["items"]["pattern"])
MIN_BOX, MAX_BOX = 8, 512
# The encoder halves the box once per entry of model.channels; it stops near a 4-voxel feature
# map, as the project's 32^3 studies do with [8, 16, 32].
FEATURE_EDGE = 4
# what --orientations adds (config/shrec10_pose.yaml, docs/science.md 4.6-4.8): the shape turned
# by the pose, the particle's centre found (4 voxels at most) and read from there
ORIENTATION_MODEL = {
    "decoder": "gaussian_splat",
    "n_gaussians": 64,
    "pose_encoding": "rotation6d",
    "pose_dims": 6,
    "measure_wedge": True,
    "translation_px": 4.0,
    "centring_passes": 2,
}


@dataclass(frozen=True)
class StudyRequest:
    """What the user asked ``cryoavae init`` for (its command line, parsed)."""

    star: Path
    out: Path
    class_column: str = "rlnClassNumber"
    classes: list[str] | None = None
    unseen: list[str] = field(default_factory=list)
    prior: str = "none"
    prior_csv: Path | None = None
    study: str | None = None
    voxel_size_angstrom: float | None = None
    force: bool = False
    orientations: bool = False


def init_study(request: StudyRequest) -> StudyText:
    """Read the STAR file, decide the study's settings, write and validate the config.

    Raises:
        InputError: one line naming the file, column or option that cannot make a study.
    """
    if request.out.exists() and not request.force:
        raise InputError(f"{request.out}: exists already; choose another -o, or add --force")
    study = request.study or request.out.stem
    if not NAME.match(study):
        raise InputError(
            f"study name {study!r} (from -o {request.out.name}) may hold only letters, digits "
            "and _.- (a letter or digit first, at most 64); give --study NAME"
        )
    contents = describe_star_particles(request.star, request.class_column, "--class-column")
    names, how_named = study_classes(contents, request.classes)
    _check_unseen(request.unseen, names, contents.path)
    edge = checked_box(contents)
    ndim = len(contents.box_shape)
    if request.orientations and ndim != 3:
        raise InputError(
            f"{contents.path}: --orientations needs subtomograms (3-D boxes), these are 2-D"
        )
    voxel, voxel_note = _voxel_size(contents, request.voxel_size_angstrom)
    if request.prior == "structures":
        bad = [n for n in names if not PDB_ID.match(n)]
        if bad:
            raise InputError(
                f"--prior structures needs every class named by its PDB ID (4 characters, digit "
                f"first), but {bad[0]!r} is not one; name them with --classes, or choose "
                "--prior none, uniform or csv PATH"
            )
    if request.prior == "csv":
        _check_prior_csv(request.prior_csv, names)
    text = StudyText(
        study=study,
        star=contents,
        star_as_given=request.star.as_posix(),
        classes=names,
        how_named=how_named,
        unseen=list(request.unseen),
        prior=request.prior,
        prior_csv=request.prior_csv.as_posix() if request.prior_csv else None,
        voxel_size_angstrom=voxel,
        voxel_note=voxel_note,
        voxel_given=request.voxel_size_angstrom if contents.voxel_size_angstrom is None else None,
        model=model_for_box(edge, ndim, request.orientations),
        orientations=request.orientations,
    )
    write_study(request.out, text)
    return text


def study_classes(contents: StarContents, given: list[str] | None) -> tuple[list[str], str]:
    """The study's class list for the file's class column, and a sentence on how it was named.

    Integer class numbers ``1..N``: ``given`` (one name per number) or ``class1..classN``. Names:
    ``given``, or the file's names in order of first appearance. A class without particles is
    refused (it could be neither trained nor scored), as is a name the config cannot hold.
    """
    path, column = contents.path, contents.class_column
    if contents.numbered:
        numbers = [int(c) for c in contents.classes]
        if numbers[0] < 1:
            raise InputError(
                f"{path}: {column} holds class number {numbers[0]}; class numbers count from 1 "
                f"(number k names the study's k-th class)"
            )
        empty = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        if empty:
            raise InputError(
                f"{path}: {column} has no particle of class number(s) {empty[:8]}; number the "
                f"classes 1..N without gaps (a class without particles cannot be trained)"
            )
        if given is not None and len(given) != numbers[-1]:
            raise InputError(
                f"--classes names {len(given)} classes but {column} of {path} numbers "
                f"{numbers[-1]}; give one name per class number, in order"
            )
        names = given or [f"class{k}" for k in numbers]
        how = f"{column} k is classes[k-1]; " + (
            "the names are yours (--classes)" if given else "the names are made up: rename them"
        )
    else:
        names = given or list(contents.classes)
        listed = {n.lower() for n in names}
        empty = [n for n in names if n.lower() not in {c.lower() for c in contents.classes}]
        if empty:
            raise InputError(
                f"{path}: no particle has {column} = {empty[0]!r} (names match in any case); "
                f"its classes are {contents.classes[:8]}"
            )
        outside = [c for c in contents.classes if c.lower() not in listed]
        how = (
            "as given; matched to the file in any case"
            if given
            else f"the names in {column}, in order of first appearance"
        )
        if outside:
            how += f"; not listed, so held out as unknown (class 0): {', '.join(outside[:8])}"
    for name in names:
        if not NAME.match(name):
            raise InputError(
                f"{path}: class name {name!r} (column {column}) cannot name a class: letters, "
                "digits and _.- only, a letter or digit first; give names with --classes"
            )
    return names, how


def _check_unseen(unseen: list[str], names: list[str], path: Path) -> None:
    lowered = {n.lower() for n in names}
    for name in unseen:
        if name.lower() not in lowered:
            raise InputError(f"--unseen names {name!r}, which is not a class of {path}: {names}")
    if len(names) - len({u.lower() for u in unseen}) < 2:
        raise InputError(f"--unseen leaves fewer than 2 of the classes {names} to train on")


def checked_box(contents: StarContents) -> int:
    """The particles' box edge: a cube (or square) with an even edge of 8 to 512 voxels, the
    sizes the model's halving encoder and decoder are built for."""
    shape = contents.box_shape
    edge = shape[0]
    if len(set(shape)) != 1 or edge % 2 or not MIN_BOX <= edge <= MAX_BOX:
        raise InputError(
            f"{contents.path}: particles are {' x '.join(map(str, shape))} voxels; expected a "
            f"cubic box with an even edge of {MIN_BOX} to {MAX_BOX} voxels (re-extract them)"
        )
    return edge


def _voxel_size(contents: StarContents, given: float | None) -> tuple[float, str]:
    """The files' voxel size (as the import will read it), else the one given."""
    if contents.voxel_size_angstrom is not None:
        where = f"read from {contents.voxel_size_from}"
        if given is not None and not math.isclose(given, contents.voxel_size_angstrom):
            where += f"; the files win over --voxel-size-angstrom {given:g}"
        return contents.voxel_size_angstrom, where
    if given is None or not 0 < given <= 1000:
        raise InputError(
            f"{contents.path}: no voxel size in its optics block (rlnImagePixelSize) nor in "
            "its first file's MRC header (0 means unknown); give --voxel-size-angstrom "
            "(above 0, at most 1000)"
        )
    return float(given), "given with --voxel-size-angstrom (the files give none)"


def _check_prior_csv(path: Path | None, names: list[str]) -> None:
    """The user's matrix read now, as the affinity rule will read it: a wrong file fails here."""
    from cryoavae.affinity.io import read_affinity_csv  # lazily: the package pulls in dscribe

    if path is None:
        raise InputError("--prior csv needs the matrix's path: --prior csv PATH")
    read_affinity_csv(path, names)


def model_for_box(edge: int, ndim: int, orientations: bool = False) -> dict:
    """Model settings for a box of ``edge`` voxels: as many halving levels as bring it near a
    4-voxel feature map (32 -> [8, 16, 32], as the project's 32^3 studies use), channels doubling
    from 8; 8 latent dimensions; batch norm (without it some seeds get stuck, docs/science.md)
    and a 1-voxel low pass before the encoder (steadier mu for particles off their centre).
    With ``orientations`` (3-D): the model of ``config/shrec10_pose.yaml``, a decoder that turns
    a 3-D shape by a 6-D pose and an encoder that finds each particle's centre first."""
    levels = max(1, min(6, int(math.floor(math.log2(edge / FEATURE_EDGE)))))
    model = {
        "channels": [min(8 * 2**k, 256) for k in range(levels)],
        "batch_norm": True,
        "latent_dims": 8,
        "pose_dims": 4 if ndim == 3 else 1,
        "decoder": "cnn",
        "input_blur_px": 1.0,
    }
    if orientations:
        model.update(ORIENTATION_MODEL)
    return model
