"""The particle table (STAR): its columns, how rows point at images, splits, classes, merging.

Columns (RELION names where RELION has one):

- ``rlnImageName``: ``"<1-based index>@<stack file>"``, the stack path relative to the STAR file.
- ``rlnClassNumber``: 1-based index of the class in the study's class list (0: a class outside
  it, always ``unseen``).
- ``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi``: ZYZ Euler angles in degrees (RELION
  convention, see :mod:`cryoavae.geometry.rotations`); for 2-D images only ``rlnAnglePsi`` (the
  in-plane angle) is meaningful; NaN where unknown.
- ``rlnDefocusU``: defocus in Å (0 when no CTF was applied).
- ``cryoavaeClassName``, ``cryoavaeSplit`` (``train``/``val``/``unseen``), ``cryoavaeSNR``,
  ``cryoavaeShard``: our own columns.
- optional ``rlnImagePixelSize``: the voxel size (Å), for particles whose stacks' headers do
  not give it (a user's own files); otherwise the headers are the record.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryoavae.core.atomic import atomic_path
from cryoavae.core.errors import InputError

log = logging.getLogger(__name__)

IMAGE = "rlnImageName"
CLASS_NUMBER = "rlnClassNumber"
ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
DEFOCUS = "rlnDefocusU"
#: optional: RELION's shift of each particle (Å), minus where its centre sits from the box centre
ORIGINS = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
CLASS_NAME = "cryoavaeClassName"
SPLIT = "cryoavaeSplit"
SNR = "cryoavaeSNR"
SHARD = "cryoavaeShard"
VOXEL_SIZE = "rlnImagePixelSize"  # optional: Å per voxel, when the stacks' headers do not say
#: optional: where an earlier model found each particle's centre (x, y, z Å from the box centre);
#: :class:`~cryoavae.particles.images.ParticleImages` reads such a particle moved onto it
RECENTRE = ("cryoavaeRecentreXAngst", "cryoavaeRecentreYAngst", "cryoavaeRecentreZAngst")
REQUIRED_COLUMNS = (IMAGE, CLASS_NUMBER, *ANGLES, CLASS_NAME, SPLIT)
#: ``train`` fits the model; ``val`` is for every choice made after seeing results (checkpoints,
#: thresholds, settings); ``test`` is scored and never chosen on; ``unseen`` are the classes held
#: out of training altogether.
SPLITS = ("train", "val", "test", "unseen")


# --------------------------------------------------------------------------- image references


def image_reference(index: int, stack_name: str) -> str:
    """RELION's ``index@stack`` with a 1-based index, for 0-based ``index``."""
    return f"{index + 1:06d}@{stack_name}"


def split_image_reference(ref: str) -> tuple[int, str]:
    """Inverse of :func:`image_reference`: 0-based index and stack path."""
    index, stack = split_image_references([ref])
    return int(index[0]), str(stack[0])


