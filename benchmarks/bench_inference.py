"""Inference benchmark: particles embedded per second (the default model, 32^3, this CPU).

Embedding streams the particles from their stack in batches of 512, reading the next batch while
the encoder runs on this one, under ``torch.inference_mode`` (:func:`cryoavae.inference.embed`).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cryoavae import particles as P
from cryoavae.inference.embed import embed_particles
from cryoavae.model.config import ModelConfig
from cryoavae.model.vae import build_model

BOX = 32


def embed_particles_per_s_32(quick: bool) -> list[dict]:
    n = 1000 if quick else 10_000
    repeats = 2 if quick else 5
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        rng = np.random.default_rng(0)
        with P.stack_writer(root / "p.mrcs", n, (BOX,) * 3, 10.0) as out:
            for start in range(0, n, 1000):
                size = min(1000, n - start)
                out.write(start, rng.standard_normal((size, BOX, BOX, BOX), dtype=np.float32))
        splits = np.array(["train"] * n)
        table = P.particle_table("p.mrcs", np.ones(n, int), np.array(["a"] * n), splits)
        P.write_particle_table(root / "p.star", table)
        config = ModelConfig(box_size_px=BOX)
        model = build_model(config, seed=0)
        state = {k: v.clone() for k, v in model.state_dict().items()}
        torch.save({"model_config": dict(config.__dict__), "state_dict": state}, root / "m.pt")
        images = P.ParticleImages(table, root / "p.star")
        embed_particles(root / "m.pt", table.iloc[:600], images)  # warm: page cache, oneDNN
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            embed_particles(root / "m.pt", table, images)
            rates.append(n / (time.perf_counter() - start))
    return [{"name": "embed_particles_per_s_32", "value": statistics.median(rates), "unit": "1/s"}]


def run(quick: bool) -> list[dict]:
    return embed_particles_per_s_32(quick)
