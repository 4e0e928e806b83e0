"""Cut subtomograms out of a tomogram at the positions of a particle list: the stage.

The output is the same as simulation's (an ``.mrcs`` stack + a STAR table, see
:mod:`cryoavae.particles`), so the rest of the pipeline does not care where particles came from.
:func:`extract_subtomograms` reads an MRC tomogram and a list file; :func:`extract_particles`
cuts any :class:`~cryoavae.sources.extract.boxes.Tomogram` (a Zarr array too) at a
:class:`~cryoavae.particles.picks.ParticleList` already read, so another format's reader (a
copick project's) hands its tomogram and picks over and extraction stays one code path.

Coordinates, angles and the particle-list formats are those of :mod:`cryoavae.particles.picks`;
the boxes those of :mod:`.boxes`.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

from cryoavae import particles as P
from cryoavae.core.errors import InputError
from cryoavae.core.schema import section_dataclass
from cryoavae.particles.picks import (
    ParticleList,
    add_false_positives,
    jitter_positions,
    read_particle_list,
)
from cryoavae.sources.extract.boxes import (
    Tomogram,
    box_centres_xyz,
    cut_particles,
    normalize_boxes,
)

log = logging.getLogger(__name__)

EXTRACTION_KEYS = (
    "box_size_px",
    "edge",
    "list_format",
    "rescale_to_angstrom",
    "val_fraction",
    "test_fraction",
    "normalize",
    "jitter_angstrom",
    "false_positive_fraction",
)


class ExtractionConfig(section_dataclass("extraction", keys=EXTRACTION_KEYS)):
    """How particles are cut out of tomograms: the YAML keys of ``extraction`` but its list of
    ``tomograms`` (one rule job each), with the schema's defaults and bounds.

    ``edge``: ``"skip"`` drops boxes crossing the edge, ``"pad"`` fills them with the tomogram's
    mean; ``list_format``: ``"auto"`` (from the suffix), ``"shrec"``, ``"star"`` or ``"csv"``;
    ``rescale_to_angstrom``: output voxel size (None keeps the tomogram's); ``normalize``:
    z-score each particle; ``jitter_angstrom``: standard deviation of a normal error added to
    each listed position per axis (0: cut at the listed positions); ``false_positive_fraction``:
    that many extra boxes per listed particle at random positions, class ``background``.
    """


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
    """Cut one MRC tomogram's particles, listed in a file, into a stack + STAR table: reads
    both and hands them to :func:`extract_particles` (see there for classes and splits).

    Raises:
        InputError: unreadable tomogram or list, unknown ``unseen`` name, no particle left.
    """
    tomogram_path = Path(tomogram_path)
    if not tomogram_path.exists():
        raise InputError(f"{tomogram_path}: tomogram not found")
    mrc = open_tomogram(tomogram_path)
    with mrc:
        volume = mrc.data
        if volume is None or volume.ndim != 3:
            shape = None if volume is None else volume.shape
            raise InputError(f"{tomogram_path}: expected a 3-D tomogram, data shape {shape}")
        tomogram = Tomogram(
            volume, _isotropic_voxel_size(mrc, tomogram_path), str(tomogram_path), _mean(mrc)
        )
        plist = read_particle_list(
            particle_list_path, list(class_names), config.list_format, tomogram_path.stem
        )
        args = (class_names, unseen, config, seed, stack_path, star_path, shard)
        name = P.tomogram_name(tomogram_path, particle_list_path)
        where = {"list_name": str(particle_list_path), "tomo_name": name, "box_centres": True}
        extract_particles(tomogram, plist, *args, **where)


def extract_particles(
    tomogram: Tomogram,
    plist: ParticleList,
    class_names: list[str],
    unseen: list[str],
    config: ExtractionConfig,
    seed: int,
    stack_path: str | os.PathLike,
    star_path: str | os.PathLike,
    shard: int = 0,
    list_name: str | None = None,
    columns: Mapping[str, object] | None = None,
    box_centres: bool = False,
    tomo_name: str | None = None,
) -> pd.DataFrame:
    """Cut ``plist``'s particles out of ``tomogram`` into a stack + STAR table (the simulation's
    output format); return the table.

    ``class_names`` is the study's full class list (seen and unseen, ``rlnClassNumber`` is 1-based
    into it); ``unseen`` the subset held out of training. Class names match case-insensitively.
    A particle whose class is in neither gets class number 0 and split ``unseen``, keeping its own
    name, so a trained model can be applied to the open set. Seen particles are split train/val
    per class with ``numpy.random.default_rng(seed)``. ``columns`` are added to the table: a
    scalar for every row, or one value per listed particle (false positives get NaN);
    ``box_centres`` adds ``cryoavaeBoxCentreX/Y/ZAngst``, where each box was centred (Å), which
    a shift measured in the box is relative to (:func:`.boxes.box_centres_xyz`), and
    ``rlnOriginX/Y/ZAngst``, the listed position from the pick (RELION's origin, Å: the error
    ``jitter_angstrom`` added, 0 without; NaN for a false positive), which evaluation uses as
    the simulation's truth. ``tomo_name``
    adds where each particle sits in its tomogram as RELION 5 reads it (``rlnTomoName``, centred
    Å: :func:`cryoavae.particles.positions_in`).

    Raises:
        InputError: unknown ``unseen`` name, no particle left, a box of NaN voxels.
    Warns (log):
        How many particles were skipped at the tomogram's edge (``edge: skip``).
    """
    star_path, stack_path = Path(star_path), Path(stack_path)
    list_name = list_name or f"the picks of {tomogram.name}"
    lookup = P.class_lookup(class_names, unseen)
    source_angstrom, shape = tomogram.voxel_size_angstrom, tomogram.data.shape
    ratio, out_angstrom = _rescale_ratio(source_angstrom, config, tomogram.name)
    picks = _realistic_picks(plist, config, shape, source_angstrom, ratio, seed, shard)
    boxes, keep = cut_particles(tomogram, picks.coords_xyz, config.box_size_px, ratio, config.edge)
    _check_cut(boxes, keep, len(picks), config, tomogram.name, list_name, shape)
    if config.normalize:
        normalize_boxes(boxes)
    numbers, canonical, is_unseen = P.resolve_classes(picks.names[keep], lookup)
    rng = np.random.default_rng(seed)
    splits = P.assign_splits(numbers, is_unseen, config.val_fraction, rng, config.test_fraction)
    coords = picks.coords_xyz[keep]
    extra = {f"rlnCoordinate{axis}": coords[:, a] for a, axis in enumerate("XYZ")}
    for name, values in (columns or {}).items():
        extra[name] = _per_pick(values, len(plist), len(picks))[keep]
    if tomo_name is not None:
        extra.update(P.positions_in(tomo_name, coords, shape, source_angstrom))
    if box_centres:
        extra.update(_box_columns(plist, picks, keep, ratio, source_angstrom))
    table = P.particle_table(
        P.stack_reference(stack_path, star_path),
        numbers,
        canonical,
        splits,
        angles_deg=picks.angles_deg[keep],
        shard=shard,
        **extra,
    )
    P.write_stack(stack_path, boxes, out_angstrom)
    P.write_particle_table(star_path, table)
    log.info(
        "%s: extracted %d particles (%s) at %.3f Å/voxel into %s",
        tomogram.name,
        len(keep),
        ", ".join(f"{s} {int((splits == s).sum())}" for s in P.SPLITS),
        out_angstrom,
        stack_path,
    )
    return table


def _box_columns(plist, picks, keep, ratio: float, source_angstrom: float) -> dict:
    """Where each kept box was centred (Å) and, as RELION's origin from the pick (pick minus
    particle, Å), where its listed particle sits: the picker's error this extraction added, 0
    without, NaN for a false positive."""
    coords = picks.coords_xyz[keep]
    centres = box_centres_xyz(coords, ratio) * source_angstrom
    missing = np.full((len(picks) - len(plist), 3), np.nan)  # the false positives come last
    listed = np.concatenate([plist.coords_xyz, missing])[keep]
    origins = (coords - listed) * source_angstrom + 0.0  # + 0.0: no "-0"
    return {
        **dict(zip(P.BOX_CENTRES, centres.T, strict=True)),
        **dict(zip(P.ORIGINS, origins.T, strict=True)),
    }


def _per_pick(values, n_listed: int, n_picks: int) -> np.ndarray:
    """A column's values for every pick: a scalar repeated, or the listed picks' values then NaN
    for the false positives added after them."""
    if np.ndim(values) == 0:
        return np.full(n_picks, values, dtype=object if isinstance(values, str) else None)
    values = np.asarray(values)
    if len(values) != n_listed:
        raise ValueError(f"a column has {len(values)} values for {n_listed} listed particles")
    pad = np.full(n_picks - n_listed, np.nan, dtype=object if values.dtype == object else float)
    return np.concatenate([values, pad]) if len(pad) else values


def _check_cut(
    boxes: np.ndarray,
    keep: np.ndarray,
    n_picked: int,
    config: ExtractionConfig,
    tomogram_path: str,
    particle_list_path: str,
    shape_zyx: tuple[int, ...],
) -> None:
    """Warn about particles lost at the tomogram's edge; InputError when none is left or a box
    holds NaN or infinite voxels, naming the likely cause before anything is written."""
    if len(keep) < n_picked:
        log.warning(
            "%s: skipped %d of %d particles whose %s",
            particle_list_path,
            n_picked - len(keep),
            n_picked,
            "box crosses the tomogram's edge (edge: pad keeps them)"
            if config.edge == "skip"
            else "centre lies outside the tomogram",
        )
    if len(keep) == 0:
        raise InputError(
            f"{particle_list_path}: none of its {n_picked} particles has a "
            f"{config.box_size_px}-voxel box inside {tomogram_path} (shape z,y,x "
            f"{tuple(shape_zyx)}); check the coordinates' units and axis order"
            + (", or set edge: pad" if config.edge == "skip" else "")
        )
    bad = ~np.isfinite(boxes.reshape(len(boxes), -1)).all(axis=1)
    if bad.any():
        row = int(keep[int(np.argmax(bad))])
        raise InputError(
            f"{tomogram_path}: the box of particle {row + 1} of {particle_list_path} holds "
            f"NaN or infinite voxels ({int(bad.sum())} boxes do)"
        )


def _realistic_picks(plist, config, shape_zyx, source_angstrom, ratio, seed, shard):
    """The listed picks with the configured jitter and false positives, drawn from
    ``default_rng([seed, shard, 1])`` (the split's generator stays untouched)."""
    if config.jitter_angstrom == 0 and config.false_positive_fraction == 0:
        return plist
    if source_angstrom <= 0:
        raise InputError(
            "extraction.jitter_angstrom/false_positive_fraction: the tomogram's header has no "
            "voxel size to convert Å to voxels; set it in the header"
        )
    rng = np.random.default_rng([int(seed), int(shard), 1])
    picks = jitter_positions(plist, config.jitter_angstrom / source_angstrom, rng)
    wanted = int(round(config.false_positive_fraction * len(plist)))
    half_box = (config.box_size_px // 2) * ratio
    picks = add_false_positives(
        picks, wanted, shape_zyx[::-1], math.ceil(half_box) + 2, half_box, rng
    )
    if len(picks) - len(plist) < wanted:
        log.warning(
            "placed %d of %d false positives: the tomogram has too little room away from the "
            "listed particles",
            len(picks) - len(plist),
            wanted,
        )
    return picks


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


def _rescale_ratio(source_angstrom: float, config: ExtractionConfig, path: str):
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


def _mean(mrc) -> float | None:
    """The header's mean when its statistics are set (else None: computed when needed)."""
    h = mrc.header
    dmin, dmax, dmean = float(h.dmin), float(h.dmax), float(h.dmean)
    if dmin <= dmean <= dmax and not dmin == dmax == dmean == 0.0:
        return dmean
    return None


def _isotropic_voxel_size(mrc, path: Path) -> float:
    vs = mrc.voxel_size
    sizes = np.array([float(vs.x), float(vs.y), float(vs.z)])
    if sizes.max() > 0 and (sizes.max() - sizes.min()) > 1e-3 * sizes.max():
        raise InputError(
            f"{path}: voxel size (x, y, z) = {tuple(sizes.round(4))} Å is not isotropic; "
            "expected equal sizes (resample the tomogram first)"
        )
    return float(sizes[0])