def split_image_references(refs: Sequence[str] | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Every ``index@stack`` of a column at once: 0-based indices ``(n,)`` int64, stacks ``(n,)``.

    Raises:
        InputError: naming the first value that is not ``<index >= 1>@<stack>``.
    """
    index, stack, whole = parse_image_references(refs)
    if whole.any():
        _refuse_reference(refs, whole)
    return index, stack


def parse_image_references(
    refs: Sequence[str] | pd.Series,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image references as RELION writes them: ``index@stack``, or a file holding one particle.

    Returns 0-based indices ``(n,)`` (0 for a whole file), the files ``(n,)`` and ``whole``
    ``(n,)`` bool, True where the reference names a whole file.

    Raises:
        InputError: naming the first malformed value (an index that is not >= 1, no file).
    """
    parts = pd.Series(refs, dtype=object).astype(str).str.partition("@")
    head, at, tail = parts[0], parts[1], parts[2]
    whole = (at != "@").to_numpy()
    digits = head.str.fullmatch(r"[0-9]+").to_numpy()
    numbers = pd.to_numeric(head.where(digits, "0")).to_numpy(np.int64)
    stack = np.where(whole, head.to_numpy(dtype=object), tail.to_numpy(dtype=object))
    bad = (~whole & (numbers < 1)) | (pd.Series(stack).str.strip() == "").to_numpy()
    if bad.any():
        _refuse_reference(refs, bad)
    return np.where(whole, 0, numbers - 1), stack, whole


def _refuse_reference(refs, bad: np.ndarray) -> None:
    row = int(np.argmax(bad))
    ref = str(pd.Series(refs, dtype=object).iloc[row])
    raise InputError(
        f"{IMAGE} value {ref!r} is not of the form <index>@<stack> (index >= 1; row {row + 1})"
    )


def stack_reference(stack_path: str | os.PathLike, star_path: str | os.PathLike) -> str:
    """How a STAR file at ``star_path`` names the stack at ``stack_path``: relative, POSIX."""
    return Path(os.path.relpath(stack_path, Path(star_path).parent)).as_posix()


# --------------------------------------------------------------------------- building a table


def particle_table(
    images: str | Sequence[str],
    class_numbers: np.ndarray,
    class_names: Sequence[str] | np.ndarray,
    splits: np.ndarray,
    angles_deg: np.ndarray | None = None,
    defocus_angstrom: float | np.ndarray = 0.0,
    snr: float | np.ndarray = math.nan,
    shard: int = 0,
    **extra_columns,
) -> pd.DataFrame:
    """The table for ``n`` particles: images ``0 .. n-1`` of the stack named ``images``, or the
    ``n`` image references ``images`` themselves (particles read in place).

    ``class_numbers``, ``class_names`` (each particle's), ``splits``: ``(n,)``; ``angles_deg``
    ``(n, 3)`` RELION ZYZ (NaN when None); ``extra_columns`` are added after ours, in order.
    Every particle source builds its table here, so they all write the same columns.
    """
    n = len(class_numbers)
    angles = np.full((n, 3), np.nan) if angles_deg is None else np.asarray(angles_deg, float)
    columns = {
        IMAGE: [image_reference(i, images) for i in range(n)]
        if isinstance(images, str)
        else np.asarray(images, dtype=object),
        CLASS_NUMBER: np.asarray(class_numbers, dtype=np.int64),
        **{name: angles[:, a] for a, name in enumerate(ANGLES)},
        DEFOCUS: np.broadcast_to(np.asarray(defocus_angstrom, dtype=np.float64), (n,)),
        CLASS_NAME: np.asarray(class_names, dtype=object),
        SPLIT: np.asarray(splits),
        SNR: np.broadcast_to(np.asarray(snr, dtype=np.float64), (n,)),
        SHARD: np.full(n, int(shard)),
    }
    for name, values in extra_columns.items():
        columns[name] = values
    return pd.DataFrame(columns)


def defocus_um(table: pd.DataFrame) -> np.ndarray:
    """Each row's defocus in µm (``rlnDefocusU`` is in Å): NaN where it is not a number, every
    row NaN when the table has no such column."""
    if DEFOCUS not in table.columns:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[DEFOCUS], errors="coerce").to_numpy(np.float64) / 1e4


def class_counts(
    class_names: Sequence[str], unseen: Collection[str], per_class: int, per_unseen_class: int
) -> np.ndarray:
    """How many particles each class gets ``(c,)`` int64: ``per_unseen_class`` for the classes
    held out of training, ``per_class`` for the others (one rule for every generated source)."""
    return np.array(
        [per_unseen_class if name in unseen else per_class for name in class_names], np.int64
    )


