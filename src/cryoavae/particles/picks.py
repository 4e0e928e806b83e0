"""Particle lists: where particles sit in a tomogram, read from SHREC'21, RELION STAR or CSV.

Conventions (shared by every reader here):

- Coordinates ``x, y, z`` are in voxels of the tomogram, **0-based**, and name the voxel at the
  particle's centre: ``x`` indexes the fastest-varying axis of the MRC file. ``mrcfile`` returns
  the data as a ``(z, y, x)`` array, so the particle sits at ``volume[z, y, x]``. This is how
  SHREC'21's ``particle_locations.txt`` is written (integer voxel indices into the grand model).
  Fractional coordinates are rounded to the nearest voxel, except when rescaling, where the box is
  interpolated around the exact position. Tools that count voxels from 1 need ``x - 1``.
- A box of ``b`` voxels puts the particle at index ``b // 2`` along each axis (the FFT centre, as
  in the simulated maps): it covers ``[c - b // 2, c - b // 2 + b)``.
- Angles in the output are RELION's ``rlnAngleRot/Tilt/Psi`` (degrees), which name RELION's
  matrix ``A = Rz(-psi) @ Ry(-tilt) @ Rz(-rot)`` acting on ``(x, y, z)`` column vectors
  (:mod:`cryoavae.geometry.rotations`): the particle is the reference turned actively by ``A``.
  scipy's ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)``, i.e.
  ``Rz(rot) @ Ry(tilt) @ Rz(psi)``, is ``A``'s transpose, the rotation that turns the particle
  back onto the reference. SHREC'21 lists store three angles ``(a0, a1, a2)`` of static-axis z,
  x, z rotations (its generator, PyTom: ``rotation_order="szxz"``), the matrix
  ``Rz(a2) @ Rx(a1) @ Rz(a0)`` (scipy ``from_euler("zxz", ...)``, lower case = extrinsic); that
  matrix is read as ``A^T`` and converted to the ZYZ angles above (scipy's ``"ZYZ"`` matrix of
  the angles is the ``"zxz"`` one), as the simulated tomograms' ``particle_locations.txt`` are
  written (:mod:`cryoavae.sources.tomogram.truth`). Unknown angles (SHREC's vesicles and
  fiducials, lists without angles) are NaN.
- SHREC'21 coordinates refer to the 512 x 512 x 200 grand model; its ``reconstruction.mrc`` is 512
  voxels deep, so crop it to the grand model's slab (or add the offset to ``z``) before extracting.

Realistic picks from a true list (:func:`jitter_positions`, :func:`add_false_positives`): each
position off by a normal error, and boxes at random positions of class ``background``.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_schema

LIST_FORMATS = tuple(section_schema("extraction")["properties"]["list_format"]["enum"])
#: The class of a false positive: a box at a random position (see :func:`add_false_positives`).
BACKGROUND_CLASS = "background"
_FALSE_POSITIVE_ROUNDS = 20


@dataclass(frozen=True)
class ParticleList:
    """Particles as read from a list: ``names`` (n,), ``coords_xyz`` (n, 3) voxels,
    ``angles_deg`` (n, 3) RELION ZYZ (rot, tilt, psi), NaN where unknown."""

    names: np.ndarray
    coords_xyz: np.ndarray
    angles_deg: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


def shrec_angles_to_relion(angles_zxz_deg: np.ndarray) -> np.ndarray:
    """SHREC'21/PyTom static-axis ZXZ angles ``(n, 3)`` -> RELION ZYZ angles ``(n, 3)``, degrees.

    Both describe the same matrix (see the module docstring); rows with a NaN stay NaN.
    """
    angles = np.asarray(angles_zxz_deg, dtype=np.float64).reshape(-1, 3)
    out = np.full_like(angles, np.nan)
    ok = np.isfinite(angles).all(axis=1)
    if ok.any():
        rot = Rotation.from_euler("zxz", angles[ok], degrees=True)
        with warnings.catch_warnings():
            # tilt 0 or 180: scipy sets psi to 0 and puts the whole turn in rot, which is the
            # same matrix; the warning would only be noise for lists with untilted particles
            warnings.filterwarnings("ignore", message="Gimbal lock", category=UserWarning)
            out[ok] = rot.as_euler("ZYZ", degrees=True)
    return out


def read_shrec_locations(path: str | os.PathLike) -> ParticleList:
    """SHREC'21 ``particle_locations.txt``: ``class x y z a0 a1 a2`` per line, whitespace-separated.

    Angles may be missing (4 columns) or NaN. Blank lines and ``#`` comments are ignored.
    """
    path = Path(path)
    names, coords, angles = [], [], []
    for lineno, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) not in (4, 7):
            raise InputError(
                f"{path}: line {lineno} has {len(fields)} fields ({line.strip()!r}); "
                "expected 'class x y z' or 'class x y z a0 a1 a2'"
            )
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise InputError(
                f"{path}: line {lineno} ({line.strip()!r}) has a non-numeric coordinate or "
                "angle; expected 'class x y z [a0 a1 a2]'"
            ) from None
        names.append(fields[0])
        coords.append(values[:3])
        angles.append(values[3:] if len(values) == 6 else [np.nan] * 3)
    if not names:
        raise InputError(f"{path}: particle list holds no particles")
    return _particle_list(path, names, coords, shrec_angles_to_relion(np.array(angles)))


def read_star_locations(
    path: str | os.PathLike, class_names: list[str], tomogram_name: str | None = None
) -> ParticleList:
    """RELION STAR: ``rlnCoordinateX/Y/Z`` (voxels), optional ``rlnAngleRot/Tilt/Psi``.

    The class comes from ``cryoavaeClassName`` if present, else from ``rlnClassNumber`` (1-based
    into ``class_names``). If ``rlnTomoName`` names several tomograms, only rows whose name equals
    ``tomogram_name`` (the tomogram file's stem) are kept.
    """
    path = Path(path)
    blocks = P.read_star_blocks(path, what="particle list")
    tables = [t for t in blocks.values() if isinstance(t, pd.DataFrame) and "rlnCoordinateX" in t]
    if len(tables) != 1:
        centred = any(
            isinstance(t, pd.DataFrame) and "rlnCenteredCoordinateXAngst" in t
            for t in blocks.values()
        )
        hint = (
            "RELION 5 centred Å coordinates are not supported; convert them to voxel "
            "rlnCoordinateX/Y/Z"
            if centred
            else "expected one table with rlnCoordinateX, rlnCoordinateY, rlnCoordinateZ"
        )
        raise InputError(f"{path}: found {len(tables)} particle tables with coordinates; {hint}")
    table = tables[0]
    missing = [c for c in ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ") if c not in table]
    if missing:
        raise InputError(f"{path}: particle list lacks columns {missing}")
    if "rlnTomoName" in table and table["rlnTomoName"].nunique() > 1:
        keep = table["rlnTomoName"].astype(str) == str(tomogram_name)
        if not keep.any():
            raise InputError(
                f"{path}: rlnTomoName has {sorted(table['rlnTomoName'].astype(str).unique())}, "
                f"none equal to the tomogram's name {tomogram_name!r}"
            )
        table = table[keep]
    if P.CLASS_NAME in table:
        names = table[P.CLASS_NAME].astype(str).tolist()
    elif P.CLASS_NUMBER in table:
        numbers = pd.to_numeric(table[P.CLASS_NUMBER], errors="coerce")
        if numbers.isna().any():
            raise InputError(f"{path}: {P.CLASS_NUMBER} has non-integer values")
        known = range(1, len(class_names) + 1)
        names = [class_names[k - 1] if k in known else str(k) for k in numbers.astype(int)]
    else:
        raise InputError(f"{path}: particle list has neither {P.CLASS_NAME} nor {P.CLASS_NUMBER}")
    coords = _numeric(path, table, ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"])
    if all(a in table for a in P.ANGLES):
        angles = _numeric(path, table, list(P.ANGLES), allow_nan=True)
    else:
        angles = np.full((len(table), 3), np.nan)
    return _particle_list(path, names, coords, angles)


def read_csv_locations(path: str | os.PathLike) -> ParticleList:
    """CSV with a header: ``class, x, y, z`` and optionally ``rot, tilt, psi`` (RELION ZYZ, °)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: particle list not found")
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except Exception as exc:  # pandas raises several types for a malformed file
        raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
    table.columns = [str(c).strip().lower() for c in table.columns]
    missing = [c for c in ("class", "x", "y", "z") if c not in table]
    if missing:
        raise InputError(
            f"{path}: CSV particle list lacks columns {missing}; has {list(table.columns)}; "
            "expected class, x, y, z[, rot, tilt, psi]"
        )
    coords = _numeric(path, table, ["x", "y", "z"])
    present = [a in table for a in ("rot", "tilt", "psi")]
    if any(present) and not all(present):
        raise InputError(f"{path}: give all of rot, tilt, psi or none of them")
    if all(present):
        angles = _numeric(path, table, ["rot", "tilt", "psi"], allow_nan=True)
    else:
        angles = np.full((len(table), 3), np.nan)
    return _particle_list(path, table["class"].astype(str).tolist(), coords, angles)


def read_particle_list(
    path: str | os.PathLike,
    class_names: list[str],
    list_format: str = "auto",
    tomogram_name: str | None = None,
) -> ParticleList:
    """Read a particle list in any supported format (``auto`` picks by suffix)."""
    path = Path(path)
    fmt = list_format
    if fmt == "auto":
        suffixes = {".star": "star", ".csv": "csv", ".txt": "shrec"}
        fmt = suffixes.get(path.suffix.lower(), "")
        if not fmt:
            raise InputError(
                f"{path}: cannot tell the particle list's format from suffix {path.suffix!r}; "
                "use .txt (SHREC), .star or .csv, or set list_format"
            )
    if fmt == "shrec":
        return read_shrec_locations(path)
    if fmt == "star":
        return read_star_locations(path, class_names, tomogram_name)
    if fmt == "csv":
        return read_csv_locations(path)
    raise InputError(f"list_format: got {list_format!r}; expected one of {LIST_FORMATS}")


# --------------------------------------------------------------------------- realistic picks


def jitter_positions(
    plist: ParticleList, sigma_px: float, rng: np.random.Generator
) -> ParticleList:
    """Picks off their listed positions: each coordinate plus a normal draw of ``sigma_px``
    voxels (independently per axis), as a picker's error; ``sigma_px`` 0 returns ``plist``."""
    if sigma_px <= 0:
        return plist
    coords = plist.coords_xyz + rng.normal(0.0, sigma_px, plist.coords_xyz.shape)
    return ParticleList(plist.names, coords, plist.angles_deg)


def add_false_positives(
    plist: ParticleList,
    n: int,
    shape_xyz: tuple[int, int, int],
    margin_px: float,
    min_distance_px: float,
    rng: np.random.Generator,
) -> ParticleList:
    """``plist`` and ``n`` false picks of class :data:`BACKGROUND_CLASS` (angles NaN).

    Each lies uniformly at random with its centre at least ``margin_px`` voxels inside every
    face of a ``shape_xyz`` (x, y, z) tomogram and ``min_distance_px`` from every listed
    particle: junk of the kind template matching or a neural picker returns, which a box around
    it may share with a neighbour. Candidates are drawn in rounds and tested with a k-d tree.
    Fewer than ``n`` are returned only when the tomogram has too little room (the caller logs).
    """
    if n <= 0:
        return plist
    lo = np.full(3, float(margin_px))
    hi = np.asarray(shape_xyz, dtype=np.float64) - 1.0 - lo
    if (hi < lo).any():
        return plist
    tree = cKDTree(plist.coords_xyz)
    found = np.empty((0, 3))
    for _ in range(_FALSE_POSITIVE_ROUNDS):
        candidates = rng.uniform(lo, hi, (4 * n, 3))
        distance, _ = tree.query(candidates, k=1)
        found = np.concatenate([found, candidates[distance >= min_distance_px]])[:n]
        if len(found) == n:
            break
    return ParticleList(
        names=np.concatenate([plist.names, np.full(len(found), BACKGROUND_CLASS, dtype=object)]),
        coords_xyz=np.concatenate([plist.coords_xyz, found]),
        angles_deg=np.concatenate([plist.angles_deg, np.full((len(found), 3), np.nan)]),
    )


def _read_text(path: Path) -> str:
    if not path.exists():
        raise InputError(f"{path}: particle list not found")
    try:
        return path.read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path}: particle list is not a text file") from None


def _numeric(path: Path, table: pd.DataFrame, columns: list[str], allow_nan=False) -> np.ndarray:
    """The columns as floats; text, infinities (and NaN unless ``allow_nan``) are refused."""
    raw = table[columns]
    coerced = raw.apply(pd.to_numeric, errors="coerce")
    values = coerced.to_numpy(dtype=np.float64)
    bad = (coerced.isna() & raw.notna()).to_numpy() | np.isinf(values)
    if not allow_nan:
        bad |= np.isnan(values)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"{path}: row {row + 1} has {columns[col]} = {raw.iloc[row, col]!r}; expected a number"
        )
    return values


def _particle_list(path, names, coords, angles) -> ParticleList:
    coords = np.asarray(coords, dtype=np.float64).reshape(-1, 3)
    if len(names) == 0:
        raise InputError(f"{path}: particle list holds no particles")
    if not np.isfinite(coords).all():
        raise InputError(f"{path}: particle list has non-finite coordinates")
    return ParticleList(
        names=np.asarray(names, dtype=object),
        coords_xyz=coords,
        angles_deg=np.asarray(angles, dtype=np.float64).reshape(-1, 3),
    )
