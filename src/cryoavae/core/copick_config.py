"""The copick project a study reads (``particle_source: copick``): its config file and its runs.

copick (github.com/copick/copick) is the format of the CZ cryo-ET data portal: a JSON config that
names the project's ``pickable_objects`` and its roots, and a tree of folders below them,
``ExperimentRuns/<run>/VoxelSpacing<x.xxx>/<tomo_type>.zarr`` (OME-Zarr) and
``ExperimentRuns/<run>/Picks/<user_id>_<session_id>_<object>.json``. A study's classes are the
project's objects and its shards the project's runs; the workflow needs both before any job runs
(to validate the config and plan the jobs), so they are read here, below every stage. The
tomograms and picks themselves are read by :mod:`cryoavae.sources.copick`.

Roots: ``overlay_root`` (the project's writable side: copick writes new picks there, and so do
we) and ``static_root`` (read-only, e.g. a portal download; absent: the overlay). Only local
folders are read: ``local://<path>`` or a plain path, a relative one taken from the config file's
folder. A run, tomogram or picks file found under both roots is read from the overlay.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryoavae.core.errors import InputError

#: copick's names (objects, users, sessions) join into file names with ``_``, so none holds one.
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,63}\Z")
#: A run is a folder; portal runs are named like ``TS_5_4`` or ``16193``.
RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
PDB_ID = re.compile(r"[0-9][A-Za-z0-9]{3}\Z")
#: The user_id of the picks a study writes back (:mod:`cryoavae.sources.copick`).
OUR_USER = "cryoavae"


@dataclass(frozen=True)
class CopickObject:
    """One of ``pickable_objects``: its name, whether points can mark it (``is_particle``) and
    its ``pdb_id`` as given (None when absent)."""

    name: str
    is_particle: bool
    pdb_id: str | None

    @property
    def structure_id(self) -> str | None:
        """The PDB ID to fetch this object's structure by, or None: absent or not an ID."""
        ok = self.pdb_id is not None and PDB_ID.match(self.pdb_id)
        return self.pdb_id.lower() if ok else None


@dataclass(frozen=True)
class CopickProject:
    """A copick config file read: its objects, in order, and its roots (overlay first)."""

    path: Path
    objects: tuple[CopickObject, ...]
    roots: tuple[Path, ...]

    @property
    def overlay(self) -> Path:
        return self.roots[0]

    def run_folders(self, run: str) -> list[Path]:
        """The folders of ``run`` that exist, overlay first."""
        return [f for f in (root / "ExperimentRuns" / run for root in self.roots) if f.is_dir()]

    def runs(self) -> list[str]:
        """Every run under either root, sorted (hidden folders skipped, as copick does)."""
        names = set()
        for root in self.roots:
            folder = root / "ExperimentRuns"
            if folder.is_dir():
                names |= {p.name for p in folder.iterdir() if p.is_dir()}
        return sorted(n for n in names if not n.startswith("."))


