"""Subtomogram averages from the model's orientations, and how good they are (FSC).

The test a cryo-ET user would apply to a pose: turn every particle of a class back by its
orientation and average. Each particle ``x_i`` is its class's reference turned actively by
``A_i`` (:mod:`cryoavae.orientations`), so ``rotate(x_i, A_i^T)`` is the reference again, plus
noise; the mean of those is the class average. With the missing wedge (a tilt series about y
through ``±tilt_max_deg``) each particle lacks a wedge of Fourier space, turned with it: the
average is then formed in Fourier space, every frequency divided by the number of particles
that measured it (missing-wedge weighting), not by the number of particles.

The model's orientations are in its own canonical frame; when the true orientations are known
the frame is aligned with the reference's first (:func:`~cryoavae.orientations.align_rotations`
on the class's training particles), so the average can be compared with the class's map, and
with the average made from the true orientations (the best these particles allow).
"""

from __future__ import annotations

import numpy as np

from ..particles import ParticleImages
from ..simulate.rotation import rotate_volumes
from ..simulate.wedge import missing_wedge_mask

BATCH = 128


def class_average(
    images: ParticleImages,
    rows: np.ndarray,
    rotations: np.ndarray,
    tilt_max_deg: float | None = None,
) -> np.ndarray:
    """The average ``(d, d, d)`` of particles ``rows`` turned back by ``rotations`` ``(n, 3, 3)``
    (RELION's ``A`` of each), missing-wedge weighted when ``tilt_max_deg`` is given."""
    d = images.shape[-1]
    spectrum = np.zeros((d, d, d), dtype=np.complex128)
    weight = np.zeros((d, d, d))
    wedge = None
    if tilt_max_deg is not None:  # measured frequencies, centred on voxel d // 2 like a volume
        wedge = np.fft.fftshift(missing_wedge_mask(d, tilt_max_deg, rfft=False)).astype(np.float32)
    for start in range(0, len(rows), BATCH):
        back = np.transpose(rotations[start : start + BATCH], (0, 2, 1))  # A^T
        volumes = rotate_volumes(images.gather(rows[start : start + BATCH]), back)
        spectrum += np.fft.fftshift(np.fft.fftn(volumes, axes=(1, 2, 3)), axes=(1, 2, 3)).sum(0)
        if wedge is None:
            weight += len(back)
        else:
            weight += rotate_volumes(wedge, back, source_index=np.zeros(len(back), int)).sum(0)
    spectrum /= np.maximum(weight, 1.0)
    return np.fft.ifftn(np.fft.ifftshift(spectrum)).real.astype(np.float32)


def fsc(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fourier shell correlation of two volumes ``(d, d, d)``: shell frequencies (cycles per
    voxel, shells 1 .. d//2) and the correlation in each."""
    d = a.shape[-1]
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    k = np.fft.fftfreq(d) * d
    radius = np.rint(np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2))
    shell = radius.astype(np.int64).ravel()
    cross = np.bincount(shell, (fa * np.conj(fb)).real.ravel())
    power_a = np.bincount(shell, (np.abs(fa) ** 2).ravel())
    power_b = np.bincount(shell, (np.abs(fb) ** 2).ravel())
    shells = np.arange(1, d // 2 + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = cross[shells] / np.sqrt(power_a[shells] * power_b[shells])
    return shells / d, np.nan_to_num(curve)


def resolution_angstrom(
    frequency: np.ndarray, curve: np.ndarray, threshold: float, voxel_size_angstrom: float
) -> float:
    """The resolution (Å) where ``curve`` first drops below ``threshold``, linearly between
    shells; the Nyquist limit when it never does, ``inf`` when the first shell is below."""
    below = np.flatnonzero(curve < threshold)
    if len(below) == 0:
        return 2.0 * voxel_size_angstrom
    i = int(below[0])
    if i == 0:
        return float("inf")
    f0, f1, c0, c1 = frequency[i - 1], frequency[i], curve[i - 1], curve[i]
    crossing = f0 + (c0 - threshold) / (c0 - c1) * (f1 - f0)
    return float(voxel_size_angstrom / crossing)
