"""Convert the original Affinity-VAE code's data folder into our stack + STAR table.

That layout (alan-turing-institute/affinity-vae) is a folder of one file per particle, named
``<class>_<anything>.mrc`` or ``<class>_<anything>.npy`` (the class is the text before the first
underscore), plus:

- ``classes.csv``: the classes used for training, comma-separated on one line (one per line is
  accepted too). Optional: without it every class with files is trained on.
- ``affinity.csv``: a header row of class names and the square matrix below it, no index
  column. Optional here; when present every training class must appear in it.
- ``test/``: an optional subfolder of the same kind of files that the original kept out of
  training.

Classes with files but not in ``classes.csv`` become our ``unseen`` split. Files under ``test/``
of a training class go to ``val`` (they were never trained on); the top-level files of training
classes are split train/val with the seed. The original files carry no poses: angles are NaN.
"""

from __future__ import annotations

import csv
import logging
import os
import re
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.core.runlog import command_line_errors

log = logging.getLogger(__name__)

SUFFIXES = (".mrc", ".mrcs", ".npy")
SOURCE_FILE = "cryoavaeSourceFile"  # extra column: the file each particle came from
BATCH_FILES = 256


def convert_legacy_folder(
    folder: str | os.PathLike,
    stack_path: str | os.PathLike,
    star_path: str | os.PathLike,
    seed: int,
    val_fraction: float,
    voxel_size_angstrom: float | None = None,
    affinity_path: str | os.PathLike | None = None,
) -> tuple[list[str], list[str]]:
    """Write the folder's particles as one stack + STAR table; return ``(class_names, unseen)``.

    ``class_names`` lists the training classes in ``classes.csv`` order, then the unseen ones
    sorted; ``rlnClassNumber`` is 1-based into it. The voxel size comes from
    ``voxel_size_angstrom``, else the MRC headers (which must agree), else 1 Å with a warning.
    With ``affinity_path``, the folder's ``affinity.csv`` is validated and written there, reduced
    to our classes in our order (unseen classes only if the matrix has them).

    Raises:
        InputError: no particle files, a file name without ``<class>_``, mixed image shapes,
            ``classes.csv`` naming a class without files, an affinity matrix that is not square,
            symmetric, in [-1, 1] with a unit diagonal, or that lacks a training class.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: legacy data folder not found (expected a directory)")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"val_fraction: got {val_fraction!r}; expected 0 <= value < 1")
    files, file_classes, held_out = _particle_files(folder)
    present = sorted(set(file_classes))
    seen = _read_classes(folder / "classes.csv", present)
    unseen = [c for c in present if c not in seen]
    class_names = [*seen, *unseen]

    affinity = None
    if (folder / "affinity.csv").exists():
        affinity = _read_affinity(folder / "affinity.csv")
        missing = [c for c in seen if c not in affinity[0]]
        if missing:
            raise InputError(
                f"{folder / 'affinity.csv'}: lacks training classes {missing} (from classes.csv); "
                f"it has {affinity[0]}"
            )
    elif affinity_path is not None:
        raise InputError(f"{folder}: no affinity.csv to convert (an affinity output was asked for)")

    voxel = _voxel_size(files, voxel_size_angstrom, folder)
    number = {name: i + 1 for i, name in enumerate(class_names)}
    class_numbers = pd.Series(file_classes).map(number).to_numpy(np.int64)
    is_unseen = ~pd.Series(file_classes).isin(seen).to_numpy()
    rng = np.random.default_rng(seed)
    splits = P.assign_splits(class_numbers, is_unseen | held_out, val_fraction, rng)
    splits[held_out & ~is_unseen] = "val"
    table = P.particle_table(
        P.stack_reference(stack_path, star_path),
        class_numbers,
        file_classes,
        splits,
        **{SOURCE_FILE: [f.relative_to(folder).as_posix() for f in files]},
    )
    shape = _write_images(files, folder, stack_path, voxel)
    P.write_particle_table(star_path, table)
    if affinity_path is not None and affinity is not None:
        names, matrix = affinity
        keep = [c for c in class_names if c in names]
        index = [names.index(c) for c in keep]
        from cryoavae.affinity import write_affinity_csv

        write_affinity_csv(affinity_path, keep, matrix[np.ix_(index, index)])
    log.info(
        "%s: %d particles of %d classes (%d seen, unseen %s), shape %s, %.3f Å",
        folder,
        len(files),
        len(class_names),
        len(seen),
        unseen,
        shape,
        voxel,
    )
    return class_names, unseen


# --------------------------------------------------------------------------- files


def _natural_key(path: Path) -> list:
    """``a_2`` before ``a_10``: digits compare as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _particle_files(folder: Path) -> tuple[list[Path], list[str], np.ndarray]:
    """Particle files (top level, then ``test/``), their classes, and a held-out flag ``(n,)``."""
    groups = [(folder, False), (folder / "test", True)]
    files, classes, held_out = [], [], []
    for directory, is_test in groups:
        if not directory.is_dir():
            continue
        found = [p for p in directory.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES]
        for path in sorted(found, key=lambda p: (p.name.split("_")[0], _natural_key(p))):
            name, sep, _ = path.stem.partition("_")
            if not sep or not name:
                raise InputError(
                    f"{path}: file name has no class prefix; expected <class>_<anything>"
                    f"{path.suffix} (the class is the text before the first underscore)"
                )
            files.append(path)
            classes.append(name)
            held_out.append(is_test)
    if not files:
        raise InputError(
            f"{folder}: no particle files; expected <class>_*.mrc or <class>_*.npy files "
            "(and optionally a test/ subfolder of them)"
        )
    return files, classes, np.array(held_out, dtype=bool)


