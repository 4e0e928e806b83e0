"""copick picks files in and out, and the orientation convention they carry.

``ExperimentRuns/<run>/Picks/<user_id>_<session_id>_<object>.json`` (copick names hold no ``_``):
``pickable_object_name``, ``user_id``, ``session_id``, ``run_name``, ``voxel_spacing``, ``unit``
(``angstrom``), ``trust_orientation`` and ``points``, each a ``location`` ``{x, y, z}`` in Å from
the tomogram's corner (voxel ``i`` at ``i * voxel size``, as copick's RELION export divides), a
4 x 4 ``transformation_``, an ``instance_id`` and a ``score``. The particle of a point sits at
``location + transformation_[:3, 3]`` (copick's RELION export adds the translation).

**Orientation convention** (copick's own, as its RELION import and export write it,
``copick.util.relion``): ``transformation_[:3, :3]`` is RELION's matrix ``A`` of the angles
``(rot, tilt, psi)``, :func:`cryoavae.geometry.rotations.relion_angles_to_matrices` (scipy
``Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix()``), which carries the
object's reference frame into the tomogram's: what sits at offset ``u`` from the reference's
centre sits at ``A u`` from the particle's (copick: "object space to tomogram space"). Points
read become RELION angles through it (unknown, NaN, when the file says ``trust_orientation:
false`` or every matrix in it is the identity, copick's default).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.copick_config import NAME, OUR_USER, CopickProject
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass
from cryoavae.geometry.rotations import matrices_to_relion_angles
from cryoavae.particles.picks import ParticleList
from cryoavae.particles.positions import BOX_CENTRES
from cryoavae.sources.copick.tomograms import run_folders

log = logging.getLogger(__name__)

#: Per particle, the copick location (Å) of the pick it was cut at (NaN: a false positive).
LOCATION_COLUMNS = ("cryoavaeLocationXAngst", "cryoavaeLocationYAngst", "cryoavaeLocationZAngst")
#: Per particle, where its box was centred (Å), written by the extraction: shifts start there.
BOX_CENTRE_COLUMNS = BOX_CENTRES
#: Per particle, its run (RELION's name for the tomogram a particle is in).
RUN_COLUMN = "rlnTomoName"


class CopickConfig(section_dataclass("copick")):
    """The ``copick`` section: the project's config file, the runs, voxel spacing and tomogram
    type read, the objects whose picks are the classes, the picks' user and session (None: any),
    the objects held out, and the split fractions (as ``extraction``'s)."""


@dataclass(frozen=True)
class CopickPicks:
    """The points read from a run's picks files: ``names`` (n,) objects, ``locations`` (n, 3) Å
    x, y, z, ``transforms`` (n, 4, 4), ``oriented`` (n,) whether the rotation is known."""

    names: np.ndarray
    locations: np.ndarray
    transforms: np.ndarray
    oriented: np.ndarray
    files: tuple[tuple[Path, int], ...] = ()  # each file read and how many points it gave

    def refuse_outside(self, extent_angstrom: np.ndarray) -> None:
        """Refuse a point outside the tomogram (``extent_angstrom``: its x, y, z size in Å),
        naming the file and the point: a pick there is a mistake in the picks or in the
        tomogram (another voxel spacing, another run), never a particle to cut."""
        centres = self.locations + self.transforms[:, :3, 3]
        outside = ((centres < 0) | (centres > np.asarray(extent_angstrom))).any(axis=1)
        if not outside.any():
            return
        first = int(np.flatnonzero(outside)[0])
        ends = np.cumsum([count for _, count in self.files])
        which = int(np.searchsorted(ends, first, side="right"))
        point = first - (int(ends[which - 1]) if which else 0)
        x, y, z = centres[first]
        raise InputError(
            f"{self.files[which][0]}: point {point} at ({x:.1f}, {y:.1f}, {z:.1f}) Å lies "
            f"outside the tomogram (0..{extent_angstrom[0]:.1f}, 0..{extent_angstrom[1]:.1f}, "
            f"0..{extent_angstrom[2]:.1f} Å; {int(outside.sum())} such points)"
        )

    def particle_list(self, voxel_size_angstrom: float) -> ParticleList:
        """Positions in voxels of a tomogram of that voxel size (each particle at its location
        plus translation), RELION angles (NaN where not oriented)."""
        centres = self.locations + self.transforms[:, :3, 3]
        angles = np.full((len(self.names), 3), np.nan)
        if self.oriented.any():
            rotations = self.transforms[self.oriented, :3, :3]
            angles[self.oriented] = matrices_to_relion_angles(rotations)
        return ParticleList(self.names, centres / voxel_size_angstrom, angles)


def read_copick_picks(
    project: CopickProject,
    run: str,
    objects: list[str],
    user_id: str | None = None,
    session_id: str | None = None,
) -> CopickPicks:
    """The points of ``run``'s picks files of ``objects``, by ``user_id`` and ``session_id``
    (None: any; the picks this study writes, user ``cryoavae``, are never read unless asked for
    by name). A file under both roots is read from the overlay.

    Raises:
        InputError: no such run, a malformed file (naming it and the point), no picks at all.
    """
    files = {}
    for folder in reversed(run_folders(project, run)):  # the overlay's replaces the static's
        files.update({p.name: p for p in sorted((folder / "Picks").glob("*.json"))})
    chosen = []
    for name, path in sorted(files.items()):
        parts = path.stem.split("_")
        if name.startswith(".") or len(parts) != 3:
            if not name.startswith("."):
                log.warning("%s: not named <user>_<session>_<object>.json; skipped", path)
            continue
        user, session, obj = parts
        if obj not in objects or (user_id or user) != user or (session_id or session) != session:
            continue
        if user == OUR_USER and user_id != OUR_USER:
            continue
        chosen.append((obj, path))
    if not chosen:
        raise InputError(
            f"{project.path}: run {run!r} has no picks of {objects} by user "
            f"{user_id or 'any'}, session {session_id or 'any'} (ExperimentRuns/{run}/Picks/)"
        )
    read = [_read_picks_file(path) for _, path in chosen]
    who = sorted({"_".join(path.stem.split("_")[:2]) for _, path in chosen})
    if len(who) > 1:
        log.warning(
            "%s: picks of %d users/sessions %s are read together (the same particle may be "
            "picked twice): set copick.user_id and copick.session_id to read one",
            run,
            len(who),
            who,
        )
    names = []
    for (obj, path), (locations, _, _) in zip(chosen, read, strict=True):
        log.info("%s: %d points of %s", path, len(locations), obj)
        names.append(np.full(len(locations), obj, dtype=object))
    return CopickPicks(
        names=np.concatenate(names),
        locations=np.concatenate([r[0] for r in read]),
        transforms=np.concatenate([r[1] for r in read]),
        oriented=np.concatenate([r[2] for r in read]),
        files=tuple((path, len(r[0])) for (_, path), r in zip(chosen, read, strict=True)),
    )


def _read_picks_file(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(locations (n, 3) Å, transforms (n, 4, 4), oriented (n,)) of one picks file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a copick picks file ({exc})") from None
    points = data.get("points") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(points if points is not None else [], list):
        raise InputError(f"{path}: not a copick picks file (expected an object with points: [...])")
    points = points or []
    for i, point in enumerate(points):
        location = point.get("location") if isinstance(point, dict) else None
        if not isinstance(location, dict) or not all(
            isinstance(location.get(k), int | float) and not isinstance(location.get(k), bool)
            for k in "xyz"
        ):
            raise InputError(f"{path}: point {i} has location {location!r}; expected x, y, z in Å")
    locations = np.array([[p["location"][k] for k in "xyz"] for p in points], np.float64)
    locations = locations.reshape(-1, 3)
    transforms = _transforms(path, points)
    if not np.isfinite(locations).all():
        row = int(np.argwhere(~np.isfinite(locations))[0, 0])
        raise InputError(f"{path}: point {row} has a non-finite location")
    rotations = transforms[:, :3, :3]
    oriented = bool(data.get("trust_orientation", True)) and not np.allclose(rotations, np.eye(3))
    return locations, transforms, np.full(len(points), oriented)


def _transforms(path: Path, points: list) -> np.ndarray:
    """Each point's ``transformation_`` (identity when absent), checked: 4 x 4, last row
    (0, 0, 0, 1), a rotation in the upper left."""
    identity = np.eye(4)
    out = np.empty((len(points), 4, 4))
    for i, point in enumerate(points):
        matrix = point.get("transformation_")
        try:
            matrix = identity if matrix is None else np.asarray(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            matrix = None
        if matrix is None or matrix.shape != (4, 4):
            raise InputError(f"{path}: point {i}'s transformation_ is not a 4 x 4 matrix")
        out[i] = matrix
    rotations = out[:, :3, :3]
    gram = np.einsum("nji,njk->nik", rotations, rotations)
    bad = ~np.isfinite(out).all(axis=(1, 2))
    bad |= ~np.isclose(out[:, 3], [0, 0, 0, 1]).all(axis=1)
    bad |= ~np.isclose(gram, np.eye(3), atol=1e-3).all(axis=(1, 2))
    bad |= np.linalg.det(rotations) < 0
    if bad.any():
        raise InputError(
            f"{path}: point {int(np.argmax(bad))}'s transformation_ is not a rotation and a "
            "translation (last row 0, 0, 0, 1)"
        )
    return out


# --------------------------------------------------------------------------- picks out


def write_picks_file(
    path: Path,
    meta: dict,
    locations: np.ndarray,
    transforms: np.ndarray,
    scores: np.ndarray,
    trust_orientation: bool,
) -> None:
    """One picks file, written atomically: ``meta`` (``pickable_object_name``, ``user_id``,
    ``session_id``, ``run_name``, ``voxel_spacing``) and one point per row of ``locations``
    (n, 3) Å, ``transforms`` (n, 4, 4), ``scores`` (n,); names are checked as copick's."""
    for key in ("pickable_object_name", "user_id", "session_id"):
        if not NAME.match(str(meta[key])):
            raise InputError(f"{path}: {key} {meta[key]!r} is not a copick name (no '_')")
    points = [
        {
            "location": dict(zip("xyz", map(float, location), strict=True)),
            "transformation_": transform.tolist(),
            "instance_id": 0,
            "score": float(score),
        }
        for location, transform, score in zip(locations, transforms, scores, strict=True)
    ]
    body = {**meta, "unit": "angstrom", "trust_orientation": bool(trust_orientation)}
    write_text_atomic(path, json.dumps({**body, "points": points}, indent=2) + "\n")