def assign_splits(
    class_numbers: np.ndarray,
    is_unseen: np.ndarray,
    val_fraction: float,
    rng: np.random.Generator,
    test_fraction: float = 0.0,
) -> np.ndarray:
    """Split labels ``(n,)``: per seen class, :func:`val_count` of its particles, chosen with
    ``rng``, go to ``val``, the next ``val_count(test_fraction, n)`` to ``test`` and the rest to
    ``train``; unseen particles get ``unseen``.

    Classes are visited in ascending class number, and each draws one permutation of its
    members, so the same seed gives the same split in every particle source, and the ``val``
    particles do not depend on ``test_fraction``.
    """
    if val_fraction + test_fraction >= 1.0:
        raise InputError(
            f"val_fraction {val_fraction} + test_fraction {test_fraction} leave no particle to "
            "train on; their sum must be below 1"
        )
    class_numbers = np.asarray(class_numbers)
    is_unseen = np.asarray(is_unseen, dtype=bool)
    splits = np.where(is_unseen, "unseen", "train").astype(object)
    for number in np.unique(class_numbers[~is_unseen]):  # loop over classes
        members = np.nonzero((class_numbers == number) & ~is_unseen)[0]
        order = rng.permutation(members)
        n_val = val_count(val_fraction, len(members))
        n_test = val_count(test_fraction, len(members))
        splits[order[:n_val]] = "val"
        splits[order[n_val : n_val + n_test]] = "test"
    return splits.astype(str)


def val_count(val_fraction: float, n_particles: int) -> int:
    """Particles of a class that go to ``val``: ``val_fraction * n`` rounded half up (the one
    rounding rule of every split; Python's ``round`` would round 0.5 to even)."""
    return math.floor(val_fraction * n_particles + 0.5)


def class_lookup(class_names: Sequence[str], unseen: Sequence[str]) -> dict:
    """Lower-cased name -> (1-based class number, spelling in ``class_names``, is unseen).

    Raises:
        InputError: a name repeated (names match case-insensitively), or an ``unseen`` name that
            is not in ``class_names``.
    """
    lookup: dict[str, tuple[int, str, bool]] = {}
    for i, name in enumerate(class_names):
        key = str(name).lower()
        if key in lookup:
            raise InputError(
                f"class names: {name!r} appears twice (names match case-insensitively)"
            )
        lookup[key] = (i + 1, str(name), False)
    for name in unseen:
        key = str(name).lower()
        if key not in lookup:
            raise InputError(
                f"unseen: {name!r} is not in the class list {list(class_names)}; "
                "list every class, seen and unseen, in the class list"
            )
        number, spelled, _ = lookup[key]
        lookup[key] = (number, spelled, True)
    return lookup


def resolve_classes(names: np.ndarray, lookup: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class numbers, spellings and unseen flags ``(n,)`` for particles' class ``names``.

    A name outside ``lookup`` (see :func:`class_lookup`) keeps its own spelling, gets class
    number 0 and counts as unseen (with a logged warning), so a model can be applied to it.
    """
    lowered = np.array([str(n).lower() for n in names])
    keys, which = np.unique(lowered, return_inverse=True)
    numbers = np.zeros(len(keys), dtype=np.int64)
    spelled = np.array([str(names[np.argmax(which == k)]) for k in range(len(keys))], dtype=object)
    unseen = np.ones(len(keys), dtype=bool)
    for k, key in enumerate(keys):  # loop over classes, not particles
        if key in lookup:
            numbers[k], spelled[k], unseen[k] = lookup[key]
    unknown = [str(s) for s, n in zip(spelled, numbers, strict=True) if n == 0]
    if unknown:
        log.warning("classes %s are not in the class list: class number 0, split unseen", unknown)
    return numbers[which], spelled[which].astype(str), unseen[which]


# --------------------------------------------------------------------------- reading and writing


def write_particle_table(path: str | os.PathLike, table: pd.DataFrame) -> None:
    """Validate and write a particle table as STAR, atomically."""
    _check_columns(table, path)
    write_star_blocks(path, {"": table.reset_index(drop=True)}, "cryoavae particle table")


def write_star_blocks(path: str | os.PathLike, blocks: dict, header: str) -> None:
    """Write data blocks (name -> table) as one STAR file, atomically. starfile stamps the
    wall-clock time into its first line; ``header`` replaces it, so that a seeded run is
    byte-for-byte reproducible."""
    with atomic_path(path) as tmp:
        starfile.write(blocks if len(blocks) > 1 or "" not in blocks else blocks[""], tmp)
        lines = tmp.read_text().splitlines(keepends=True)
        if lines and lines[0].startswith("# Created by the starfile"):
            lines[0] = f"# {header}\n"
        tmp.write_text("".join(lines))


def read_star_blocks(path: str | os.PathLike, what: str = "particle table") -> dict:
    """Every data block of a STAR file by name; a one-line InputError naming the file and
    ``what`` it should be if it is missing or unreadable."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: {what} not found")
    try:
        return starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises several types for a corrupt file
        raise InputError(f"{path}: not a readable STAR file ({exc})") from exc


