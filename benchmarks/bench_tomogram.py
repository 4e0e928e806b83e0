"""Tomogram benchmark: one simulated 512 x 512 x 200 tomogram (41 tilts) from the ten SHREC'21
maps, wall time and peak memory, each run in a fresh process.

The tomogram holds 200 particles of each seen class and 25 of each unseen one (1,650, about
14 % of the volume in their packing spheres), at 120 e/Å^2 with shot noise, CTF and radiation
damage: the settings of ``config/shrec21_tomo.yaml``. Time covers planning, the sample, the tilt
series, the reconstruction and writing (the maps are made before the clock starts); peak memory
is the process's ``VmHWM``, imports included. Goals: <= 60 s and <= 4 GB on the 2-core CPU.
Quick mode: 128 x 128 x 48, 11 tilts, two classes.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, time
from pathlib import Path
import numpy as np
import torch
from cryoavae.structures.density import DensityConfig, atoms_to_density
from cryoavae.structures import AtomSelection, load_atoms
from cryoavae.sources.tomogram import TomogramConfig, simulate_tomogram

quick, out = sys.argv[1] == "quick", Path(sys.argv[2])
torch.set_num_threads(2)
names = ["1s3x", "3qm1"] if quick else [
    "1bxn", "1qvr", "1s3x", "1u6g", "2cg9", "3cf3", "3d2f", "3gl1", "3h84", "3qm1"]
pdb = Path(sys.argv[3])
maps = np.stack([atoms_to_density(load_atoms(pdb / f"{n}.pdb.gz", AtomSelection()),
                                  DensityConfig(), name=n) for n in names])
if quick:
    config = TomogramConfig(size_x_px=128, size_y_px=128, size_z_px=48, tilt_step_deg=12.0,
                            particles_per_class=20, unseen_particles_per_class=5)
else:
    config = TomogramConfig(particles_per_class=200, unseen_particles_per_class=25)
start = time.perf_counter()
simulate_tomogram(maps, names, {"3d2f", "3h84"}, config, 0, 42, 10.0, 32, out / "t.mrc",
                  out / "t.star", out / "t.txt", out / "t.json")
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss_mb": peak / 1024}))
"""


def run(quick: bool) -> list[dict]:
    repeats = 1 if quick else 3
    seconds, peaks = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    "quick" if quick else "full",
                    tmp,
                    str(ROOT / "resources" / "pdb"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        figure = json.loads(done.stdout.strip().splitlines()[-1])
        seconds.append(figure["seconds"])
        peaks.append(figure["peak_rss_mb"])
    return [
        {"name": "simulate_tomogram_seconds_512", "value": statistics.median(seconds), "unit": "s"},
        {"name": "simulate_tomogram_peak_rss_mb_512", "value": max(peaks), "unit": "MB"},
    ]


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(json.dumps(row))
