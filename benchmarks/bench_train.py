"""Training benchmarks: throughput, loop efficiency, startup time and peak memory.

Each ``bench_*`` function takes ``quick`` (tiny sizes for CI) and returns a list of
``{"name", "value", "unit"}`` dicts. Throughputs are medians over epochs or steps; the machine may
be shared, so treat them as noisy. Run alone with ``PYTHONPATH=src python benchmarks/bench_train.py
[--quick]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryoavae import particles
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model
from cryoavae.train import TrainingConfig, train_model
from cryoavae.train.losses import avae_loss

N_CLASSES = 5
THREADS = int(os.environ.get("CRYOAVAE_BENCH_THREADS", "2"))  # the workflow's default is 2
DEVICE = os.environ.get("CRYOAVAE_BENCH_DEVICE", "cpu")  # benchmarks/device_check.sh: cuda


def write_synthetic(
    root: Path, n: int, box: int, ndim: int, n_shards: int = 1, val_fraction: float = 0.1
) -> Path:
    """``n`` random particles of ``N_CLASSES`` classes in ``n_shards`` .mrcs stacks + a STAR."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for shard, part in enumerate(np.array_split(np.arange(n), n_shards)):
        name = f"shard_{shard:03d}.mrcs"
        images = rng.standard_normal((len(part), *(box,) * ndim), dtype=np.float32)
        particles.write_stack(root / name, images, 10.0)
        classes = rng.integers(1, N_CLASSES + 1, len(part))
        splits = np.where(rng.random(len(part)) < val_fraction, "val", "train")
        rows.append(
            pd.DataFrame(
                {
                    particles.IMAGE: [particles.image_reference(i, name) for i in range(len(part))],
                    particles.CLASS_NUMBER: classes,
                    "rlnAngleRot": 0.0,
                    "rlnAngleTilt": 0.0,
                    "rlnAnglePsi": 0.0,
                    particles.CLASS_NAME: [f"class{c}" for c in classes],
                    particles.SPLIT: splits,
                    particles.SHARD: shard,
                }
            )
        )
    star = root / "particles.star"
    particles.write_particle_table(star, pd.concat(rows, ignore_index=True))
    return star


def _affinity() -> np.ndarray:
    return np.eye(N_CLASSES) * 0.5 + 0.5


def _train(
    star: Path,
    model_config: ModelConfig,
    epochs: int,
    out: Path,
    affinity: np.ndarray | None = None,
) -> dict:
    table = particles.read_particle_table(star)
    images = particles.ParticleImages(table, star, model_config.ndim)
    config = TrainingConfig(epochs=epochs, checkpoint_every_epochs=epochs + 1, device=DEVICE)
    return train_model(
        table,
        images,
        _affinity() if affinity is None else affinity,
        model_config,
        config,
        seed=0,
        checkpoint_path=out / "model.pt",
        history_path=out / "history.tsv",
        work_dir=out / "work",
        threads=THREADS,
    )


def _bare_samples_per_s(
    model_config: ModelConfig, batch_size: int, steps: int
) -> tuple[float, float]:
    """Forward + backward + Adam step on one batch already in memory: the loop's floor, as
    samples per wall second and per second of process CPU time over ``steps`` steps after one
    warm-up step. Total samples over total time, like the full loop's rate: a median step time
    would flatter the floor, because step times have a long upper tail."""
    torch.set_num_threads(THREADS)
    layout = torch.channels_last_3d if model_config.ndim == 3 else torch.channels_last
    model = build_model(model_config, 0).to(memory_format=layout)  # as train_model does
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)
    gen = torch.Generator().manual_seed(0)
    box = (model_config.box_size_px,) * model_config.ndim
    x = torch.randn(batch_size, 1, *box, generator=gen)
    y = torch.randint(0, N_CLASSES, (batch_size,), generator=gen)
    a = torch.from_numpy(_affinity()).float()
    for step in range(steps + 1):
        if step == 1:  # the first step warms up allocators and kernels
            start_wall, start_cpu = time.perf_counter(), time.process_time()
        eps = torch.randn(batch_size, model_config.latent_dims, generator=gen)
        out = model(x, eps)
        terms = avae_loss(out.reconstruction, x, out.mu, out.log_var, y, a, 1.0, 10.0)
        optimizer.zero_grad()
        terms.total.backward()
        optimizer.step()
    n = batch_size * steps
    return n / (time.perf_counter() - start_wall), n / (time.process_time() - start_cpu)


