"""Simulation benchmarks: subtomograms per second at 32^3, and the speed-up over a naive pipeline.

Both include rotation, CTF, missing wedge, noise and normalisation. The naive pipeline is what one
would write first: per particle, ``scipy.ndimage.affine_transform`` (trilinear) and numpy FFTs
(float64), with the same physics (noise through the wedge). The machine is shared, so figures are
medians of repeated runs and the ratio is measured within one run. Run alone with
``PYTHONPATH=src python benchmarks/bench_simulate.py [--quick]``.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import ndimage

from cryoavae.geometry.ctf import ctf_1d
from cryoavae.geometry.volume_rotation import padded_spectra
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.sources.simulate import SimulationConfig, plan_shard, simulate_batch, simulate_shard
from cryoavae.structures.density import DensityConfig, atoms_to_density

BOX = 32
VOXEL_ANGSTROM = 10.0
THREADS = 2
N_CLASSES = 10
# CTF on (the default) and the missing wedge of the schema's default +-60 degrees
CONFIG = SimulationConfig(snr=0.1, batch_size=256, wedge_tilt_max_deg=60.0)


def class_maps(n_classes: int = N_CLASSES) -> np.ndarray:
    """Protein-sized maps (radius 40-110 Å, a few thousand atoms each) at 10 Å/voxel."""
    rng = np.random.default_rng(0)
    maps = []
    for _ in range(n_classes):
        n_atoms = int(rng.integers(2000, 8000))
        directions = rng.normal(size=(n_atoms, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        radii = rng.uniform(0, 1, (n_atoms, 1)) ** (1 / 3) * rng.uniform(40, 110, 3)
        atoms = SimpleNamespace(
            positions=directions * radii, atomic_numbers=rng.choice([6, 7, 8, 16], n_atoms)
        )
        maps.append(atoms_to_density(atoms, DensityConfig(box_size_px=BOX)))
    return np.stack(maps)


def _plan(n: int, seed: int = 0):
    names = [f"c{k}" for k in range(N_CLASSES)]
    per_class = math.ceil(n / N_CLASSES)
    config = SimulationConfig(particles_per_class=per_class, n_shards=1, wedge_tilt_max_deg=60.0)
    return plan_shard(names, set(), config, 0, seed, VOXEL_ANGSTROM).subset(slice(0, n))


def _fast_seconds_per_particle(spectra: np.ndarray, n: int, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds per particle of the batched simulator."""
    plan = _plan(n)
    simulate_batch(spectra, plan.subset(slice(0, 8)), CONFIG, VOXEL_ANGSTROM, THREADS)  # warm up
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        for start in range(0, n, CONFIG.batch_size):
            batch = plan.subset(slice(start, start + CONFIG.batch_size))
            simulate_batch(spectra, batch, CONFIG, VOXEL_ANGSTROM, THREADS)
        walls.append((time.perf_counter() - wall) / n)
        cpus.append((time.process_time() - cpu) / n)
    return float(np.median(walls)), float(np.median(cpus))


def naive_particle(volume, rotation, defocus_um, k_per_angstrom, keep, rng) -> np.ndarray:
    """One particle the straightforward way: same physics as the simulator, no batching."""
    d = volume.shape[0]
    reverse = np.eye(3)[::-1]  # (x, y, z) vectors <-> (z, y, x) array axes
    matrix = reverse @ rotation.T @ reverse
    offset = d // 2 - matrix @ np.full(3, d // 2)
    rotated = ndimage.affine_transform(volume, matrix, offset=offset, order=1, mode="grid-constant")
    ctf = ctf_1d(k_per_angstrom, defocus_um)
    signal = np.fft.irfftn(np.fft.rfftn(rotated) * ctf * keep, s=volume.shape)
    noise = np.fft.irfftn(np.fft.rfftn(rng.standard_normal(volume.shape)) * keep, s=volume.shape)
    noise *= math.sqrt(signal.var() / (CONFIG.snr * noise.var()))
    particle = signal + noise
    return ((particle - particle.mean()) / particle.std()).astype(np.float32)


def _naive_seconds_per_particle(maps: np.ndarray, n: int, repeats: int) -> float:
    plan = _plan(n)
    rng = np.random.default_rng(0)
    kz, ky, kx = np.meshgrid(
        np.fft.fftfreq(BOX, VOXEL_ANGSTROM),
        np.fft.fftfreq(BOX, VOXEL_ANGSTROM),
        np.fft.rfftfreq(BOX, VOXEL_ANGSTROM),
        indexing="ij",
    )
    k = np.sqrt(kx**2 + ky**2 + kz**2)
    keep = missing_wedge_mask(BOX, CONFIG.wedge_tilt_max_deg)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for p in range(n):
            volume = maps[plan.class_index[p]]
            naive_particle(volume, plan.rotations[p], plan.defocus_um[p], k, keep, rng)
        times.append((time.perf_counter() - start) / n)
    return float(np.median(times))


def bench_throughput(quick: bool) -> list[dict]:
    """``simulate_subtomograms_per_s_32``: batched simulator, 2 threads, in memory."""
    spectra = padded_spectra(class_maps())
    n, repeats = (512, 3) if quick else (2048, 5)
    wall, cpu = _fast_seconds_per_particle(spectra, n, repeats)
    return [
        {"name": "simulate_subtomograms_per_s_32", "value": round(1 / wall), "unit": "1/s"},
        {"name": "simulate_cpu_us_per_subtomogram_32", "value": round(cpu * 1e6), "unit": "us"},
    ]


def bench_speedup_vs_scipy(quick: bool) -> list[dict]:
    """``simulate_speedup_vs_scipy_32``: the batched simulator over a per-particle scipy one."""
    maps = class_maps()
    spectra = padded_spectra(maps)
    n_naive, n_fast, repeats = (16, 256, 3) if quick else (64, 1024, 3)
    naive = _naive_seconds_per_particle(maps, n_naive, repeats)
    fast, _ = _fast_seconds_per_particle(spectra, n_fast, repeats)
    return [
        {"name": "simulate_scipy_subtomograms_per_s_32", "value": round(1 / naive), "unit": "1/s"},
        {"name": "simulate_speedup_vs_scipy_32", "value": round(naive / fast, 1), "unit": "x"},
    ]


def bench_shard(quick: bool) -> list[dict]:
    """``simulate_shard_per_s_32``: one whole shard, including writing the stack and STAR."""
    maps = class_maps()
    names = [f"c{k}" for k in range(N_CLASSES)]
    per_class, repeats = (50, 3) if quick else (200, 3)
    config = SimulationConfig(
        particles_per_class=per_class, n_shards=1, snr=CONFIG.snr, wedge_tilt_max_deg=60.0
    )
    times = []
    with tempfile.TemporaryDirectory() as folder:
        for repeat in range(repeats):
            stack, star = Path(folder) / f"{repeat}.mrcs", Path(folder) / f"{repeat}.star"
            start = time.perf_counter()
            simulate_shard(maps, names, set(), config, 0, 0, VOXEL_ANGSTROM, stack, star, THREADS)
            times.append(time.perf_counter() - start)
    rate = per_class * N_CLASSES / float(np.median(times))
    return [{"name": "simulate_shard_per_s_32", "value": round(rate), "unit": "1/s"}]


BENCHMARKS = (bench_throughput, bench_speedup_vs_scipy, bench_shard)


def run(quick: bool) -> list[dict]:
    return [figure for bench in BENCHMARKS for figure in bench(quick)]


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(json.dumps(figure), flush=True)
