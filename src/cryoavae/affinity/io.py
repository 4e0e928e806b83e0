"""The prior on disk: a header row of class names and the square matrix (the original
Affinity-VAE layout)."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from cryoavae.affinity.matrix import check_square
from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.errors import InputError

log = logging.getLogger(__name__)

CSV_SYMMETRY_TOLERANCE = 1e-3


def _parse_float(cell: str, path: Path, row: int) -> float:
    try:
        return float(cell)
    except ValueError:
        raise InputError(
            f"affinity.csv_path: {path} row {row}: {cell!r} is not a number (expected a header "
            "row of class names and a square matrix of numbers below)"
        ) from None


def _read_cells(path: Path) -> tuple[list[str], list[list[str]], list[str] | None]:
    """Header names, the stripped rows below it and their labels (None without a label column).

    Blank lines are skipped; a one-cell header holding another separator is named, since that is
    the usual way a file fails to be a CSV."""
    if not path.is_file():
        raise InputError(f"affinity.csv_path: {path} does not exist or is not a file")
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(cell.strip() for cell in r)]
    if not rows:
        raise InputError(f"affinity.csv_path: {path} is empty")
    header = [c.strip() for c in rows[0]]
    if len(header) == 1:
        for separator in (";", "\t", " "):
            if separator in header[0].strip():
                raise InputError(
                    f"affinity.csv_path: {path} looks separated by {separator!r}; expected "
                    "commas (a header row of class names, then the square matrix)"
                )
    body = [[c.strip() for c in r] for r in rows[1:]]
    labels = None
    if header and header[0] == "" and all(len(r) == len(header) for r in body):
        header = header[1:]
        labels = [r[0] for r in body]
        body = [r[1:] for r in body]
    return header, body, labels


def _check_square(
    path: Path, header: list[str], body: list[list[str]], labels: list[str] | None
) -> None:
    """InputError unless there is one row of ``n`` values per header name, labelled (if at all)
    by the same names in the same order."""
    n = len(header)
    if len(body) != n or any(len(r) != n for r in body):
        widths = sorted({len(r) for r in body})
        raise InputError(
            f"affinity.csv_path: {path} is not square: header names {n} classes but there are "
            f"{len(body)} rows of {', '.join(map(str, widths)) or 0} values"
        )
    if labels is not None and labels != header:
        raise InputError(
            f"affinity.csv_path: {path}: row labels {labels} differ from the header {header}"
        )


def _check_names(path: Path, header: list[str], wanted: list[str]) -> None:
    """InputError unless the header names each of the study's classes exactly once."""
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise InputError(f"affinity.csv_path: {path}: class names repeated in header: {duplicates}")
    unknown = sorted(set(header) - set(wanted))
    missing = sorted(set(wanted) - set(header))
    if unknown or missing:
        raise InputError(
            f"affinity.csv_path: {path}: class names do not match the study: unknown {unknown}, "
            f"missing {missing} (study classes: {', '.join(wanted)})"
        )


def _check_values(path: Path, a: np.ndarray, header: list[str], symmetrize: bool) -> None:
    """InputError unless ``a`` is a finite, symmetric similarity in [-1, 1] with a unit diagonal;
    with ``symmetrize`` an asymmetry is only warned about (the caller averages it away)."""
    if not np.all(np.isfinite(a)):
        raise InputError(f"affinity.csv_path: {path} holds NaN or infinite values")
    bad = np.argwhere(np.abs(a - a.T) > CSV_SYMMETRY_TOLERANCE)
    if bad.size and symmetrize:
        i, j = np.unravel_index(int(np.argmax(np.abs(a - a.T))), a.shape)
        log.warning(
            "%s is not symmetric (largest asymmetry %.4g, between %s and %s): using (A + A^T) / 2",
            *(path, abs(a[i, j] - a[j, i]), header[i], header[j]),
        )
    elif bad.size:
        i, j = bad[0]
        raise InputError(
            f"affinity.csv_path: {path} is not symmetric: {header[i]},{header[j]} = {a[i, j]} but "
            f"{header[j]},{header[i]} = {a[j, i]} (tolerance {CSV_SYMMETRY_TOLERANCE})"
        )
    outside = np.argwhere(np.abs(a) > 1.0 + 1e-9)
    if outside.size:
        i, j = outside[0]
        raise InputError(
            f"affinity.csv_path: {path}: value {a[i, j]} at {header[i]},{header[j]} is outside "
            "[-1, 1]"
        )
    diag = np.abs(np.diag(a) - 1.0) > CSV_SYMMETRY_TOLERANCE
    if diag.any():
        k = int(np.argmax(diag))
        raise InputError(
            f"affinity.csv_path: {path}: diagonal must be 1 (a similarity, not a distance); "
            f"{header[k]},{header[k]} = {a[k, k]}"
        )


def read_affinity_csv(
    path: str | Path, class_names: Sequence[str], symmetrize: bool = False
) -> np.ndarray:
    """Read a user's affinity matrix and return it (n, n) in the order of ``class_names``.

    Layout (the original Affinity-VAE one): a header row of class names, then the square matrix.
    A leading label column (as pandas writes it) is accepted if it repeats the header's names.
    Checks: square; numbers; symmetric within 1e-3 (``symmetrize``: the mean of the matrix and its
    transpose instead, with a warning naming the largest asymmetry, for the original code's
    matrices); values in [-1, 1]; unit diagonal (a zero diagonal usually means a distance
    matrix); names equal to the study's classes as a set.

    Raises:
        InputError: one line naming the file and the first problem found.
    """
    path = Path(path)
    header, body, labels = _read_cells(path)
    _check_square(path, header, body, labels)
    wanted = [str(c) for c in class_names]
    _check_names(path, header, wanted)
    a = np.array([[_parse_float(c, path, i + 2) for c in r] for i, r in enumerate(body)])
    _check_values(path, a, header, symmetrize)
    order = [header.index(c) for c in wanted]
    a = a[np.ix_(order, order)]
    a = (a + a.T) / 2
    np.fill_diagonal(a, 1.0)
    return a


def write_affinity_csv(path: str | Path, class_names: Sequence[str], a: np.ndarray) -> None:
    """Write ``a`` (n, n) with a header row of class names (the original Affinity-VAE layout).

    Values use Python's shortest round-trip float repr, so reading gives the same matrix.
    """
    a = check_square(a, "affinity")
    names = [str(c) for c in class_names]
    if len(names) != a.shape[0]:
        raise InputError(
            f"affinity: {len(names)} class names for a {a.shape[0]}x{a.shape[0]} matrix"
        )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(names)
    writer.writerows([[repr(float(v)) for v in row] for row in a])
    write_text_atomic(path, buffer.getvalue())
