"""A copick run's tomogram: one level of an OME-Zarr multiscale group, read lazily.

``ExperimentRuns/<run>/VoxelSpacing<x.xxx>/<tomo_type>.zarr`` (under the overlay root, else the
static one) holds the tomogram at several scales; each level's voxel size is the ``scale`` of its
``coordinateTransformations`` (times the multiscale's own, in the unit of its axes, Å by
default). The level nearest the study's voxel size is opened as a Zarr array, which extraction
reads slab by slab (:func:`cryoavae.sources.extract.boxes.cut_boxes_in_slabs`), never whole.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryoavae.core.copick_config import CopickProject
from cryoavae.core.errors import InputError

log = logging.getLogger(__name__)

_UNITS = {None: 1.0, "angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4}


@dataclass(frozen=True)
class CopickTomogram:
    """One level of a run's tomogram: a lazy Zarr array ``(z, y, x)`` and its voxel size."""

    array: object
    voxel_size_angstrom: float
    path: Path
    level: str


def open_copick_tomogram(
    project: CopickProject, run: str, voxel_spacing: float, tomo_type: str, target_angstrom: float
) -> CopickTomogram:
    """The level of ``run``'s ``tomo_type`` tomogram at ``voxel_spacing`` whose voxel size is
    nearest ``target_angstrom`` (the finer one on a tie), opened lazily.

    Raises:
        InputError: no such run or tomogram, no readable multiscale metadata, a level that is not
            3-D (z, y, x) or not isotropic.
    """
    try:  # here only: an optional extra, and the results' rule never reads a tomogram
        import zarr
    except ImportError:
        raise InputError(
            f"{project.path}: particle_source: copick reads OME-Zarr tomograms with the zarr "
            'package, which is not installed; install the extra: pip install -e ".[copick]"'
        ) from None

    spacing = f"VoxelSpacing{voxel_spacing:.3f}"
    folders = run_folders(project, run)
    found = [f / spacing / f"{tomo_type}.zarr" for f in folders]
    found = [path for path in found if path.is_dir()]
    if not found:
        have = sorted({p.relative_to(f).as_posix() for f in folders for p in f.glob("*/*.zarr")})
        raise InputError(
            f"{project.path}: run {run!r} has no {spacing}/{tomo_type}.zarr "
            f"(it has {have or 'no tomograms'}); set copick.voxel_spacing and copick.tomo_type"
        )
    path = found[0]
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises many types for a broken store
        raise InputError(
            f"{path}: not a readable Zarr group ({type(exc).__name__}: {exc})"
        ) from None
    levels = multiscale_levels(attrs, path)
    level, size = min(levels, key=lambda item: (abs(item[1] - target_angstrom), item[1]))
    try:
        array = group[level]
    except Exception as exc:
        raise InputError(f"{path}: level {level!r} cannot be read ({exc})") from None
    if len(array.shape) != 3:
        raise InputError(f"{path}/{level}: expected a 3-D (z, y, x) array, shape {array.shape}")
    log.info("%s: level %s, %s voxels (z, y, x) of %.3f Å", path, level, array.shape, size)
    return CopickTomogram(array, size, path, level)


def multiscale_levels(attrs: dict, path: Path) -> list[tuple[str, float]]:
    """``(path, voxel size in Å)`` of each level of an OME-Zarr ``multiscales`` entry (0.4, or
    0.5 under ``ome``); the scale of a level times the multiscale's own, in its axes' unit."""
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales or not isinstance(multiscales, list):
        raise InputError(f"{path}: no OME-Zarr multiscales metadata (.zattrs)")
    entry = multiscales[0]
    axes = [a.get("name") if isinstance(a, dict) else a for a in entry.get("axes", "zyx")]
    if list(axes)[-3:] != ["z", "y", "x"] or len(axes) != 3:
        raise InputError(f"{path}: multiscales axes are {axes}; expected z, y, x")
    units = {a.get("unit") for a in entry.get("axes", []) if isinstance(a, dict)} or {None}
    if len(units) != 1 or next(iter(units)) not in _UNITS:
        raise InputError(f"{path}: axes in {sorted(map(str, units))}; expected angstrom")
    factor = _UNITS[next(iter(units))] * _scale(entry, path, "multiscales[0]", required=False)
    levels = []
    for i, dataset in enumerate(entry.get("datasets") or []):
        if not isinstance(dataset, dict) or not isinstance(dataset.get("path"), str):
            raise InputError(f"{path}: multiscales[0].datasets[{i}] has no path")
        levels.append((dataset["path"], factor * _scale(dataset, path, f"datasets[{i}]")))
    if not levels:
        raise InputError(f"{path}: multiscales[0] lists no datasets")
    return levels


def _scale(node: dict, path: Path, where: str, required: bool = True) -> float:
    """The isotropic voxel size of a node's ``scale`` transformation (1 when none and optional)."""
    scales = [
        t.get("scale")
        for t in node.get("coordinateTransformations") or []
        if isinstance(t, dict) and t.get("type") == "scale"
    ]
    if not scales:
        if required:
            raise InputError(f"{path}: {where} has no scale coordinateTransformation")
        return 1.0
    try:
        scale = np.asarray(scales[0], dtype=np.float64)[-3:]
    except (TypeError, ValueError):
        raise InputError(f"{path}: {where} scale {scales[0]!r} is not numbers") from None
    if scale.size != 3 or not np.isfinite(scale).all() or scale.min() <= 0:
        raise InputError(f"{path}: {where} scale {scales[0]!r}; expected 3 positive numbers")
    if scale.max() - scale.min() > 1e-3 * scale.max():
        raise InputError(f"{path}: {where} scale {scale.tolist()} is not isotropic")
    return float(scale[0])


def run_folders(project: CopickProject, run: str) -> list[Path]:
    """The run's folders, overlay first; InputError when it has none (a run that is missing)."""
    folders = project.run_folders(run)
    if not folders:
        raise InputError(f"{project.path}: no run {run!r} (runs: {project.runs()})")
    return folders
