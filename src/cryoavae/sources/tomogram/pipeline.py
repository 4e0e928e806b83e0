"""One simulated tomogram, stage by stage, written to disk.

1. plan (:func:`plan_tomogram`): every random choice up front: the particles' classes,
   non-overlapping positions and uniform orientations, the tomogram's defocus and each tilt's;
2. sample (:mod:`.sample`): the particles' contrast potential in a ``(Z, X, Y)`` volume;
3. tilt series (:mod:`.geometry`, :mod:`.imaging`): projections, phase, CTF and radiation
   damage per tilt, shot noise from the dose;
4. reconstruction: weighted back-projection to a ``(Z, Y, X)`` tomogram;
5. outputs: the tomogram (MRC, voxel size in its header), the ground truth as a STAR table and
   a SHREC'21 ``particle_locations.txt`` (:mod:`.truth`), and ``tomogram.json`` (the
   acquisition: every tilt's angle, rank, dose, defocus and counted electrons per pixel).

Randomness: ``numpy.random.SeedSequence([seed, index])`` spawns one stream per stage
(placement, orientations, defocus, noise), so tomogram ``index`` of a study is reproduced voxel
for voxel by its seed and settings, whatever the thread count (on the same machine and library
versions; the MRC header's label holds the time), tomograms are independent, and e.g. a
different dose changes the noise but not the sample.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from cryoavae import particles as P
from cryoavae.core.atomic import write_text_atomic
from cryoavae.core.errors import InputError
from cryoavae.geometry.rotations import random_rotations
from cryoavae.sources.tomogram import geometry, imaging
from cryoavae.sources.tomogram.config import TomogramConfig
from cryoavae.sources.tomogram.sample import (
    SamplePlan,
    class_radii_px,
    contrast_potential,
    place_particles,
    render_sample,
)
from cryoavae.sources.tomogram.truth import truth_table, write_particle_locations, write_truth_star
from cryoavae.structures.density import write_map

__all__ = [
    "SimulatedTomogram",
    "TiltPlan",
    "TomogramPlan",
    "plan_tomogram",
    "simulate_tilt_series",
    "simulate_tomogram",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TiltPlan:
    """The acquisition of one tilt series; arrays share their first axis ``n_tilts``."""

    angles_deg: np.ndarray  # (n,) increasing
    rank: np.ndarray  # (n,) when each tilt is recorded, 0-based
    prior_dose_e_per_a2: np.ndarray  # (n,) dose before the middle of each exposure
    defocus_um: np.ndarray  # (n,) underfocus positive
    electrons_per_px: np.ndarray  # (n,) counted electrons per pixel (after the energy filter)


@dataclass(frozen=True)
class TomogramPlan:
    sample: SamplePlan
    tilts: TiltPlan
    noise_seed: int


@dataclass(frozen=True)
class SimulatedTomogram:
    """What the report needs: the central z slice ``(Y, X)`` and the plan behind it."""

    name: str
    central_slice: np.ndarray  # (Y, X) float32
    central_z: int
    plan: TomogramPlan
    class_names: tuple[str, ...]
    radii_px: np.ndarray  # (n_classes,)
    voxel_size_angstrom: float


def plan_tomogram(
    class_names: Sequence[str],
    unseen: Collection[str],
    radii_px: np.ndarray,
    config: TomogramConfig,
    index: int,
    seed: int,
    voxel_size_angstrom: float,
    margin_px: int,
) -> TomogramPlan:
    """Draw tomogram ``index``'s particles and acquisition (see the module docstring).

    Particle centres keep ``margin_px`` voxels from every face of the sample.
    """
    if int(seed) != seed or seed < 0 or int(index) != index or index < 0:
        raise InputError(f"seed {seed} and tomogram index {index} must be non-negative integers")
    placement, orientation, focus, noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence([int(seed), int(index)]).spawn(4)
    )
    counts = P.class_counts(
        class_names, unseen, config.particles_per_class, config.unseen_particles_per_class
    )
    class_index = np.repeat(np.arange(len(class_names)), counts)
    if len(class_index) == 0:
        raise InputError("tomograms: particles_per_class and unseen_particles_per_class are 0")
    size = (config.size_x_px, config.size_y_px, config.size_z_px)
    gap_px = config.particle_gap_angstrom / voxel_size_angstrom
    margins = np.full(len(class_index), float(margin_px))
    positions = place_particles(radii_px[class_index], size, margins, gap_px, placement)
    sample = SamplePlan(class_index, positions, random_rotations(len(class_index), orientation))
    angles = imaging.tilt_angles_deg(config)
    rank = imaging.acquisition_rank(angles, config.tilt_order)
    nominal = focus.uniform(config.defocus_min_um, config.defocus_max_um)
    defocus = np.clip(nominal + focus.normal(0.0, config.defocus_spread_um, len(angles)), 0, None)
    tilts = TiltPlan(
        angles_deg=angles,
        rank=rank,
        prior_dose_e_per_a2=imaging.prior_dose_e_per_a2(rank, config.dose_e_per_a2 / len(angles)),
        defocus_um=defocus,
        electrons_per_px=imaging.electrons_per_pixel(config, angles, voxel_size_angstrom),
    )
    return TomogramPlan(sample, tilts, int(noise.integers(0, 2**63)))


def simulate_tilt_series(
    sample_zxy,
    plan: TomogramPlan,
    config: TomogramConfig,
    voxel_size_angstrom: float,
    matrix,
) -> np.ndarray:
    """The recorded tilt series ``(n_tilts, Y, X)`` float32 of a rendered sample (volts)."""
    tilts = plan.tilts
    sigma = imaging.electron_interaction_rad_per_v_a(config.voltage_kv)
    phase = geometry.project(sample_zxy, matrix) * np.float32(sigma * voxel_size_angstrom)
    contrast = imaging.contrast_images(
        phase,
        config,
        tilts.angles_deg,
        tilts.defocus_um,
        tilts.prior_dose_e_per_a2,
        voxel_size_angstrom,
    )
    electrons = tilts.electrons_per_px if config.shot_noise else None
    return imaging.record_images(contrast, electrons, np.random.default_rng(plan.noise_seed))


def simulate_tomogram(
    maps: np.ndarray,
    class_names: Sequence[str],
    unseen: Collection[str],
    config: TomogramConfig,
    index: int,
    seed: int,
    voxel_size_angstrom: float,
    box_size_px: int,
    tomogram_path: str | os.PathLike,
    star_path: str | os.PathLike,
    locations_path: str | os.PathLike,
    info_path: str | os.PathLike,
) -> SimulatedTomogram:
    """Simulate tomogram ``index`` of a study and write its tomogram and ground truth.

    ``maps`` ``(c, d, d, d)`` are the classes' density maps (atomic numbers per voxel, at
    ``voxel_size_angstrom``), one per name of ``class_names``; ``unseen`` those held out of
    training (they get ``unseen_particles_per_class``). Particles keep ``max(d, box_size_px) // 2
    + 1`` voxels from the faces, so every box of ``box_size_px`` around one lies inside.

    Memory: the ``(Z, X, Y)`` sample and the reconstruction (4 bytes a voxel each), the
    tilt series, and the geometry's sparse matrix (about ``16 n_tilts Z X`` bytes).

    Raises:
        InputError: maps and names disagree, the particles do not fit, or none is asked for.
    """
    maps = np.asarray(maps, dtype=np.float32)
    class_names = tuple(str(name) for name in class_names)
    _check_maps(maps, class_names)
    started = time.perf_counter()
    size = (config.size_x_px, config.size_y_px, config.size_z_px)
    radii = class_radii_px(maps)
    margin = max(maps.shape[-1], int(box_size_px)) // 2 + 1
    plan = plan_tomogram(
        class_names, set(unseen), radii, config, index, seed, voxel_size_angstrom, margin
    )
    tomogram, seconds = _image_and_reconstruct(maps, plan, config, voxel_size_angstrom, size)
    name = f"tomogram_{int(index):03d}"
    table = truth_table(
        name,
        list(class_names),
        plan.sample.class_index,
        plan.sample.positions_px,
        plan.sample.rotations,
        size,
        voxel_size_angstrom,
    )
    write_map(tomogram_path, tomogram, voxel_size_angstrom)
    write_truth_star(star_path, table)
    write_particle_locations(locations_path, table)
    fraction = _volume_fraction(radii[plan.sample.class_index], size)
    write_text_atomic(info_path, _info_json(name, plan, config, fraction, class_names))
    _log_simulated(name, plan, fraction, time.perf_counter() - started, seconds)
    z0 = config.size_z_px // 2
    return SimulatedTomogram(
        name, tomogram[z0].copy(), z0, plan, class_names, radii, voxel_size_angstrom
    )


def _check_maps(maps: np.ndarray, class_names: tuple[str, ...]) -> None:
    """InputError unless there is one finite cubic map per class."""
    if maps.ndim != 4 or maps.shape[1:] != (maps.shape[-1],) * 3 or len(maps) != len(class_names):
        raise InputError(
            f"maps have shape {maps.shape}; expected one (d, d, d) map per class of {class_names}"
        )
    if not np.isfinite(maps).all():
        raise InputError("maps contain NaN or infinite values")


def _image_and_reconstruct(
    maps: np.ndarray,
    plan: TomogramPlan,
    config: TomogramConfig,
    voxel_size_angstrom: float,
    size: tuple[int, int, int],
) -> tuple[np.ndarray, dict[str, float]]:
    """Stages 2 to 4: the ``(Z, Y, X)`` tomogram and the seconds each stage took; the sample and
    the tilt series are dropped as soon as the next stage has used them, to bound the memory."""
    potentials = contrast_potential(
        maps, voxel_size_angstrom, config.ice_potential_v, config.protein_potential_v
    )
    seconds = {}
    tick = time.perf_counter()
    sample = render_sample(potentials, plan.sample, size)
    seconds["sample"] = time.perf_counter() - tick
    tick = time.perf_counter()
    matrix = geometry.tilt_matrix(size, plan.tilts.angles_deg)
    images = simulate_tilt_series(sample, plan, config, voxel_size_angstrom, matrix)
    del sample
    seconds["tilt_series"] = time.perf_counter() - tick
    tick = time.perf_counter()
    tomogram = geometry.weighted_backprojection(
        images,
        plan.tilts.angles_deg,
        matrix,
        config.size_z_px,
        config.radial_cutoff_cycles_per_px,
        config.radial_falloff_cycles_per_px,
    )
    del matrix, images
    seconds["reconstruction"] = time.perf_counter() - tick
    return tomogram, seconds


def _log_simulated(
    name: str, plan: TomogramPlan, fraction: float, elapsed: float, seconds: dict[str, float]
) -> None:
    """One line per tomogram: its particles, dose and where the time went."""
    log.info(
        "%s: %d particles (%.1f %% of the volume), %d tilts, %.3g-%.3g e/pixel counted, "
        "%.1f s (%s)",
        name,
        len(plan.sample),
        100 * fraction,
        len(plan.tilts.angles_deg),
        float(plan.tilts.electrons_per_px.min()),
        float(plan.tilts.electrons_per_px.max()),
        elapsed,
        ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()),
    )


def _volume_fraction(radii_px: np.ndarray, size: tuple[int, int, int]) -> float:
    return float((4.0 / 3.0 * math.pi * np.asarray(radii_px) ** 3).sum() / np.prod(size))


def _info_json(name, plan: TomogramPlan, config, fraction, class_names) -> str:
    tilts = plan.tilts
    counts = np.bincount(plan.sample.class_index, minlength=len(class_names))
    info = {
        "tomogram": name,
        "size_xyz_px": [config.size_x_px, config.size_y_px, config.size_z_px],
        "particles_per_class": dict(zip(class_names, counts.tolist(), strict=True)),
        "volume_fraction": round(fraction, 5),
        "tilt_order": config.tilt_order,
        "dose_e_per_a2": config.dose_e_per_a2,
        "tilts": [
            {
                "angle_deg": round(float(a), 4),
                "rank": int(r),
                "prior_dose_e_per_a2": round(float(dose), 4),
                "defocus_um": round(float(df), 4),
                "electrons_per_px": round(float(e), 3),
            }
            for a, r, dose, df, e in zip(
                tilts.angles_deg,
                tilts.rank,
                tilts.prior_dose_e_per_a2,
                tilts.defocus_um,
                tilts.electrons_per_px,
                strict=True,
            )
        ],
    }
    return json.dumps(info, indent=1) + "\n"
