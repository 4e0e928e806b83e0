"""Your own particles at scale: peak memory of a STAR study's particle stages at 10^3 and 10^5.

A STAR file lists ``n`` particles of 32^3 stored as ONE stack (written a chunk at a time, so the
benchmark itself stays small). Each stage runs in a fresh process and reports its own peak RSS
(``VmHWM``): the import (table + validation of every file), one epoch of training (streamed
batches), and embedding every particle. The goal: the 10^5 study within 300 MB of the 10^3 one,
i.e. the particles are never held in memory.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import starfile

from cryoavae import particles as P

BOX = 32
CHUNK = 2048

STAGES = """
import json, sys
from pathlib import Path
import numpy as np
from cryoavae import particles as P
stage, root = sys.argv[1], Path(sys.argv[2])
ours = root / "study" / "particles.star"
if stage == "import":
    from cryoavae.sources.star import StarSourceConfig, import_star_particles
    import_star_particles(root / "user.star", ["a", "b", "c"], ["c"], StarSourceConfig(), 0, ours)
elif stage == "train":
    from cryoavae.model.config import ModelConfig
    from cryoavae.train import TrainingConfig, train_model
    table = P.read_particle_table(ours)
    train_model(table, P.ParticleImages(table, ours), np.eye(3), ModelConfig(box_size_px=32),
                TrainingConfig(epochs=1, batch_size=256), seed=0,
                checkpoint_path=root / "model.pt", history_path=root / "history.tsv",
                work_dir=root / "work", threads=2)
else:
    from cryoavae.inference.embed import embed_particles
    table = P.read_particle_table(ours)
    latents = embed_particles(root / "model.pt", table, P.ParticleImages(table, ours))
    assert len(latents) == len(table)
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(json.dumps({"peak_rss_mb": int(line.split()[1]) / 1024}))
"""


def write_user_study(root: Path, n: int) -> None:
    """``root/user.star`` over one stack of ``n`` noisy volumes, three classes."""
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True)
    with P.stack_writer(root / "data" / "all.mrcs", n, (BOX, BOX, BOX), 10.0) as out:
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            out.write(start, rng.standard_normal((size, BOX, BOX, BOX), dtype=np.float32))
    refs = np.char.add(np.char.zfill((np.arange(n) + 1).astype(str), 6), "@data/all.mrcs")
    table = pd.DataFrame({P.IMAGE: refs, P.CLASS_NUMBER: np.arange(n) % 3 + 1})
    starfile.write({"particles": table}, root / "user.star")


def peak_rss_mb(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_user_study(root, n)
        peaks = {}
        for stage in ("import", "train", "embed"):
            done = subprocess.run(
                [sys.executable, "-c", STAGES, stage, str(root)],
                capture_output=True,
                text=True,
                check=True,
            )
            peaks[stage] = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    return peaks


def _mb(name: str, value: float) -> dict:
    return {"name": name, "value": value, "unit": "MB"}


def run(quick: bool) -> list[dict]:
    small, large = (300, 3000) if quick else (1000, 100_000)
    figures = []
    worst = {}
    for n in (small, large):
        peaks = peak_rss_mb(n)
        worst[n] = max(peaks.values())
        tag = f"{n:.0e}".replace("+0", "").replace("+", "")
        for stage, value in peaks.items():
            figures.append(
                {"name": f"star_{stage}_peak_rss_mb_{tag}", "value": value, "unit": "MB"}
            )
        figures.append({"name": f"star_source_peak_rss_mb_{tag}", "value": worst[n], "unit": "MB"})
    figures.append(
        {
            "name": "star_source_peak_rss_growth_mb",
            "value": worst[large] - worst[small],
            "unit": "MB",
        }
    )
    return figures


if __name__ == "__main__":
    for figure in run(quick="--quick" in sys.argv):
        print(json.dumps(figure))