def _read_classes(path: Path, present: list[str]) -> list[str]:
    """Training classes from ``classes.csv`` (all classes with files when it is absent)."""
    if not path.exists():
        log.info("%s not found: training on every class with files %s", path, present)
        return list(present)
    names = [t.strip() for t in re.split(r"[,\n\r]", path.read_text()) if t.strip()]
    if not names:
        raise InputError(f"{path}: lists no classes; expected comma-separated class names")
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise InputError(f"{path}: classes {duplicated} are listed more than once")
    without_files = [n for n in names if n not in present]
    if without_files:
        log.warning(
            "%s: classes %s have no <class>_* files; training on the others %s",
            *(path, without_files, [n for n in names if n in present]),
        )
        names = [n for n in names if n in present]
    if not names:
        raise InputError(f"{path}: none of its classes has files; files give classes {present}")
    return names


def _write_images(files: list[Path], folder: Path, stack_path: Path, voxel: float) -> tuple:
    """Every particle file into one stack, a batch of files at a time (memory stays one batch
    whatever the folder's size); shapes must agree and values be finite. Returns the box."""
    first = _load_one(files[0])
    with P.stack_writer(stack_path, len(files), first.shape, voxel) as out:
        for start in range(0, len(files), BATCH_FILES):
            batch = files[start : start + BATCH_FILES]
            images = np.empty((len(batch), *first.shape), dtype=np.float32)
            for i, path in enumerate(batch):  # one file per particle: a loop over files
                image = _load_one(path)
                if image.shape != first.shape:
                    raise InputError(
                        f"{path}: shape {image.shape} differs from {first.shape} of "
                        f"{files[0].name}; every particle in {folder} must have the same box size"
                    )
                images[i] = image
            bad = ~np.isfinite(images.reshape(len(images), -1)).all(axis=1)
            if bad.any():
                raise InputError(f"{batch[int(np.argmax(bad))]}: holds NaN or infinite values")
            out.write(start, images)
    return first.shape


def _load_one(path: Path) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise InputError(f"{path}: not a readable .npy array ({exc})") from exc
    else:
        try:
            with mrcfile.open(path, mode="r", permissive=False) as mrc:
                data = np.array(mrc.data)
        except ValueError as exc:
            raise InputError(f"{path}: not a valid MRC file ({exc})") from exc
    if data.ndim == 3 and data.shape[0] == 1:
        data = data[0]  # a single image stored as a one-slice volume
    if data.ndim not in (2, 3) or not np.issubdtype(data.dtype, np.number) or min(data.shape) < 2:
        raise InputError(
            f"{path}: holds a {data.dtype} array of shape {data.shape}; expected a 2-D image or "
            "a 3-D volume of numbers, at least 2 pixels along every axis"
        )
    return data.astype(np.float32, copy=False)


