"""A structure file's coordinates checked before anything is made from them: a coordinate that
is not a number (a blank or garbled field of a PDB file, which gemmi reads as 0) or not finite
would put atoms at the origin or poison the density map, so the file is refused in one line
naming it, the line or atom, and what was found."""

from __future__ import annotations

import gemmi
import numpy as np

from cryoavae.core.errors import InputError

__all__ = ["refuse_non_finite_coordinates", "refuse_unreadable_pdb_coordinates"]

_PDB_COORDINATE_FIELDS = (("x", 31, 38), ("y", 39, 46), ("z", 47, 54))


def _is_number(field: bytes) -> bool:
    try:
        np.array([field]).astype(np.float64)
    except ValueError:
        return False
    return True


def refuse_unreadable_pdb_coordinates(text: bytes, label: str) -> None:
    """InputError naming the file and line when an ATOM/HETATM record's x, y or z field is blank
    or not a number: gemmi reads such a field as 0 and puts the atom at the origin. (``nan`` and
    ``inf`` are numbers here; :func:`_refuse_non_finite_coordinates` refuses them.)"""
    lines = text.split(b"\n")
    records = [k for k, line in enumerate(lines) if line.startswith((b"ATOM  ", b"HETATM"))]
    if not records:
        return
    fields = np.array(
        [[lines[k][a - 1 : b] for _, a, b in _PDB_COORDINATE_FIELDS] for k in records]
    )
    try:
        fields.astype(np.float64)  # one conversion for the whole file
        return
    except ValueError:
        pass  # find the lines only for a file that is refused
    bad = [
        (k, axis, a, b, lines[k][a - 1 : b])
        for k in records
        for axis, a, b in _PDB_COORDINATE_FIELDS
        if not _is_number(lines[k][a - 1 : b])
    ]
    k, axis, a, b, field = bad[0]
    line = lines[k].decode("latin-1")
    raise InputError(
        f"{label}: line {k + 1}: the {axis} coordinate (columns {a}-{b}) of atom "
        f"{line[12:16].strip()!r} of residue {line[17:20].strip()} {line[22:26].strip()} "
        f"(chain {line[21:22].strip()!r}) is {field.decode('latin-1')!r}, not a number "
        f"({len({bad_k for bad_k, *_ in bad})} such lines); the x/y/z fields must be numbers"
    )


def refuse_non_finite_coordinates(st: gemmi.Structure, label: str) -> None:
    """InputError naming the file when an atom of the first model has a coordinate that is not a
    number: refused where the user's file is named, not later in a copy of it."""
    coordinates = np.array(
        [atom.pos.tolist() for chain in st[0] for residue in chain for atom in residue],
        dtype=np.float64,
    ).reshape(-1, 3)
    bad = ~np.isfinite(coordinates).all(axis=1)
    if bad.any():
        raise InputError(
            f"{label}: atom {int(np.argmax(bad)) + 1} has a coordinate that is not a finite "
            f"number ({int(bad.sum())} such atoms); fix or remove them"
        )
