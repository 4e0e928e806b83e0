"""Simulated subtomograms, shard by shard: the physical stages composed and written to disk.

Per particle (batched, parallel over particles):

1. rotate the clean class map by a uniformly random rotation ``A``, plus an optional sub-voxel
   shift, in Fourier space (:func:`cryoavae.geometry.volume_rotation.rotate_spectra`: the map's
   padded spectrum sampled at rotated frequencies, the shift a phase ramp); ``A``'s RELION angles
are recorded; 2. multiply by the 3-D CTF of a random defocus (:mod:`cryoavae.geometry.ctf`);
3. add white Gaussian noise at the requested SNR (:mod:`.noise`);
4. zero the missing wedge (:mod:`cryoavae.geometry.wedge`), for signal and noise alike;
5. z-score, and one inverse FFT.

Steps 1-5 run as one pass over the measured Fourier coefficients
(:func:`cryoavae.geometry._volume_kernels.simulate_spectra_kernel`),
computing ``zscore(irfftn(W (C R(S) + sigma N)))`` with ``sigma`` chosen so that
``var(irfftn(W C R(S))) / var(irfftn(sigma W N)) = snr``; tests check it against the stages
composed one by one.

``simulation.rotation: real_space`` replaces step 1 with a real-space turn and shift of the map
by cubic B-spline interpolation (:func:`cryoavae.geometry.volume_rotation.rotate_volumes_cubic`),
an interpolation the template matcher, which samples rotated templates with the Fourier kernel
above, never uses; steps 2-5 then run one by one (:mod:`.measure`) with the same definitions.

Randomness: one ``numpy.random.Generator`` seeded with ``(seed, shard)`` draws every choice of a
shard up front (:func:`plan_shard`), including one noise seed per particle, so a shard is
reproduced byte for byte by the same seed and configuration (on the same machine and library
versions), and shards are independent. Output does not depend on ``batch_size`` or ``threads``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import os
import time
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np
import pandas as pd
import scipy.fft

from cryoavae import particles
from cryoavae.core.errors import InputError
from cryoavae.geometry._volume_kernels import PAD_FACTOR, simulate_spectra_kernel
from cryoavae.geometry.ctf import ctf_radial_table, frequency_squared_index
from cryoavae.geometry.rotations import matrices_to_relion_angles, random_rotations
from cryoavae.geometry.volume_rotation import (
    band_limited_coefficients,
    centre_phases,
    padded_spectra,
    rotate_volumes_cubic,
    spline_coefficients,
)
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.sources.simulate.config import SimulationConfig
from cryoavae.sources.simulate.measure import measure
from cryoavae.sources.simulate.noise import draw_noise, hermitian_noise_slots, parseval_weights

__all__ = [
    "ParticlePlan",
    "plan_shard",
    "prepare_maps",
    "simulate_batch",
    "simulate_shard",
]

log = logging.getLogger(__name__)

#: RELION's origin offsets (Å): the particle's centre sits at the box centre minus the origin.

#: Simulated pick errors are Gaussian cut at this many standard deviations, so that a shift
#: never wraps a particle round its (circular) box.
SHIFT_CUT_SD = 3.0


@dataclass(frozen=True)
class ParticlePlan:
    """Every random choice for the particles of one shard; arrays share their first axis ``n``."""

    class_index: np.ndarray  # (n,) int64, 0-based into class_names
    split: np.ndarray  # (n,) str: train / val / unseen
    rotations: np.ndarray  # (n, 3, 3) active rotation applied to the clean map (RELION's A)
    shifts_px: np.ndarray  # (n, 3) (x, y, z) voxels, applied after the rotation
    defocus_um: np.ndarray  # (n,) drawn even with the CTF off, so toggling it changes nothing else
    noise_seeds: np.ndarray  # (n,) uint64

    def __len__(self) -> int:
        return len(self.class_index)

    def subset(self, rows: slice | np.ndarray) -> ParticlePlan:
        return ParticlePlan(**{k: getattr(self, k)[rows] for k in self.__dataclass_fields__})


def plan_shard(
    class_names: Sequence[str],
    unseen: Collection[str],
    config: SimulationConfig,
    shard: int,
    seed: int,
    voxel_size_angstrom: float,
) -> ParticlePlan:
    """Draw shard ``shard``'s particles: its slice of every class, splits, poses, defocus, seeds.

    Shard ``k`` of ``S`` gets particles ``[k n_c // S, (k + 1) n_c // S)`` of each class ``c`` (so
    shards differ by at most one particle per class). Within a shard, ``round(val_fraction m)`` of
    the ``m`` particles of each seen class are ``val``; unseen classes are all ``unseen``. Rows are
    shuffled. The generator is ``default_rng([seed, shard])``.
    """
    if not 0 <= shard < config.n_shards:
        raise InputError(f"shard is {shard}; expected 0 <= shard < n_shards ({config.n_shards})")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed is {seed}; expected a non-negative integer")
    rng = np.random.default_rng([int(seed), int(shard)])
    counts = particles.class_counts(
        class_names, unseen, config.particles_per_class, config.unseen_particles_per_class
    )
    per_shard = (shard + 1) * counts // config.n_shards - shard * counts // config.n_shards
    class_index = np.repeat(np.arange(len(class_names)), per_shard)
    is_unseen = np.array([name in unseen for name in class_names], dtype=bool)[class_index]
    split = particles.assign_splits(
        class_index + 1, is_unseen, config.val_fraction, rng, config.test_fraction
    )
    order = rng.permutation(len(class_index))
    class_index, split = class_index[order], split[order]
    n = len(class_index)
    rotations = random_rotations(n, rng, config.rotation_range_deg)
    defocus_um = rng.uniform(config.ctf.defocus_min_um, config.ctf.defocus_max_um, n)
    shift_sd_px = config.shift_sd_angstrom / voxel_size_angstrom
    shifts_px = np.clip(rng.normal(0.0, 1.0, (n, 3)), -SHIFT_CUT_SD, SHIFT_CUT_SD) * shift_sd_px
    noise_seeds = rng.integers(0, 2**63, n, dtype=np.uint64)
    return ParticlePlan(class_index, split, rotations, shifts_px, defocus_um, noise_seeds)


@contextlib.contextmanager
def _numba_threads(threads: int) -> Iterator[None]:
    previous = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _resolve_threads(threads: int | None) -> int:
    return max(1, int(threads)) if threads is not None else (os.cpu_count() or 1)


def prepare_maps(maps: np.ndarray, config: SimulationConfig) -> np.ndarray:
    """The class maps ``(n_classes, d, d, d)`` as :func:`simulate_batch` reads them, computed
    once per shard: padded spectra (``fourier``) or cubic spline coefficients (``real_space``)."""
    if config.rotation == "real_space":
        return spline_coefficients(maps)
    return padded_spectra(maps)


def simulate_batch(
    prepared: np.ndarray,
    plan: ParticlePlan,
    config: SimulationConfig,
    voxel_size_angstrom: float,
    threads: int | None = None,
) -> np.ndarray:
    """Simulate the particles of ``plan`` from the class maps made ready by :func:`prepare_maps`.

    Args:
        prepared: ``prepare_maps(maps, config)`` (for ``fourier``, ``padded_spectra(maps)``).
        plan: the particles' random choices (see :func:`plan_shard`).
        threads: bound on numba, FFT and noise threads (default: all cores).

    Returns:
        ``(n, d, d, d)`` float32 subtomograms, each with zero mean and unit variance.
    """
    threads = _resolve_threads(threads)
    if config.rotation == "real_space":
        return _simulate_real_space(prepared, plan, config, voxel_size_angstrom, threads)
    spectra = prepared
    d = spectra.shape[-1] // PAD_FACTOR
    n = len(plan)
    if (
        spectra.ndim != 4
        or spectra.dtype != np.complex64
        or spectra.shape[1:] != (PAD_FACTOR * d,) * 3
    ):
        raise ValueError(f"simulate_batch: expected padded_spectra(maps), got {spectra.shape}")
    if n == 0:
        return np.empty((0, d, d, d), dtype=np.float32)
    if not 0 <= plan.class_index.min() <= plan.class_index.max() < len(spectra):
        raise ValueError(f"simulate_batch: plan asks for classes beyond the {len(spectra)} maps")
    layout = _layout(d, config.wedge_tilt_max_deg)
    ctf = config.ctf
    if ctf.enabled:
        ctf_table = ctf_radial_table(
            d,
            voxel_size_angstrom,
            plan.defocus_um,
            ctf.voltage_kv,
            ctf.cs_mm,
            ctf.amplitude_contrast,
        )
    else:
        ctf_table = np.ones((n, 3 * (d // 2) ** 2 + 1), dtype=np.float32)
    with_noise = config.snr is not None
    noise = draw_noise(layout.n_slots if with_noise else 0, plan.noise_seeds, threads)
    spectrum = np.empty((n, d * d * (d // 2 + 1)), dtype=np.complex64)
    with _numba_threads(threads):
        simulate_spectra_kernel(
            spectra,
            plan.class_index,
            plan.rotations,
            plan.shifts_px,
            layout.flat,
            layout.frequencies,
            layout.centre_phase,
            layout.k2_index,
            layout.weight,
            layout.slot,
            layout.mode,
            ctf_table,
            noise,
            float(config.snr) if with_noise else 1.0,
            with_noise,
            np.argsort(plan.class_index, kind="stable"),
            spectrum,
            d,
        )
    del noise
    spectrum = spectrum.reshape(n, d, d, d // 2 + 1)
    return scipy.fft.irfftn(spectrum, s=(d, d, d), axes=(1, 2, 3), workers=threads)


def _simulate_real_space(
    coefficients: np.ndarray,
    plan: ParticlePlan,
    config: SimulationConfig,
    voxel_size_angstrom: float,
    threads: int,
) -> np.ndarray:
    """Each particle's map turned and shifted in real space (cubic B-spline), then measured."""
    d = coefficients.shape[-1]
    if coefficients.ndim != 4 or coefficients.shape[1:] != (d, d, d):
        raise ValueError(
            f"simulate_batch: expected spline_coefficients(maps), got {coefficients.shape}"
        )
    if len(plan) == 0:
        return np.empty((0, d, d, d), dtype=np.float32)
    if not 0 <= plan.class_index.min() <= plan.class_index.max() < len(coefficients):
        raise ValueError(
            f"simulate_batch: plan asks for classes beyond the {len(coefficients)} maps"
        )
    volumes = rotate_volumes_cubic(
        coefficients,
        plan.rotations,
        source_index=plan.class_index,
        shifts_px=plan.shifts_px,
        threads=threads,
    )
    return measure(volumes, plan.defocus_um, plan.noise_seeds, config, voxel_size_angstrom, threads)