def _voxel_size(files: list[Path], given: float | None, folder: Path) -> float:
    if given is not None:
        if not given > 0:
            raise InputError(f"voxel_size_angstrom: got {given!r}; expected a value > 0 (Å)")
        return float(given)
    sizes = {}
    for path in files:
        if path.suffix.lower() in (".mrc", ".mrcs"):
            # an empty file's header divides by a zero size: NaN, left out below, and refused
            # with its shape when its image is read (no warning printed first)
            with (
                np.errstate(divide="ignore", invalid="ignore"),
                mrcfile.open(path, mode="r", header_only=True, permissive=True) as mrc,
            ):
                sizes[path] = float(mrc.voxel_size.x)
    values = np.array([v for v in sizes.values() if v > 0])
    if len(values) == 0:
        log.warning(
            "%s: no voxel size in the files; writing 1.0 Å (set voxel_size_angstrom)", folder
        )
        return 1.0
    if values.max() - values.min() > 1e-3 * values.max():
        raise InputError(
            f"{folder}: MRC headers give voxel sizes from {values.min():g} to {values.max():g} Å; "
            "expected one size (or set voxel_size_angstrom)"
        )
    return float(values[0])


# --------------------------------------------------------------------------- affinity


def _affinity_header(path: Path) -> list[str]:
    """Class names in an affinity CSV's header row (a leading empty label cell dropped)."""
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if any(cell.strip() for cell in row):
                names = [cell.strip() for cell in row]
                return names[1:] if names and names[0] == "" else names
    raise InputError(f"{path}: empty; expected a header of class names and a square matrix")


def _read_affinity(path: Path) -> tuple[list[str], np.ndarray]:
    """``(names, matrix)`` of the folder's affinity CSV, checked by the project's reader
    (square, numbers, symmetric, [-1, 1], unit diagonal). The original code's matrices often hold
    more classes than the data, so every class in the header is read; callers subset."""
    from cryoavae.affinity import read_affinity_csv  # lazily: it pulls in torch and dscribe

    names = _affinity_header(path)
    matrix = np.asarray(read_affinity_csv(path, names, symmetrize=True), dtype=np.float64)
    return names, (matrix + matrix.T) / 2


def main(
    argv: list[str] | None = None, prog: str = "python -m cryoavae.sources.legacy_folder"
) -> int:
    """``python -m cryoavae.sources.legacy_folder FOLDER OUT_DIR``: convert a folder of the
    original code.

    Writes ``OUT_DIR/particles.mrcs``, ``OUT_DIR/particles.star`` and, when the folder has one,
    ``OUT_DIR/affinity.csv``; prints the class list, unseen classes marked. ``prog`` is how it
    was called (``cryoavae convert-legacy`` hands it on).
    """
    import argparse

    parser = argparse.ArgumentParser(
        prog=prog,
        description=main.__doc__.splitlines()[0],
        epilog=f"example:\n  {prog} affinity-vae/tests/testdata_mrc data/converted "
        "--voxel-size-angstrom 10\n  then paste the printed lines into a study config",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("folder", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    parser.add_argument("--voxel-size-angstrom", type=float, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    has_affinity = (args.folder / "affinity.csv").exists()
    with command_line_errors(parser.prog):
        names, unseen = convert_legacy_folder(
            args.folder,
            args.out_dir / "particles.mrcs",
            args.out_dir / "particles.star",
            seed=args.seed,
            val_fraction=args.val_fraction,
            voxel_size_angstrom=args.voxel_size_angstrom,
            affinity_path=args.out_dir / "affinity.csv" if has_affinity else None,
        )
    print("classes:", ", ".join(f"{n} (unseen)" if n in unseen else n for n in names))
    print(study_config_lines(args.out_dir, names, unseen, has_affinity))
    return 0


def study_config_lines(out_dir: Path, names: list[str], unseen: list[str], prior: bool) -> str:
    """The lines of a study config that train on a converted folder (``particle_source: star``),
    paths as given on the command line (relative to where snakemake will run)."""
    lines = [
        "# a particle_source: star study on the converted folder; paste into your study config",
        "particle_source: star",
        "star:",
        f"  particles: {(out_dir / 'particles.star').as_posix()}",
        f"  classes: [{', '.join(names)}]",
        f"  unseen: [{', '.join(unseen)}]",
        "  class_column: cryoavaeClassName",
        "  split_column: cryoavaeSplit  # keeps the folder's test/ particles in val",
    ]
    if prior:
        lines.append(
            f"affinity: {{source: csv, csv_path: {(out_dir / 'affinity.csv').as_posix()}}}"
        )
    else:
        lines.append("# no affinity.csv in the folder: give a prior (affinity.source: csv)")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
