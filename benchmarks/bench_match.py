"""Template-matching benchmark: particles matched per second, 32^3, against 8 templates.

The particles are the templates turned at random and moved by about a voxel (sd 10 Å per axis at
10 Å per voxel, as picks bring them), measured through a +-60 degree wedge at SNR 1. Each
particle is matched against its own template (``orientation.assignment: nearest_centre``) on the
project's default schedule (10 degree global grid at a quarter of the band, three refinements),
with the translation search (``max_shift_px`` 2) and without it; 1,024 particles through one
matcher in the batches a study makes (:func:`~cryoavae.orientation.matching.match_batches`:
256 at a time, each template's particles together). The maps are centred on their mass, as a
study's templates are (:func:`cryoavae.orientation.averaging.centre_on_mass`).

``match_efficiency_32`` divides the time of the bare work the search cannot avoid, the same
number of template x particle correlations as batched matrix products over coefficients already
at hand (no sampling, no bookkeeping), by the matcher's time, measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import time

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from cryoavae.geometry.volume_rotation import padded_spectra, rotate_spectra
from cryoavae.geometry.wedge import missing_wedge_mask
from cryoavae.orientation.averaging import centre_on_mass
from cryoavae.orientation.fourier import shift_grid
from cryoavae.orientation.matcher import GRID_CANDIDATES, RANKING_SHIFTS, TemplateMatcher
from cryoavae.orientation.matching import match_batches

BOX = 32
TEMPLATES = 8
MAX_SHIFT_PX = 2.0
DEVICE = os.environ.get("CRYOAVAE_BENCH_DEVICE", "cpu")  # benchmarks/device_check.sh: cuda


def _maps(rng: np.random.Generator) -> np.ndarray:
    """Eight asymmetric maps of Gaussian blobs, ``(8, 32, 32, 32)``."""
    c = np.arange(BOX) - BOX // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    maps = np.zeros((TEMPLATES, BOX, BOX, BOX), np.float32)
    for m in maps:
        for centre, width in zip(rng.uniform(-8, 8, (9, 3)), rng.uniform(1.2, 2.5, 9), strict=True):
            m += np.exp(
                -((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
                / (2 * width**2)
            )
    return centre_on_mass(maps)


def _particles(maps: np.ndarray, n: int, rng: np.random.Generator):
    which = np.arange(n) % TEMPLATES
    truth = Rotation.random(n, random_state=rng).as_matrix()
    shifts = rng.normal(0.0, 1.0, (n, 3)).clip(-MAX_SHIFT_PX / 2, MAX_SHIFT_PX / 2)
    spectra = rotate_spectra(
        padded_spectra(maps), truth, BOX, source_index=which, shifts_px=shifts
    ) * missing_wedge_mask(BOX, 60.0)
    volumes = np.fft.irfftn(spectra, s=(BOX,) * 3, axes=(1, 2, 3)).astype(np.float32)
    sd = np.sqrt(volumes.reshape(n, -1).var(axis=1))
    volumes += (sd[:, None, None, None] * rng.standard_normal(volumes.shape)).astype(np.float32)
    return volumes, which


def _median_seconds(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        if DEVICE != "cpu":
            torch.cuda.synchronize()  # the work is queued on the device until then
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _bare_seconds(matcher: TemplateMatcher, n: int, repeats: int) -> float:
    """The correlations the matcher makes, as plain batched products of ready coefficients: the
    global grid (particles at a few shifts against every rotation, low band), the best grid
    rotations at every shift, and the refinements (each level's lattice and fitted peak per
    particle on its band, and the shifts after each)."""
    low = matcher.low
    r = len(matcher.grid)
    ranked = min(RANKING_SHIFTS, len(matcher.shifts))
    kept = min(GRID_CANDIDATES, r)

    def randn(*shape):
        return torch.randn(*shape, device=DEVICE)

    particles = randn(n * ranked, 2 * len(low.flat))
    rotated = randn(min(r, 2048), 2 * len(low.flat))
    shifted_particles = randn(n, len(matcher.shifts), 2 * len(low.flat))
    candidates = randn(n, 2 * len(low.flat), kept)
    levels = []
    lattice = len(shift_grid(np.sqrt(3) * 0.5 + 1e-6, 0.5)) if matcher.max_shift_px > 0 else 0
    for level, (rotations, band) in enumerate(zip(matcher.local, matcher.level_bands, strict=True)):
        k = len(band.flat)
        steps = (2 if level == 0 else 1) * lattice
        levels.append((randn(n, len(rotations) + 1, 2 * k), randn(n, 2 * k, 1), randn(n, k)))
        levels[-1] += (randn(2 * k, steps),)

    def work():
        for _ in range(0, r, len(rotated)):
            particles @ rotated.T
        torch.bmm(shifted_particles, candidates)
        for refined, x, q, phases in levels:
            torch.bmm(refined, x)
            torch.cat([q, q], -1) @ phases

    work()
    return _median_seconds(work, repeats)


def match_figures(quick: bool) -> list[dict]:
    n = 16 if quick else 1024
    repeats = 1 if quick else 3
    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    maps = _maps(rng)
    volumes, which = _particles(maps, n, rng)
    step = 20.0 if quick else 10.0
    figures = []
    for label, max_shift in (("", MAX_SHIFT_PX), ("_centred", 0.0)):

        def match_all(max_shift=max_shift, n_batches=None):
            """A study's way: one matcher, the particles in batches (its template grid sampled
            once and kept); ``n_batches``: only the first so many."""
            matcher = TemplateMatcher(
                maps, 60.0, None, step, 3, max_shift_px=max_shift, device=DEVICE
            )
            for rows in match_batches(which, by_template=True)[:n_batches]:
                matcher.match(volumes[rows], which[rows])
            return matcher

        matcher = match_all(n_batches=1)  # warm: allocations, thread pool
        seconds = _median_seconds(match_all, repeats)
        figures.append(
            {"name": f"match_particles_per_s_32{label}", "value": n / seconds, "unit": "1/s"}
        )
        if max_shift > 0:
            bare = _bare_seconds(matcher, n, repeats)
            figures.append({"name": "match_efficiency_32", "value": bare / seconds, "unit": ""})
    return figures


def run(quick: bool) -> list[dict]:
    return match_figures(quick)