def read_star_particles(path: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The particle table of a user's STAR file and its optics table (None without one).

    The particles are the table with ``rlnImageName``: RELION 3.1+ calls its block
    ``particles``; older RELION and Warp files hold a single unnamed block.
    """
    path = Path(path)
    blocks = read_star_blocks(path, what="particle STAR file")
    tables = {name: t for name, t in blocks.items() if isinstance(t, pd.DataFrame)}
    with_images = [name for name, t in tables.items() if IMAGE in t.columns]
    if len(with_images) != 1:
        raise InputError(
            f"{path}: expected one table with a {IMAGE} column, found {len(with_images)} "
            f"(blocks: {list(blocks) or 'none'})"
        )
    optics = next((t for n, t in tables.items() if n == "optics"), None)
    return tables[with_images[0]].reset_index(drop=True), optics


def read_particle_table(path: str | os.PathLike) -> pd.DataFrame:
    """Read a particle table written by :func:`write_particle_table`, with a clear error if not."""
    path = Path(path)
    blocks = read_star_blocks(path)
    if len(blocks) != 1:
        raise InputError(f"{path}: expected one data block, found {list(blocks)}")
    table = next(iter(blocks.values()))
    if not isinstance(table, pd.DataFrame):
        raise InputError(f"{path}: expected a table (loop_) block")
    _check_columns(table, path)
    table[CLASS_NAME] = table[CLASS_NAME].astype(str)
    table[SPLIT] = table[SPLIT].astype(str)
    bad = set(table[SPLIT]) - set(SPLITS)
    if bad:
        raise InputError(f"{path}: column {SPLIT} has {sorted(bad)}; expected one of {SPLITS}")
    return table


def _check_columns(table: pd.DataFrame, path: str | os.PathLike) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise InputError(f"{path}: particle table lacks columns {missing}")


def merge_particle_tables(
    star_paths: Sequence[str | os.PathLike], out_path: str | os.PathLike
) -> None:
    """Concatenate shard tables into one STAR whose image paths are relative to its own folder.

    Raises:
        InputError: a table is missing or malformed, or two rows point at the same image.
    """
    out_path = Path(out_path)
    tables = []
    for star_path in map(Path, star_paths):
        table = read_particle_table(star_path)
        refs = table[IMAGE].astype(str)
        _, stack = split_image_references(refs)  # validates every reference
        names = {s: stack_reference(star_path.parent / s, out_path) for s in np.unique(stack)}
        table[IMAGE] = refs.str.partition("@")[0] + "@" + pd.Series(stack, refs.index).map(names)
        tables.append(table)
    if not tables:
        raise InputError("merge_particle_tables: no shard tables given")
    merged = pd.concat(tables, ignore_index=True)
    duplicated = merged[IMAGE].duplicated()
    if duplicated.any():
        raise InputError(
            f"{out_path}: image {merged[IMAGE][duplicated].iloc[0]} appears twice; "
            "was a shard table listed twice?"
        )
    write_particle_table(out_path, merged)
