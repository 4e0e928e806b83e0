"""Your own subtomograms: a RELION 3.1/4/5 or Warp STAR table of particles, read in place.

The STAR file lists particles as ``rlnImageName`` = ``index@stack.mrcs`` or one ``.mrc`` (or
``.mrcs``) per particle, paths relative to the STAR file's folder. :func:`import_star_particles`
writes the study's particle table (:mod:`cryoavae.particles`) whose rows point at those same
files: nothing is copied, so a study on 10^5 particles of 64^3 needs neither their size on disk
again nor in memory. Columns taken from the user's table:

- the class, from ``class_column``: integer class numbers (``rlnClassNumber``, 1-based into the
  study's class list, the "names table") or names (any column of strings, matched to the class
  list case-insensitively). A class outside the list becomes class number 0, split ``unseen``;
- ``rlnAngleRot/Tilt/Psi`` when present (used only to score the pose), else NaN;
- ``rlnDefocusU`` when present;
- the split from ``split_column`` when given (``train``/``val``/``unseen``; unseen classes are
  always ``unseen``), else drawn per class with the seed;
- the voxel size from the optics block (``rlnImagePixelSize``, RELION 3.1+), else the first
  stack's MRC header (0 there means unknown), else ``voxel_size_angstrom`` of the config.

The table also records ``cryoavaeSourceRow`` (the particle's 0-based row in the user's table), so
results can be written back onto the user's own rows (:mod:`cryoavae.inference.annotate`).
:func:`describe_star_particles` reads the same file without a study (its classes, box and voxel
size), for ``cryoavae init`` to write a study config around it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass

log = logging.getLogger(__name__)

SECTION = "star"
SOURCE_ROW = "cryoavaeSourceRow"
KEYS = ("class_column", "split_column", "val_fraction", "test_fraction", "voxel_size_angstrom")


class StarSourceConfig(section_dataclass(SECTION, keys=KEYS)):
    """How a user's STAR table is read: the ``star`` section's keys but the file and the class
    lists (which the workflow passes on their own)."""


def import_star_particles(
    star_path: str | os.PathLike,
    class_names: Sequence[str],
    unseen: Sequence[str],
    config: StarSourceConfig,
    seed: int,
    out_path: str | os.PathLike,
) -> pd.DataFrame:
    """Write the study's particle table for a user's STAR file; return it.

    Every file it names is checked now (exists, holds the images asked for, one box shape), so a
    broken table fails before training with the file and row named.

    Raises:
        InputError: a missing column or file, an index past a stack's end, mixed box sizes,
            class numbers without names, splits other than train/val/unseen, no voxel size.
    """
    star_path, out_path = Path(star_path), Path(out_path)
    user, optics = P.read_star_particles(star_path)
    if user.empty:
        raise InputError(f"{star_path}: the particle table has no rows")
    lookup = P.class_lookup(class_names, unseen)
    names = _class_names_of(user, config.class_column, list(class_names), star_path)
    numbers, spelled, is_unseen = P.resolve_classes(names, lookup)
    splits = _splits(user, config, numbers, is_unseen, seed, star_path)
    index, stacks, whole = P.parse_image_references(user[P.IMAGE])
    files = np.unique(stacks)  # each file's path as seen from the study's particle table
    moved = {f: P.stack_reference(star_path.parent / f, out_path) for f in files}
    target = pd.Series(stacks).map(moved).to_numpy(dtype=str)
    numbered = np.char.add(np.char.add(np.char.zfill((index + 1).astype(str), 6), "@"), target)
    refs = np.where(whole, target, numbered)
    angles = (
        user[list(P.ANGLES)].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        if all(a in user.columns for a in P.ANGLES)
        else None
    )
    defocus = pd.to_numeric(user.get(P.DEFOCUS, 0.0), errors="coerce")
    table = P.particle_table(
        refs,
        numbers,
        spelled,
        splits,
        angles_deg=angles,
        defocus_angstrom=np.nan_to_num(np.asarray(defocus, dtype=np.float64), nan=0.0),
        **{SOURCE_ROW: np.arange(len(user))},
    )
    images = P.ParticleImages(user, star_path)  # the user's paths, as the user wrote them
    images.validate()
    table[P.VOXEL_SIZE] = _voxel_size(user, optics, images, config, star_path)
    P.write_particle_table(out_path, table)
    log.info(
        "%s: %d particles in %d file(s), box %s, %.4g Å/voxel (%s)",
        star_path,
        len(table),
        len(images.stack_names),
        images.shape[1:],
        table[P.VOXEL_SIZE].iloc[0],
        ", ".join(f"{s} {int((splits == s).sum())}" for s in P.SPLITS),
    )
    log.info("%s", _class_mapping(user[config.class_column], numbers, spelled, is_unseen))
    return table


def _class_mapping(
    given: pd.Series, numbers: np.ndarray, spelled: np.ndarray, is_unseen: np.ndarray
) -> str:
    """How the user's class column was read, in class-number order with each class's count:
    ``classes (rlnClassNumber → name: particles): 1 → 1bxn: 120, 2 → 1s3x: 118, 3 → 3h84
    (unseen): 40``, values outside the class list last. Logged so that a user can check that
    number k is the k-th name of ``star.classes`` before a model is trained on a wrong mapping."""
    numeric = pd.to_numeric(given, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        values = numeric.astype(np.int64).astype(str).to_numpy()
    else:
        values = given.astype(str).str.strip().to_numpy()
    rows = pd.DataFrame({"value": values, "number": numbers, "name": spelled, "unseen": is_unseen})
    rows["outside"] = rows["number"] == 0
    groups = rows.groupby(["outside", "number", "value", "name", "unseen"]).size()
    parts = []
    for (outside, _, value, name, unseen), count in groups.items():  # sorted: number, value
        target = "not in star.classes (class 0, unseen)" if outside else str(name)
        parts.append(f"{value} → {target}{' (unseen)' if unseen and not outside else ''}: {count}")
    return f"classes ({given.name} → name: particles): " + ", ".join(parts)


@dataclass(frozen=True)
class StarContents:
    """What a user's STAR file holds, as :func:`describe_star_particles` reads it.

    ``classes`` are the class column's distinct values: integer class numbers ascending
    (``numbered``) or names in order of first appearance (one spelling per name, as names match
    in any case); ``counts`` the particles of each. ``voxel_size_angstrom`` is None when neither
    the optics block nor the first stack's header gives one; ``voxel_size_from`` says where it
    was read.
    """

    path: Path
    class_column: str
    numbered: bool
    classes: list[str]
    counts: list[int]
    box_shape: tuple[int, ...]
    n_files: int
    voxel_size_angstrom: float | None
    voxel_size_from: str

    @property
    def n_particles(self) -> int:
        return sum(self.counts)


def describe_star_particles(
    star_path: str | os.PathLike, class_column: str = P.CLASS_NUMBER, option: str = ""
) -> StarContents:
    """Read a user's STAR file as :func:`import_star_particles` would, without a study: its
    classes, box and voxel size, so that a study config can be written for it
    (``cryoavae init``). Every file it names is checked, as on import. ``option`` names the
    setting that chose ``class_column`` in error messages (default ``star.class_column``).

    Raises:
        InputError: as :func:`import_star_particles` (a missing column or file, mixed boxes).
    """
    star_path = Path(star_path)
    user, optics = P.read_star_particles(star_path)
    if user.empty:
        raise InputError(f"{star_path}: the particle table has no rows")
    names, numbers = _class_column(user, class_column, star_path, option or "star.class_column")
    if numbers is not None:
        found, counts = np.unique(numbers, return_counts=True)
        classes = [str(n) for n in found]
    else:
        keys = pd.Series(names).str.lower()
        first = ~keys.duplicated()
        classes = [str(n) for n in names[first.to_numpy()]]
        counts_by_key = keys.value_counts()
        counts = [int(counts_by_key[k]) for k in keys[first]]
    images = P.ParticleImages(user, star_path)
    images.validate()
    voxel, where = _voxel_size_in_files(user, optics, images, star_path)
    return StarContents(
        path=star_path,
        class_column=class_column,
        numbered=numbers is not None,
        classes=classes,
        counts=[int(c) for c in counts],
        box_shape=tuple(int(e) for e in images.shape[1:]),
        n_files=len(images.stack_names),
        voxel_size_angstrom=voxel,
        voxel_size_from=where,
    )


def _class_names_of(
    user: pd.DataFrame, column: str, class_names: list[str], path: Path
) -> np.ndarray:
    """Each particle's class name from ``column``: integers index ``class_names`` (1-based)."""
    values, numbers = _class_column(user, column, path)
    if numbers is not None:
        known = (numbers >= 1) & (numbers <= len(class_names))
        if not known.any():
            raise InputError(
                f"{path}: {column} holds numbers {sorted(set(numbers.tolist()))[:8]} but the "
                f"study names {len(class_names)} classes (star.classes); give every number a name"
            )
        lookup = np.asarray(["", *class_names], dtype=object)
        return np.where(known, lookup[np.clip(numbers, 0, len(class_names))], numbers.astype(str))
    return values


