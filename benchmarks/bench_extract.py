"""Extraction benchmark: subtomograms cut per second from a memory-mapped tomogram.

Times the whole stage (read the list, cut, normalise, write stack + STAR), and, in the same run,
our cut + normalise against a naive per-particle loop of slices (the ratio cancels machine noise).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np

from cryoavae.sources.extract import (
    ExtractionConfig,
    Tomogram,
    cut_particles,
    extract_subtomograms,
    normalize_boxes,
)

BOX = 32


def _tomogram(path: Path, shape_zyx: tuple[int, int, int]) -> None:
    rng = np.random.default_rng(0)
    with mrcfile.new_mmap(path, shape=shape_zyx, mrc_mode=2, overwrite=True) as mrc:
        for z in range(0, shape_zyx[0], 16):  # slab by slab: memory stays flat
            slab = mrc.data[z : z + 16]
            slab[:] = rng.standard_normal(slab.shape, dtype=np.float32)
        mrc.voxel_size = 10.0


def _particle_list(path: Path, shape_zyx, n: int) -> np.ndarray:
    rng = np.random.default_rng(1)
    lo = BOX // 2
    xyz = np.stack([rng.integers(lo, s - lo, n) for s in shape_zyx[::-1]], axis=1)  # (n, 3) x, y, z
    lines = [f"1bxn {x} {y} {z} 0 0 0" for x, y, z in xyz]
    path.write_text("\n".join(lines) + "\n")
    return xyz


def _naive(tomogram: Path, xyz: np.ndarray) -> np.ndarray:
    """The baseline: one slice per particle, z-scored one by one."""
    h = BOX // 2
    with mrcfile.mmap(tomogram, mode="r") as mrc:
        out = []
        for x, y, z in xyz:
            box = np.array(mrc.data[z - h : z + h, y - h : y + h, x - h : x + h], dtype=np.float32)
            out.append((box - box.mean()) / box.std())
    return np.stack(out)


def extract_subtomograms_per_s_32(quick: bool) -> list[dict]:
    shape = (48, 128, 128) if quick else (128, 512, 512)
    n = 300 if quick else 3000
    repeats = 3 if quick else 5
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        _tomogram(tmp / "tomo.mrc", shape)
        xyz = _particle_list(tmp / "particle_locations.txt", shape, n)
        cfg = ExtractionConfig(box_size_px=BOX)
        stage, ours, naive = [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            extract_subtomograms(
                tmp / "tomo.mrc",
                tmp / "particle_locations.txt",
                ["1bxn"],
                [],
                cfg,
                0,
                tmp / "p.mrcs",
                tmp / "p.star",
            )
            stage.append(n / (time.perf_counter() - start))
        # cut + normalise only, against the naive loop, alternating so both see the same machine
        for _ in range(repeats):
            start = time.perf_counter()
            with mrcfile.mmap(tmp / "tomo.mrc", mode="r") as mrc:
                tomogram = Tomogram(mrc.data, 10.0, "tomo.mrc")
                normalize_boxes(cut_particles(tomogram, xyz, BOX, 1.0, "skip")[0])
            ours.append(n / (time.perf_counter() - start))
            start = time.perf_counter()
            _naive(tmp / "tomo.mrc", xyz)
            naive.append(n / (time.perf_counter() - start))
    ratio = statistics.median(o / b for o, b in zip(ours, naive, strict=True))
    return [
        {"name": "extract_subtomograms_per_s_32", "value": statistics.median(stage), "unit": "1/s"},
        {"name": "extract_cut_normalise_vs_naive_ratio", "value": ratio, "unit": "x"},
    ]


def run(quick: bool) -> list[dict]:
    return extract_subtomograms_per_s_32(quick)
