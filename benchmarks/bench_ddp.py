"""Data-parallel training on the CPU: two gloo ranks of one thread each against one rank of one
thread, the same global batch and data (3-D 32^3, the default model).

The ratio of their training rates (``train_samples_per_second`` of each summary, startup left
out) is taken pair by pair, the two runs of a pair back to back, and the median reported: it
says what the gradient exchange costs on a CPU, not a GPU figure.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cryoavae import particles as P
from cryoavae.train.launch import TrainingJob

BOX = 32
LAUNCH = "import json, sys\nfrom cryoavae.train.launch import TrainingJob, launch\n"
LAUNCH += "launch(TrainingJob(**json.loads(sys.argv[1])))\n"


def _particles(root: Path, n: int) -> Path:
    rng = np.random.default_rng(0)
    with P.stack_writer(root / "p.mrcs", n, (BOX,) * 3, 10.0) as out:
        for start in range(0, n, 1000):
            size = min(1000, n - start)
            out.write(start, rng.standard_normal((size, BOX, BOX, BOX), dtype=np.float32))
    names = np.array(["a", "b"])[np.arange(n) % 2]
    splits = np.where(np.arange(n) % 10 == 0, "val", "train")
    table = P.particle_table("p.mrcs", np.arange(n) % 2 + 1, names, splits)
    P.write_particle_table(root / "p.star", table)
    (root / "prior.csv").write_text("a,b\n1,0.2\n0.2,1\n")
    return root / "p.star"


def _rate(star: Path, out: Path, devices: int, epochs: int) -> float:
    job = TrainingJob(
        particles=str(star),
        affinity=str(star.parent / "prior.csv"),
        class_names=["a", "b"],
        model={},
        training={"epochs": epochs, "batch_size": 64, "device": "cpu", "devices": devices},
        seed=0,
        checkpoint=str(out / "model.pt"),
        history=str(out / "history.tsv"),
        summary=str(out / "summary.json"),
        work_dir=str(out / "work"),
        threads=devices,  # one thread per rank
    )
    out.mkdir(parents=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-c", LAUNCH, json.dumps(asdict(job))], check=True, env=env)
    return json.loads((out / "summary.json").read_text())["train_samples_per_second"]


def ddp_cpu_2rank_speedup(quick: bool) -> list[dict]:
    n, epochs, pairs = (512, 1, 1) if quick else (1200, 2, 3)
    ratios, single = [], []
    with tempfile.TemporaryDirectory() as tmp:
        star = _particles(Path(tmp), n)
        for k in range(pairs):
            one = _rate(star, Path(tmp) / f"one{k}", 1, epochs)
            two = _rate(star, Path(tmp) / f"two{k}", 2, epochs)
            ratios.append(two / one)
            single.append(one)
    return [
        {"name": "ddp_cpu_2rank_speedup", "value": statistics.median(ratios), "unit": "x"},
        {"name": "ddp_cpu_1rank_samples_per_s", "value": statistics.median(single), "unit": "1/s"},
    ]


def run(quick: bool) -> list[dict]:
    return ddp_cpu_2rank_speedup(quick)
