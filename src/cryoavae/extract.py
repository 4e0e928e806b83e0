"""Cut subtomograms out of a tomogram at the positions of a particle list.

The output is the same as simulation's (an ``.mrcs`` stack + a STAR table, see
:mod:`cryoavae.particles`), so the rest of the pipeline does not care where particles came from.

Conventions (shared by every particle-list reader here):

- Coordinates ``x, y, z`` are in voxels of the tomogram, **0-based**, and name the voxel at the
  particle's centre: ``x`` indexes the fastest-varying axis of the MRC file. ``mrcfile`` returns
  the data as a ``(z, y, x)`` array, so the particle sits at ``volume[z, y, x]``. This is how
  SHREC'21's ``particle_locations.txt`` is written (integer voxel indices into the grand model).
  Fractional coordinates are rounded to the nearest voxel, except when rescaling, where the box is
  interpolated around the exact position. Tools that count voxels from 1 need ``x - 1``.
- A box of ``b`` voxels puts the particle at index ``b // 2`` along each axis (the FFT centre, as
  in the simulated maps): it covers ``[c - b // 2, c - b // 2 + b)``.
- Angles in the output are RELION's ``rlnAngleRot/Tilt/Psi`` (degrees) for the rotation
  ``R = Rz(rot) @ Ry(tilt) @ Rz(psi)`` acting on ``(x, y, z)`` column vectors (scipy
  ``Rotation.from_euler("ZYZ", [rot, tilt, psi], degrees=True)``), taken as the rotation that
  carries the reference onto the particle. SHREC'21 lists store three angles ``(a0, a1, a2)`` that
  its generator (PyTom, ``rotation_order="szxz"``) applied as static-axis z, x, z rotations, i.e.
  ``R = Rz(a2) @ Rx(a1) @ Rz(a0)`` (scipy ``from_euler("zxz", ...)``, lower case = extrinsic); we
  convert that matrix to the ZYZ angles above. Unknown angles (SHREC's vesicles and fiducials,
  lists without angles) are NaN.
- SHREC'21 coordinates refer to the 512 x 512 x 200 grand model; its ``reconstruction.mrc`` is 512
  voxels deep, so crop it to the grand model's slab (or add the offset to ``z``) before extracting.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
from scipy import ndimage
from scipy.spatial.transform import Rotation

from . import particles as P
from .errors import InputError

log = logging.getLogger(__name__)

EDGE_MODES = ("skip", "pad")
LIST_FORMATS = ("auto", "shrec", "star", "csv")
_CHUNK_VOXELS = 1 << 23  # ~32 MB of float32 per chunk of boxes


@dataclass(frozen=True)
class ExtractionConfig:
    """How particles are cut out of tomograms. Field names are the YAML keys."""

    box_size_px: int = 32
    edge: str = "skip"  # "skip": drop boxes crossing the edge; "pad": fill with the tomogram mean
    list_format: str = "auto"  # "auto" (from the suffix) | "shrec" | "star" | "csv"
    rescale_to_angstrom: float | None = None  # output voxel size; None keeps the tomogram's
    val_fraction: float = 0.2
    normalize: bool = True  # z-score each particle

    def __post_init__(self):
        if isinstance(self.box_size_px, bool) or not isinstance(self.box_size_px, int):
            raise InputError(f"box_size_px: got {self.box_size_px!r}; expected an integer >= 4")
        if self.box_size_px < 4:
            raise InputError(f"box_size_px: got {self.box_size_px}; expected an integer >= 4")
        if self.edge not in EDGE_MODES:
            raise InputError(f"edge: got {self.edge!r}; expected one of {EDGE_MODES}")
        if self.list_format not in LIST_FORMATS:
            raise InputError(
                f"list_format: got {self.list_format!r}; expected one of {LIST_FORMATS}"
            )
        if self.rescale_to_angstrom is not None and not self.rescale_to_angstrom > 0:
            raise InputError(
                f"rescale_to_angstrom: got {self.rescale_to_angstrom!r}; expected a voxel size "
                "> 0 (Å) or null to keep the tomogram's"
            )
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"val_fraction: got {self.val_fraction!r}; expected 0 <= value < 1")


@dataclass(frozen=True)
class ParticleList:
    """Particles as read from a list: ``names`` (n,), ``coords_xyz`` (n, 3) voxels,
    ``angles_deg`` (n, 3) RELION ZYZ (rot, tilt, psi), NaN where unknown."""

    names: np.ndarray
    coords_xyz: np.ndarray
    angles_deg: np.ndarray

    def __len__(self) -> int:
        return len(self.names)


# --------------------------------------------------------------------------- particle lists


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


# --------------------------------------------------------------------------- box extraction


def cut_boxes(
    volume: np.ndarray, centres_zyx: np.ndarray, box_size_px: int, fill_value: float | None
) -> np.ndarray:
    """Boxes ``(n, b, b, b)`` from ``volume`` ``(Z, Y, X)`` around integer ``centres_zyx`` (n, 3).

    The centre lands at index ``b // 2``. Boxes inside the volume are gathered in one fancy index
    into a ``sliding_window_view`` of it (no copy of the tomogram, contiguous rows read from the
    memory map); boxes crossing the edge read ``fill_value`` outside (an index grid, clipped and
    masked). With ``fill_value`` None every box must lie inside.
    """
    centres = np.asarray(centres_zyx, dtype=np.int64).reshape(-1, 3)
    b = box_size_px
    shape = np.array(volume.shape)
    corner = centres - b // 2  # (n, 3) first voxel of each box
    inside = (corner >= 0).all(axis=1) & (corner + b <= shape).all(axis=1)
    if fill_value is None and not inside.all():
        raise ValueError(f"cut_boxes: {int((~inside).sum())} boxes cross the edge, no fill value")
    out = np.empty((len(centres), b, b, b), dtype=np.float32)
    chunk = max(1, _CHUNK_VOXELS // b**3)
    rows = np.nonzero(inside)[0]
    if len(rows):
        windows = np.lib.stride_tricks.sliding_window_view(volume, (b, b, b))  # a view
        for start in range(0, len(rows), chunk):
            r = rows[start : start + chunk]
            out[r] = windows[corner[r, 0], corner[r, 1], corner[r, 2]]
    offsets = np.arange(b, dtype=np.int64)
    rows = np.nonzero(~inside)[0]
    for start in range(0, len(rows), chunk):
        r = rows[start : start + chunk]
        idx = [corner[r, axis, None] + offsets for axis in range(3)]  # 3 x (m, b)
        valid = [(i >= 0) & (i < shape[axis]) for axis, i in enumerate(idx)]
        z, y, x = (np.clip(i, 0, shape[axis] - 1) for axis, i in enumerate(idx))
        boxes = np.asarray(
            volume[z[:, :, None, None], y[:, None, :, None], x[:, None, None, :]],
            dtype=np.float32,
        )
        mask = valid[0][:, :, None, None] & valid[1][:, None, :, None] & valid[2][:, None, None, :]
        boxes[~mask] = fill_value
        out[r] = boxes
    return out


def resample_boxes(
    volume: np.ndarray,
    centres_zyx: np.ndarray,
    box_size_px: int,
    ratio: float,
    fill_value: float | None,
) -> np.ndarray:
    """Boxes ``(n, b, b, b)`` whose voxels are ``ratio`` tomogram voxels apart, centred exactly.

    Output voxel ``j`` samples the tomogram at ``centre + (j - b // 2) * ratio``. When shrinking
    (``ratio > 1``) each window is first low-passed in Fourier space to the output Nyquist
    frequency (raised-cosine edge) so it does not alias; sampling is trilinear.
    """
    centres = np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)
    b = box_size_px
    half = math.ceil((b // 2) * ratio) + 2
    w = 2 * half + 1  # window around the rounded centre, index `half` = rounded centre
    rounded = np.rint(centres).astype(np.int64)
    frac = centres - rounded  # (n, 3) sub-voxel remainder
    grid = (np.arange(b) - b // 2) * ratio + half  # positions inside the window
    lowpass = _lowpass_filter(w, 0.5 / ratio) if ratio > 1 else None
    out = np.empty((len(centres), b, b, b), dtype=np.float32)
    chunk = max(1, _CHUNK_VOXELS // w**3)
    for start in range(0, len(centres), chunk):
        windows = cut_boxes(volume, rounded[start : start + chunk], w, fill_value)
        # cut_boxes puts the centre at w // 2 == half
        if lowpass is not None:
            spectrum = np.fft.rfftn(windows, axes=(1, 2, 3))
            windows = np.fft.irfftn(spectrum * lowpass, s=(w, w, w), axes=(1, 2, 3))
        m = len(windows)
        f = frac[start : start + m]
        coords = np.empty((4, m, b, b, b), dtype=np.float64)
        coords[0] = np.arange(m)[:, None, None, None]
        coords[1] = grid[None, :, None, None] + f[:, 0, None, None, None]
        coords[2] = grid[None, None, :, None] + f[:, 1, None, None, None]
        coords[3] = grid[None, None, None, :] + f[:, 2, None, None, None]
        out[start : start + m] = ndimage.map_coordinates(
            windows.astype(np.float32), coords, order=1, mode="nearest"
        )
    return out


def _lowpass_filter(w: int, cutoff_cycles_per_voxel: float) -> np.ndarray:
    """rfftn-shaped ``(w, w, w // 2 + 1)`` low-pass: 1 below 0.85 x cutoff, cosine to 0 at it."""
    k = np.fft.fftfreq(w)
    kr = np.fft.rfftfreq(w)
    radius = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2)
    lo = 0.85 * cutoff_cycles_per_voxel
    t = np.clip((radius - lo) / (cutoff_cycles_per_voxel - lo), 0.0, 1.0)
    return 0.5 * (1.0 + np.cos(np.pi * t))


def cut_particles(
    mrc, coords_xyz: np.ndarray, box_size_px: int, ratio: float, edge: str
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(m, b, b, b)`` for the particles kept by the ``edge`` policy, and their indices.

    ``mrc`` is an open (memory-mapped) tomogram; ``coords_xyz`` (n, 3) voxel positions; ``ratio``
    output / tomogram voxel size (1 = cut without resampling). A box is inside when every voxel
    it reads lies in the tomogram (with the interpolation margin when resampling); ``edge="pad"``
    keeps the others, filled with the tomogram's mean.
    """
    volume = mrc.data
    b = box_size_px
    exact = abs(ratio - 1.0) < 1e-6
    centres_zyx = np.asarray(coords_xyz, dtype=np.float64)[:, ::-1]
    rounded = np.rint(centres_zyx)
    if exact:
        reach_lo, reach_hi = b // 2, b - b // 2 - 1
    else:
        reach_lo = reach_hi = math.ceil((b // 2) * ratio) + 2
    shape = np.array(volume.shape)
    inside = (rounded - reach_lo >= 0).all(axis=1) & (rounded + reach_hi < shape).all(axis=1)
    fill = None
    if edge == "skip":
        keep = np.nonzero(inside)[0]
    else:
        keep = np.arange(len(centres_zyx))
        if not inside.all():
            fill = tomogram_mean(mrc)
    if len(keep) == 0:
        return np.empty((0, b, b, b), dtype=np.float32), keep
    if exact:
        return cut_boxes(volume, rounded[keep], b, fill), keep
    return resample_boxes(volume, centres_zyx[keep], b, ratio, fill), keep


def normalize_boxes(boxes: np.ndarray) -> np.ndarray:
    """Z-score each particle ``(n, ...)`` float32 in place: mean 0, standard deviation 1 (0 if
    flat). Works in cache-sized chunks of particles (several times faster than one ``std``)."""
    flat = boxes.reshape(len(boxes), -1)  # a view: boxes are contiguous
    for start in range(0, len(flat), 64):
        x = flat[start : start + 64]
        x -= x.mean(axis=1, keepdims=True)
        std = np.sqrt(np.einsum("ij,ij->i", x, x) / x.shape[1])[:, None]
        x /= np.where(std > 0, std, 1.0).astype(np.float32)
    return boxes


def tomogram_mean(mrc) -> float:
    """Mean of an open MRC volume: the header's ``dmean`` when the header stats are set, else one
    pass over the memory map in slabs of z (so a large tomogram is never loaded whole)."""
    h = mrc.header
    dmin, dmax, dmean = float(h.dmin), float(h.dmax), float(h.dmean)
    if dmin <= dmean <= dmax and not dmin == dmax == dmean == 0.0:
        return dmean
    data = mrc.data
    total = 0.0
    step = max(1, (1 << 24) // max(1, data[0].size))
    for z in range(0, data.shape[0], step):
        total += float(np.sum(data[z : z + step], dtype=np.float64))
    return total / data.size


# --------------------------------------------------------------------------- the stage


def extract_subtomograms(
    tomogram_path: str | os.PathLike,
    particle_list_path: str | os.PathLike,
    class_names: list[str],
    unseen: list[str],
    config: ExtractionConfig,
    seed: int,
    stack_path: str | os.PathLike,
    star_path: str | os.PathLike,
    shard: int = 0,
) -> None:
    """Cut one tomogram's particles into a stack + STAR table (the simulation's output format).

    ``class_names`` is the study's full class list (seen and unseen, ``rlnClassNumber`` is 1-based
    into it); ``unseen`` the subset held out of training. Class names match case-insensitively.
    A particle whose class is in neither gets class number 0 and split ``unseen``, keeping its own
    name, so a trained model can be applied to the open set. Seen particles are split train/val
    per class with ``numpy.random.default_rng(seed)``.

    Raises:
        InputError: unreadable tomogram or list, unknown ``unseen`` name, no particle left.
    Warns (log):
        How many particles were skipped at the tomogram's edge (``edge: skip``).
    """
    tomogram_path, star_path, stack_path = Path(tomogram_path), Path(star_path), Path(stack_path)
    lookup = _class_lookup(class_names, unseen)
    if not tomogram_path.exists():
        raise InputError(f"{tomogram_path}: tomogram not found")
    mrc = open_tomogram(tomogram_path)
    with mrc:
        volume = mrc.data
        if volume is None or volume.ndim != 3:
            shape = None if volume is None else volume.shape
            raise InputError(f"{tomogram_path}: expected a 3-D tomogram, data shape {shape}")
        source_angstrom = _isotropic_voxel_size(mrc, tomogram_path)
        plist = read_particle_list(
            particle_list_path, list(class_names), config.list_format, tomogram_path.stem
        )
        ratio, out_angstrom = _rescale_ratio(source_angstrom, config, tomogram_path)
        boxes, keep = cut_particles(mrc, plist.coords_xyz, config.box_size_px, ratio, config.edge)
        if len(keep) < len(plist):
            log.warning(
                "%s: skipped %d of %d particles whose box crosses the tomogram's edge "
                "(edge: pad keeps them)",
                particle_list_path,
                len(plist) - len(keep),
                len(plist),
            )
        if len(keep) == 0:
            raise InputError(
                f"{particle_list_path}: none of its {len(plist)} particles has a "
                f"{config.box_size_px}-voxel box inside {tomogram_path} (shape z,y,x "
                f"{tuple(mrc.data.shape)}); check the coordinates' units and axis order, "
                "or set edge: pad"
            )
    if config.normalize:
        normalize_boxes(boxes)

    names = plist.names[keep]
    numbers, canonical, is_unseen = _resolve_classes(names, lookup)
    rng = np.random.default_rng(seed)
    splits = assign_splits(numbers, is_unseen, config.val_fraction, rng)
    stack_ref = Path(os.path.relpath(stack_path, star_path.parent)).as_posix()
    angles = plist.angles_deg[keep]
    table = pd.DataFrame(
        {
            P.IMAGE: [P.image_reference(i, stack_ref) for i in range(len(keep))],
            P.CLASS_NUMBER: numbers,
            P.ANGLES[0]: angles[:, 0],
            P.ANGLES[1]: angles[:, 1],
            P.ANGLES[2]: angles[:, 2],
            P.DEFOCUS: 0.0,
            P.CLASS_NAME: canonical,
            P.SPLIT: splits,
            P.SNR: np.nan,
            P.SHARD: int(shard),
            "rlnCoordinateX": plist.coords_xyz[keep, 0],
            "rlnCoordinateY": plist.coords_xyz[keep, 1],
            "rlnCoordinateZ": plist.coords_xyz[keep, 2],
        }
    )
    P.write_stack(stack_path, boxes, out_angstrom)
    P.write_particle_table(star_path, table)
    log.info(
        "%s: extracted %d particles (%s) at %.3f Å/voxel into %s",
        tomogram_path,
        len(keep),
        ", ".join(f"{s} {int((splits == s).sum())}" for s in P.SPLITS),
        out_angstrom,
        stack_path,
    )


def open_tomogram(path: Path):
    """Memory-map a tomogram read-only. A header that breaks the MRC standard (common in older
    files, e.g. a bad map ID) is accepted with a logged warning if the data can still be read."""
    try:
        return mrcfile.mmap(path, mode="r", permissive=False)
    except ValueError as strict_error:
        invalid = InputError(f"{path}: not a valid MRC file ({strict_error})")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # mrcfile repeats the problem as a RuntimeWarning
                mrc = mrcfile.mmap(path, mode="r", permissive=True)
        except ValueError:
            raise invalid from strict_error
        if mrc.data is None:
            mrc.close()
            raise invalid from strict_error
        log.warning("%s: reading despite a non-standard MRC header (%s)", path, strict_error)
        return mrc


def _rescale_ratio(source_angstrom: float, config: ExtractionConfig, path: Path):
    """(output / tomogram voxel size, output voxel size in Å)."""
    if config.rescale_to_angstrom is None:
        if source_angstrom <= 0:
            log.warning("%s: header has no voxel size; writing 1.0 Å", path)
            return 1.0, 1.0
        return 1.0, source_angstrom
    if source_angstrom <= 0:
        raise InputError(
            f"{path}: header has no voxel size, so it cannot be rescaled to "
            f"rescale_to_angstrom = {config.rescale_to_angstrom}; set it in the header"
        )
    return config.rescale_to_angstrom / source_angstrom, config.rescale_to_angstrom


def _isotropic_voxel_size(mrc, path: Path) -> float:
    vs = mrc.voxel_size
    sizes = np.array([float(vs.x), float(vs.y), float(vs.z)])
    if sizes.max() > 0 and (sizes.max() - sizes.min()) > 1e-3 * sizes.max():
        raise InputError(
            f"{path}: voxel size (x, y, z) = {tuple(sizes.round(4))} Å is not isotropic; "
            "expected equal sizes (resample the tomogram first)"
        )
    return float(sizes[0])


def _class_lookup(class_names, unseen) -> dict[str, tuple[int, str, bool]]:
    """Lower-cased name -> (1-based class number, spelling in class_names, is unseen)."""
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


def _resolve_classes(names, lookup):
    """Class numbers, spellings and unseen flags ``(n,)`` for the particles' class names."""
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


def assign_splits(
    class_numbers: np.ndarray, is_unseen: np.ndarray, val_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Split labels ``(n,)``: per seen class, ``round(val_fraction * n_class)`` particles chosen
    with ``rng`` go to ``val`` and the rest to ``train``; unseen particles get ``unseen``."""
    class_numbers = np.asarray(class_numbers)
    is_unseen = np.asarray(is_unseen, dtype=bool)
    splits = np.where(is_unseen, "unseen", "train").astype(object)
    for number in np.unique(class_numbers[~is_unseen]):  # loop over classes
        members = np.nonzero((class_numbers == number) & ~is_unseen)[0]
        n_val = int(round(val_fraction * len(members)))
        splits[rng.permutation(members)[:n_val]] = "val"
    return splits.astype(str)