def read_copick_project(path: str | Path) -> CopickProject:
    """The copick config file at ``path``, read once per version of the file.

    Raises:
        InputError: one line naming the file and what is wrong with it.
    """
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        raise InputError(f"{path}: copick config not found") from None
    return _read_project(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_project(path: str, _mtime_ns: int, _size: int) -> CopickProject:
    """Cached on the file's modification time and size: the workflow asks many times a parse."""
    where = Path(path)
    try:
        data = json.loads(where.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: copick config cannot be read ({exc})") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{where}: not a copick config: invalid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{where}: not a copick config: a JSON object is expected")
    kind = data.get("config_type", "filesystem")
    if kind != "filesystem":
        raise InputError(
            f"{where}: a {kind!r} copick project; only local 'filesystem' projects are read "
            "(copy the runs you need with copick's tools first)"
        )
    objects = _objects(where, data.get("pickable_objects"))
    if not isinstance(data.get("overlay_root"), str):
        raise InputError(f"{where}: overlay_root is missing or not a string")
    roots = [_root(where, "overlay_root", data["overlay_root"])]
    if data.get("static_root") is not None:
        static = _root(where, "static_root", data["static_root"])
        if not static.is_dir():
            raise InputError(f"{where}: static_root {static} is not a folder")
        roots += [static] if static != roots[0] else []
    return CopickProject(where, objects, tuple(roots))


def _objects(where: Path, entries) -> tuple[CopickObject, ...]:
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{where}: pickable_objects is missing or not a non-empty list")
    objects = []
    for i, entry in enumerate(entries):
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not NAME.match(name):
            raise InputError(
                f"{where}: pickable_objects[{i}].name = {name!r}; expected letters, digits, '.' "
                "and '-' (copick names hold no '_')"
            )
        particle, pdb_id = entry.get("is_particle"), entry.get("pdb_id")
        if not isinstance(particle, bool):
            raise InputError(
                f"{where}: pickable_objects[{i}] ({name}) has no is_particle true/false"
            )
        if pdb_id is not None and not isinstance(pdb_id, str):
            raise InputError(f"{where}: pickable_objects[{i}] ({name}) has pdb_id {pdb_id!r}")
        objects.append(CopickObject(name, particle, pdb_id or None))
    names = [o.name for o in objects]
    if len(set(names)) != len(names):
        raise InputError(f"{where}: pickable_objects repeat a name ({names})")
    return tuple(objects)


def _root(where: Path, key: str, url: str) -> Path:
    """A root URL as a folder: ``local://`` or no protocol, relative to the config's folder."""
    path = url.removeprefix("local://")
    if "://" in path:
        raise InputError(
            f"{where}: {key} = {url!r}; only local folders are read (local://<path>), copy the "
            "project first"
        )
    return (where.parent / Path(path).expanduser()).resolve()


# --------------------------------------------------------------------------- the study's view


def study_project(config: Mapping) -> CopickProject:
    return read_copick_project(config["copick"]["config"])


def study_objects(config: Mapping) -> list[CopickObject]:
    """The objects a study's classes are: ``copick.objects`` in that order, or every particle
    object of the project in its order (none while no project is named: the check says so)."""
    if not config["copick"]["config"]:
        return []
    project = study_project(config)
    wanted = list(config["copick"]["objects"])
    if not wanted:
        return [o for o in project.objects if o.is_particle]
    by_name = {o.name: o for o in project.objects}
    return [by_name[name] for name in wanted if name in by_name]


def study_runs(config: Mapping) -> list[str]:
    """The runs a study reads, one shard each: ``copick.runs``, or every run of the project."""
    return list(config["copick"]["runs"]) or study_project(config).runs()


def structure_ids(config: Mapping) -> dict[str, str]:
    """Class (object) name -> the PDB ID its structure is fetched by (objects with one)."""
    return {o.name: o.structure_id for o in study_objects(config) if o.structure_id}


def has_structures(config: Mapping) -> bool:
    """Whether every class has a structure: a PDB ID or the user's file (structures.files)."""
    files = config["structures"]["files"]
    return all(o.structure_id or o.name in files for o in study_objects(config))


def check_copick_study(config: Mapping, source: str) -> None:
    """What the schema cannot say about a copick study, each failure one line: the project
    readable, the named objects and runs in it, names copick can write, structures for a prior
    that needs them."""
    copick = config["copick"]
    if not copick["config"]:
        raise InputError(f"{source}: particle_source 'copick' needs copick.config (its JSON file)")
    if any(ch in copick["config"] for ch in ";|&`$<>"):
        raise InputError(
            f"{source}: copick.config = {copick['config']!r} has characters not allowed"
        )
    project = study_project(config)
    _check_objects(config, project, source)
    runs = study_runs(config)
    if not runs:
        raise InputError(
            f"{source}: {project.path} has no runs: no folder ExperimentRuns/<run> under "
            f"{', '.join(map(str, project.roots))}"
        )
    for run in runs:
        if not RUN_NAME.match(run):
            raise InputError(
                f"{source}: copick run {run!r} has characters not allowed in a run name"
            )
        if not project.run_folders(run):
            raise InputError(
                f"{source}: copick.runs names {run!r}, but {project.path} has no run folder "
                f"ExperimentRuns/{run} (runs: {project.runs()})"
            )
    for name in config["variants"]:
        if not NAME.match(name):
            raise InputError(
                f"{source}: variant {name!r} cannot be a copick session_id (its picks are written "
                f"as {OUR_USER}_<variant>_<object>.json; copick names hold no '_'): rename it"
            )
    if copick["user_id"] == OUR_USER and (copick["session_id"] or "") in ("", *config["variants"]):
        raise InputError(
            f"{source}: copick.user_id {OUR_USER!r} would read the picks this study writes; set "
            "copick.session_id to a session that is not one of its variants"
        )


def _check_objects(config: Mapping, project: CopickProject, source: str) -> None:
    """The named objects exist and take points; structures come from them, not structures.ids."""
    by_name = {o.name: o for o in project.objects}
    for name in config["copick"]["objects"]:
        if name not in by_name:
            raise InputError(
                f"{source}: copick.objects names {name!r}, which is not an object of "
                f"{project.path} (objects: {list(by_name)})"
            )
        if not by_name[name].is_particle:
            raise InputError(
                f"{source}: copick object {name!r} has is_particle false in {project.path}: it "
                "has no points to extract"
            )
    chosen = study_objects(config)
    if not chosen:
        raise InputError(f"{source}: {project.path} has no object with is_particle true")
    structures = config["structures"]
    if structures["ids"]:
        raise InputError(
            f"{source}: structures.ids does not apply to particle_source 'copick': its classes "
            "are the copick objects, each fetched by its pdb_id (or give structures.files.<object>)"
        )
    names = [o.name for o in chosen]
    for name in structures["files"]:
        if name not in names:
            raise InputError(
                f"{source}: structures.files names {name!r}, which is not one of the study's "
                f"copick objects {names}"
            )
    affinity = config["affinity"]["source"]
    missing = [o for o in chosen if not (o.structure_id or o.name in structures["files"])]
    if missing and affinity in ("soap", "map_cc"):
        bad = missing[0]
        has = f"pdb_id {bad.pdb_id!r}, not a PDB ID" if bad.pdb_id else "no pdb_id"
        raise InputError(
            f"{source}: affinity.source {affinity!r} needs a structure per class, but copick "
            f"object {bad.name!r} has {has}; give structures.files.{bad.name}, or use "
            "affinity.source csv (your own prior), uniform or none"
        )