def _class_column(
    user: pd.DataFrame, column: str, path: Path, option: str = "star.class_column"
) -> tuple[np.ndarray, np.ndarray | None]:
    """The class column as names ``(n,)`` and, when every value is an integer, as class numbers
    ``(n,)`` (else None): one reading of the column for the import and for ``cryoavae init``."""
    if column not in user.columns:
        raise InputError(
            f"{path}: class column {column!r} ({option}) is not in the table; its "
            f"columns are {list(user.columns)}"
        )
    values = user[column]
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all() and (numeric == numeric.round()).all():
        numbers = numeric.astype(np.int64).to_numpy()
        return numbers.astype(str).astype(object), numbers
    if values.isna().any():
        raise InputError(f"{path}: {column} is empty in row {int(values.isna().argmax()) + 1}")
    return values.astype(str).str.strip().to_numpy(dtype=object), None


def _splits(user, config, numbers, is_unseen, seed, path: Path) -> np.ndarray:
    if config.split_column is None:
        rng = np.random.default_rng(seed)
        return P.assign_splits(numbers, is_unseen, config.val_fraction, rng, config.test_fraction)
    if config.split_column not in user.columns:
        raise InputError(
            f"{path}: split column {config.split_column!r} (star.split_column) is not in the "
            f"table; its columns are {list(user.columns)}"
        )
    given = user[config.split_column].astype(str).str.strip().str.lower().to_numpy()
    bad = ~np.isin(given, P.SPLITS)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"{path}: row {row + 1} has {config.split_column} = {given[row]!r}; expected one "
            f"of {list(P.SPLITS)}"
        )
    moved = is_unseen & (given != "unseen")
    if moved.any():
        log.warning(
            "%s: %d particles of unseen classes are marked %s; they stay unseen",
            *(path, int(moved.sum()), config.split_column),
        )
    return np.where(is_unseen, "unseen", given)