@dataclass(frozen=True)
class _Layout:
    """The rfftn coefficients a particle can have: measured (wedge) and not DC.

    The first ``len(frequencies)`` are inside the band limit and carry signal; the rest carry only
    noise. Arrays are indexed by coefficient ``j``.
    """

    flat: np.ndarray  # (K,) int64 into (d, d, d//2 + 1)
    frequencies: np.ndarray  # (K_signal, 3) int64 (x, y, z) cycles per box
    centre_phase: np.ndarray  # (K_signal,) complex64, see rotation.centre_phases
    k2_index: np.ndarray  # (K,) int32 integer |k|^2, indexes the CTF table
    weight: np.ndarray  # (K,) float32 Parseval multiplicity
    slot: np.ndarray  # (K,) int64 noise draw
    mode: np.ndarray  # (K,) int8 noise.DIRECT / CONJUGATE / REAL
    n_slots: int


@functools.lru_cache(maxsize=8)
def _layout(box_size_px: int, tilt_max_deg: float | None) -> _Layout:
    d = box_size_px
    keep = missing_wedge_mask(d, 90.0 if tilt_max_deg is None else tilt_max_deg)
    signal_flat, frequencies = band_limited_coefficients(d, keep)
    keep[0, 0, 0] = False
    keep.ravel()[signal_flat] = False
    flat = np.concatenate([signal_flat, np.flatnonzero(keep)])
    # Slots follow the flat (memory) order, as in noise.noise_spectrum, then follow the list.
    in_memory_order = np.argsort(flat)
    slot, mode = np.empty_like(flat), np.empty(len(flat), dtype=np.int8)
    slot[in_memory_order], mode[in_memory_order], n_slots = hermitian_noise_slots(
        d, flat[in_memory_order]
    )
    k2_index = frequency_squared_index(d).ravel()[flat]
    weight = np.broadcast_to(parseval_weights(d), (d, d, d // 2 + 1)).ravel()[flat]
    phase = centre_phases(frequencies, d)
    arrays = [flat, frequencies, phase, k2_index, weight, slot, mode]
    for array in arrays:
        array.flags.writeable = False  # shared by every call through the cache
    return _Layout(*arrays, n_slots)


def simulate_shard(
    maps: np.ndarray,
    class_names: Sequence[str],
    unseen: Collection[str],
    config: SimulationConfig,
    shard: int,
    seed: int,
    voxel_size_angstrom: float,
    stack_path: str | os.PathLike,
    star_path: str | os.PathLike,
    threads: int | None = None,
) -> None:
    """Simulate one shard and write its ``.mrcs`` stack and STAR table (see
    :mod:`cryoavae.particles`).

    Memory: the shard's stack (``n d^3`` float32) plus one batch of intermediates.

    Raises:
        InputError: maps and class names disagree, an unseen class is not a class, the shard is
            out of range or would be empty.
    """
    maps = np.asarray(maps, dtype=np.float32)
    class_names = [str(name) for name in class_names]
    unseen = {str(name) for name in unseen}
    if maps.ndim != 4 or maps.shape[1:] != (maps.shape[-1],) * 3:
        raise InputError(f"maps have shape {maps.shape}; expected (n_classes, d, d, d)")
    if len(class_names) != len(maps) or len(set(class_names)) != len(class_names):
        raise InputError(
            f"class_names {class_names} must be {len(maps)} distinct names, one per map"
        )
    if not np.isfinite(maps).all():
        raise InputError("maps contain NaN or infinite values")
    if unseen - set(class_names):
        raise InputError(
            f"unseen classes {sorted(unseen - set(class_names))} are not among {class_names}"
        )
    plan = plan_shard(class_names, unseen, config, shard, seed, voxel_size_angstrom)
    if len(plan) == 0:
        raise InputError(
            f"shard {shard} of n_shards {config.n_shards} gets no particles; lower n_shards"
        )
    threads = _resolve_threads(threads)
    started = time.perf_counter()
    d = maps.shape[-1]
    prepared = prepare_maps(maps, config)
    stack_path, star_path = Path(stack_path), Path(star_path)
    # Batches go straight to a memory-mapped stack: memory stays flat however large the shard.
    with particles.stack_writer(stack_path, len(plan), (d, d, d), voxel_size_angstrom) as out:
        for start in range(0, len(plan), config.batch_size):
            batch = plan.subset(slice(start, start + config.batch_size))
            out.write(start, simulate_batch(prepared, batch, config, voxel_size_angstrom, threads))
    seconds = time.perf_counter() - started
    stack_name = Path(os.path.relpath(stack_path, star_path.parent)).as_posix()
    table = _particle_table(plan, class_names, config, shard, voxel_size_angstrom, stack_name)
    particles.write_particle_table(star_path, table)
    log.info(
        "shard %d: %d particles of %d^3 in %.1f s (%.0f/s): %s",
        shard,
        len(plan),
        d,
        seconds,
        len(plan) / seconds,
        ", ".join(f"{s} {int((plan.split == s).sum())}" for s in particles.SPLITS),
    )


def _particle_table(
    plan: ParticlePlan,
    class_names: Sequence[str],
    config: SimulationConfig,
    shard: int,
    voxel_size_angstrom: float,
    stack_name: str,
) -> pd.DataFrame:
    angles = matrices_to_relion_angles(plan.rotations)  # (n, 3)
    origins = -plan.shifts_px * voxel_size_angstrom  # centre = box centre - origin
    defocus = plan.defocus_um * 1e4 if config.ctf.enabled else np.zeros(len(plan))
    return particles.particle_table(
        stack_name,
        plan.class_index + 1,
        np.asarray(class_names, dtype=object)[plan.class_index],
        plan.split,
        angles_deg=angles,
        defocus_angstrom=defocus,
        snr=math.inf if config.snr is None else float(config.snr),
        shard=shard,
        **{name: origins[:, a] + 0.0 for a, name in enumerate(particles.ORIGINS)},  # + 0.0: no "-0"
    )