def _loop_samples_per_s(star: Path, model_config: ModelConfig, epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        history = _train(star, model_config, epochs, Path(tmp))
        frame = pd.read_csv(Path(tmp) / "history.tsv", sep="\t")
    del history
    return float(frame["samples_per_s"].median())


def bench_throughput(quick: bool = False) -> list[dict]:
    """``train_samples_per_s_3d32`` (default model) and ``train_samples_per_s_2d64`` (encoder
    channels 64/128/256): median per-epoch samples/s of the full training loop."""
    n3, n2, epochs = (128, 64, 2) if quick else (1024, 256, 3)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        star = write_synthetic(Path(tmp) / "3d", n3, 32, 3)
        rate = _loop_samples_per_s(star, ModelConfig(ndim=3, box_size_px=32), epochs)
        results.append({"name": "train_samples_per_s_3d32", "value": rate, "unit": "samples/s"})
        star = write_synthetic(Path(tmp) / "2d", n2, 64, 2)
        config = ModelConfig(ndim=2, box_size_px=64, channels=(64, 128, 256))
        rate = _loop_samples_per_s(star, config, epochs)
        results.append({"name": "train_samples_per_s_2d64", "value": rate, "unit": "samples/s"})
    return results


def bench_loop_efficiency(quick: bool = False) -> list[dict]:
    """Full loop samples/s over the bare forward+backward+step rate of the same model and batch
    size on a tensor in memory (``train_loop_efficiency``).

    The full loop is one whole ``train_model`` call: reading the table, data loading, the
    training passes, validation on the 10 % val split each epoch, logging, the history table and
    the final checkpoint; its rate is train samples over the call's wall time. Each full run is
    bracketed by two bare measurements and the ratio taken against their mean, because a shared
    machine's speed drifts by 10-20 % within a minute; the figure is the median ratio over the
    repeats. Bare runs take about as many steps as a full run, so both average over the same
    fluctuations. ``train_loop_efficiency_cpu_time`` is the same in process CPU time;
    ``train_loop_efficiency_without_validation`` leaves the validation passes out of the full
    run's time (from the history's ``val_seconds``), to show what the loop costs around them;
    ``train_validation_time_share`` is the validation passes' share of the full run's time.
    Quick mode is a smoke test: one short epoch is dominated by one-time costs.
    """
    n, epochs, repeats = (128, 1, 1) if quick else (2048, 2, 3)
    steps = max(1, int(0.9 * n * epochs) // 64)  # bare runs about as long as the full ones
    config = ModelConfig(ndim=3, box_size_px=32)
    ratios, cpu_ratios, no_val_ratios, bare_rates, val_shares = [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        star = write_synthetic(Path(tmp) / "data", n, 32, 3)
        before = _bare_samples_per_s(config, 64, steps)
        for repeat in range(repeats):
            out = Path(tmp) / f"run{repeat}"
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            summary = _train(star, config, epochs, out)
            wall, cpu = time.perf_counter() - start_wall, time.process_time() - start_cpu
            after = _bare_samples_per_s(config, 64, steps)
            bare_wall, bare_cpu = (before[0] + after[0]) / 2, (before[1] + after[1]) / 2
            val_seconds = pd.read_csv(out / "history.tsv", sep="\t")["val_seconds"].sum()
            n_samples = summary["n_train"] * epochs
            ratios.append(n_samples / wall / bare_wall)
            cpu_ratios.append(n_samples / cpu / bare_cpu)
            no_val_ratios.append(n_samples / (wall - val_seconds) / bare_wall)
            bare_rates.append(bare_wall)
            val_shares.append(val_seconds / wall)
            before = after
    medians = {
        "train_loop_efficiency": (ratios, "ratio"),
        "train_loop_efficiency_cpu_time": (cpu_ratios, "ratio"),
        "train_loop_efficiency_without_validation": (no_val_ratios, "ratio"),
        "train_validation_time_share": (val_shares, "ratio"),
        "train_bare_samples_per_s_3d32": (bare_rates, "samples/s"),
    }
    return [
        {"name": name, "value": float(np.median(values)), "unit": unit}
        for name, (values, unit) in medians.items()
    ]


STARTUP_CHILD = """
import json, sys
from pathlib import Path
from cryoavae import particles
from cryoavae.model.config import ModelConfig
from cryoavae.train import TrainingConfig, train_model
import numpy as np
star, out = Path(sys.argv[1]), Path(sys.argv[2])
table = particles.read_particle_table(star)
images = particles.ParticleImages(table, star, 2)
summary = train_model(
    table, images, np.eye(5) * 0.5 + 0.5, ModelConfig(ndim=2, box_size_px=64),
    TrainingConfig(epochs=1, device="cpu"), seed=0, checkpoint_path=out / "model.pt",
    history_path=out / "history.tsv", work_dir=out / "work", threads=int(sys.argv[3]),
)
# VmHWM, not ru_maxrss: the latter keeps the parent's peak across fork + exec
peak_kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
summary["peak_rss_mb"] = peak_kb / 1024
print(json.dumps(summary))
"""


def bench_startup(quick: bool = False) -> list[dict]:
    """``train_startup_seconds_10k``: process start to the first training step on 10^4 2-D 64^2
    particles in 10 .mrcs shards (default model, one epoch); ``train_peak_rss_mb_10k`` for the
    same process. Quick mode uses 10^3 particles (the names keep ``10k``)."""
    n = 1000 if quick else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        star = write_synthetic(Path(tmp) / "data", n, 64, 2, n_shards=10)
        src = Path(__file__).resolve().parents[1] / "src"
        result = subprocess.run(
            [sys.executable, "-c", STARTUP_CHILD, str(star), str(Path(tmp) / "run"), str(THREADS)],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONPATH": str(src)},
        )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    return [
        {"name": "train_startup_seconds_10k", "value": summary["startup_seconds"], "unit": "s"},
        {"name": "train_peak_rss_mb_10k", "value": summary["peak_rss_mb"], "unit": "MB"},
    ]


BENCHMARKS = (bench_throughput, bench_loop_efficiency, bench_startup)


def run(quick: bool = False) -> list[dict]:
    """Every training figure, as ``benchmarks/run.py`` expects."""
    return [row for bench in BENCHMARKS for row in bench(quick)]


if __name__ == "__main__":
    quick = "--quick" in sys.argv
    for bench in BENCHMARKS:
        for row in bench(quick):
            print(json.dumps(row), flush=True)