def _voxel_size(user, optics, images, config, path: Path) -> float:
    """Optics block, then the first stack's header, then the config; one size for all."""
    found, _ = _voxel_size_in_files(user, optics, images, path)
    if found is not None:
        return found
    if config.voxel_size_angstrom is not None:
        return float(config.voxel_size_angstrom)
    raise InputError(
        f"{path}: no voxel size in its optics block nor in {images.stack_names[0]}'s header "
        "(0 means unknown); set star.voxel_size_angstrom"
    )


def _voxel_size_in_files(user, optics, images, path: Path) -> tuple[float | None, str]:
    """The voxel size the files give and where it was read (None, "" when they give none)."""
    if optics is not None and P.VOXEL_SIZE in optics.columns:
        sizes = pd.to_numeric(optics[P.VOXEL_SIZE], errors="coerce")
        if "rlnOpticsGroup" in user.columns and "rlnOpticsGroup" in optics.columns:
            groups = dict(zip(optics["rlnOpticsGroup"], sizes, strict=True))
            used = sorted({groups.get(g, np.nan) for g in user["rlnOpticsGroup"].unique()})
        else:
            used = sorted(set(sizes.tolist()))
        used = [v for v in used if np.isfinite(v)]
        if len(used) > 1:
            raise InputError(
                f"{path}: the optics groups give voxel sizes {used} Å; a study needs one "
                "(rescale the particles, or split the table)"
            )
        if used and used[0] > 0:
            return float(used[0]), f"the optics block's {P.VOXEL_SIZE}"
    header = P.stack_voxel_size(images.root / images.stack_names[0])
    if header > 0:
        return header, f"the MRC header of {images.stack_names[0]}"
    return None, ""
