"""Gaussian noise at a given SNR, and per-particle normalisation.

Definitions:

- ``SNR = var(signal) / var(noise)``, both measured over the whole box of the final particle.
- Noise is white Gaussian noise added *before* the missing wedge (as shot noise enters the tilt
  images), so the subtomogram has no noise in the missing wedge either. It is drawn directly in
  Fourier space, only for the coefficients that survive the wedge, which saves an FFT and a third
  of the random numbers per particle.
- Variances come from Parseval's theorem on the rfftn half-spectrum (:func:`spectral_variance`);
  z-scoring (zero mean, unit variance per particle) likewise: zero the DC term, then scale.

A real white noise volume's rfftn spectrum has independent complex Gaussian coefficients, except
on the ``k_x = 0`` (and, for even boxes, Nyquist) planes, which hold both ``k`` and ``-k``: there
``X(-k) = conj(X(k))``, and self-mirrored points are real. :func:`hermitian_noise_slots` maps each
coefficient to an independent draw ("slot"), its conjugate, or ``sqrt(2)`` times its real part, so
that every coefficient has the same variance and ``irfftn`` sees a consistent spectrum.

Each particle's noise comes from its own ``torch.Generator`` seeded with that particle's seed, so a
particle's noise does not depend on batching or thread count.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from cryoavae.geometry._volume_kernels import CONJUGATE, DIRECT, REAL

__all__ = [
    "DIRECT",
    "CONJUGATE",
    "REAL",
    "draw_noise",
    "hermitian_noise_slots",
    "noise_spectrum",
    "parseval_weights",
    "spectral_variance",
    "zscore",
]


def parseval_weights(box_size_px: int) -> np.ndarray:
    """Multiplicity ``(d//2 + 1,)`` of each rfft ``k_x`` column in the full spectrum (1 or 2)."""
    d = int(box_size_px)
    weights = np.full(d // 2 + 1, 2.0, dtype=np.float32)
    weights[0] = 1.0
    if d % 2 == 0:
        weights[-1] = 1.0  # the Nyquist column is its own mirror
    return weights


def spectral_variance(spectrum: np.ndarray, box_size_px: int) -> np.ndarray:
    """Variance over the box of ``irfftn(spectrum)`` for spectra ``(..., d, d, d//2 + 1)``."""
    d = int(box_size_px)
    power = (np.abs(spectrum) ** 2 * parseval_weights(d)).sum(axis=(-3, -2, -1))
    power = power - np.abs(spectrum[..., 0, 0, 0]) ** 2  # the mean does not count
    return power / float(d) ** 6


def hermitian_noise_slots(
    box_size_px: int, flat_index: np.ndarray
) -> tuple[np.ndarray, np.ndarray, int]:
    """Assign rfftn coefficients (flat indices into ``(d, d, d//2 + 1)``) to independent draws.

    The set must contain the mirror ``-k`` of each of its points on the self-mirrored ``k_x``
    planes (a wedge mask and a sphere do). Returns ``(slot (K,) int64, mode (K,) int8, n_slots)``:
    coefficient ``j`` is ``z[slot[j]]`` transformed by ``mode[j]`` (:data:`DIRECT`,
    :data:`CONJUGATE` or :data:`REAL`).
    """
    d = int(box_size_px)
    h = d // 2 + 1
    flat_index = np.asarray(flat_index, dtype=np.int64)
    kz, ky, kx = np.unravel_index(flat_index, (d, d, h))
    mirrored_plane = (kx == 0) | ((d % 2 == 0) & (kx == d // 2))
    mirror = np.ravel_multi_index(((-kz) % d, (-ky) % d, kx), (d, d, h))
    if not np.isin(mirror[mirrored_plane], flat_index).all():
        raise ValueError("hermitian_noise_slots: the coefficient set is not closed under k -> -k")
    mode = np.full(len(flat_index), DIRECT, dtype=np.int8)
    mode[mirrored_plane & (mirror == flat_index)] = REAL
    conjugate = mirrored_plane & (mirror < flat_index)  # the partner with the smaller index owns it
    mode[conjugate] = CONJUGATE
    owners = np.flatnonzero(~conjugate)
    slot = np.empty(len(flat_index), dtype=np.int64)
    slot[owners] = np.arange(len(owners))
    order = np.argsort(flat_index)
    position = np.searchsorted(flat_index[order], mirror[conjugate])
    partner = order[position]
    slot[conjugate] = slot[partner]
    return slot, mode, len(owners)


def draw_noise(n_slots: int, seeds: np.ndarray, threads: int = 1) -> np.ndarray:
    """Standard complex normal draws ``(n, n_slots)`` complex64 (``E|z|^2 = 1``), one row per seed.

    Row ``p`` depends only on ``seeds[p]``; ``threads`` Python threads draw in parallel (torch
    releases the GIL).
    """
    seeds = np.asarray(seeds, dtype=np.uint64)
    n = len(seeds)
    out = np.empty((n, n_slots), dtype=np.complex64)
    if n_slots == 0:
        return out
    components = torch.from_numpy(out.view(np.float32))  # (n, 2 n_slots)

    def draw(first: int, last: int) -> None:
        generator = torch.Generator()
        for p in range(first, last):
            generator.manual_seed(int(seeds[p]))
            torch.randn((2 * n_slots,), generator=generator, out=components[p])

    bounds = np.linspace(0, n, max(1, min(int(threads), n)) + 1).astype(int)
    if len(bounds) > 2:
        with ThreadPoolExecutor(len(bounds) - 1) as pool:
            list(pool.map(draw, bounds[:-1], bounds[1:]))
    else:
        draw(0, n)
    out *= np.float32(math.sqrt(0.5))
    return out


def noise_spectrum(
    box_size_px: int, seeds: np.ndarray, keep: np.ndarray | None = None, threads: int = 1
) -> np.ndarray:
    """rfftn spectra ``(n, d, d, d//2 + 1)`` complex64 of unit-variance real white noise.

    Distributed like ``np.fft.rfftn(standard_normal((d, d, d)))`` on the coefficients in ``keep``
    (a ``(d, d, d//2 + 1)`` mask closed under ``k -> -k``; default all) and zero elsewhere, DC
    included. This is the reference the simulator's fused pass follows.
    """
    d = int(box_size_px)
    h = d // 2 + 1
    keep = np.ones((d, d, h), dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    keep = keep.copy()
    keep[0, 0, 0] = False
    flat = np.flatnonzero(keep)
    slot, mode, n_slots = hermitian_noise_slots(d, flat)
    z = draw_noise(n_slots, seeds, threads)[:, slot]  # (n, K)
    values = np.where(mode == CONJUGATE, np.conj(z), z)
    values = np.where(mode == REAL, np.sqrt(2.0) * z.real, values)
    out = np.zeros((len(z), d * d * h), dtype=np.complex64)
    out[:, flat] = values * np.float32(math.sqrt(d**3))
    return out.reshape(len(z), d, d, h)


def zscore(images: np.ndarray) -> np.ndarray:
    """Per-image zero mean and unit variance over all but the first axis (float32 copy)."""
    images = np.asarray(images, dtype=np.float32)
    axes = tuple(range(1, images.ndim))
    mean = images.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = images.std(axis=axes, keepdims=True, dtype=np.float64)
    return ((images - mean) / np.where(std > 0, std, 1.0)).astype(np.float32)
