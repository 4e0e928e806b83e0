"""2-D character set benchmark: images rendered, rotated, normalised and written per second."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from cryoavae.sources.characters import CharacterConfig, generate_characters, glyph_affinity


def generate_characters_per_s_32(quick: bool) -> list[dict]:
    cfg = CharacterConfig(
        particles_per_class=100 if quick else 500,
        unseen_particles_per_class=50 if quick else 200,
        noise_std=0.5,
    )
    n = len(cfg.seen) * cfg.particles_per_class + len(cfg.unseen) * cfg.unseen_particles_per_class
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(3 if quick else 5):
            start = time.perf_counter()
            generate_characters(cfg, seed, Path(tmp) / "c.mrcs", Path(tmp) / "c.star")
            rates.append(n / (time.perf_counter() - start))
    return [
        {"name": "generate_characters_per_s_32", "value": statistics.median(rates), "unit": "1/s"}
    ]


def glyph_affinity_seconds(quick: bool) -> list[dict]:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        glyph_affinity(CharacterConfig(), n_angles=90 if quick else 360)
        times.append(time.perf_counter() - start)
    return [{"name": "glyph_affinity_seconds", "value": statistics.median(times), "unit": "s"}]


def run(quick: bool) -> list[dict]:
    return generate_characters_per_s_32(quick) + glyph_affinity_seconds(quick)
