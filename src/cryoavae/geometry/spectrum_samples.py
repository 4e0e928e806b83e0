"""Turned spectra sampled for a search: the coefficients themselves, or only the sums a score
or a Gauss-Newton step reads, added up as they are sampled.

Each samples a padded spectrum (:func:`~.volume_rotation.padded_spectra`) at ``A^T f`` for
rotations ``A`` and frequencies ``f`` (x, y, z, cycles per box, inside
:func:`~.volume_rotation.spectrum_band_limit`), trilinear, with the simulator's own kernel
(:func:`~.volume_rotation.rotate_spectra`'s), without the phase that moves the origin to voxel 0:
a search multiplies that into its particles once instead. Why sums: a search that turns a
template by many rotations per particle and keeps none of them would otherwise write every
sample out and read it back, at more cost than the sampling (the template's spectrum stays in
cache, the samples do not).
"""

from __future__ import annotations

import numpy as np

from cryoavae.geometry._volume_kernels import (
    probe_sums_kernel,
    rotated_parts_kernel,
    rotated_scores_kernel,
)

__all__ = ["PROBE_PAIRS", "PROBE_SUMS", "probe_sums", "rotated_parts", "rotated_scores"]


def rotated_parts(
    spectrum: np.ndarray, rotations: np.ndarray, frequencies: np.ndarray
) -> np.ndarray:
    """Real and imaginary parts ``(2, r, K)`` float32 of one padded spectrum ``(P, P, P)``
    turned by each of ``rotations`` ``(r, 3, 3)``, at each of ``frequencies`` ``(K, 3)``."""
    rotations = np.ascontiguousarray(np.asarray(rotations).reshape(-1, 3, 3), dtype=np.float32)
    frequencies = np.ascontiguousarray(frequencies, dtype=np.float32)
    parts = np.empty((2, len(rotations), len(frequencies)), dtype=np.float32)
    rotated_parts_kernel(spectrum, rotations, frequencies, parts[0], parts[1])
    return parts


def rotated_scores(
    spectrum: np.ndarray,
    rotations: np.ndarray,
    frequencies: np.ndarray,
    real: np.ndarray,
    imag: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For each row ``i`` of ``real``, ``imag``, ``weight`` ``(n, K)`` and each of its rotations
    ``rotations[i]`` ``(n, m, 3, 3)``: the sums over ``frequencies`` of the turned spectrum's
    samples (:func:`rotated_parts`) ``t`` times the row, ``Re t * real + Im t * imag``, and of
    ``|t|^2 * weight``; each ``(n, m)`` float32."""
    rotations, frequencies, *rows = _float32(rotations, frequencies, real, imag, weight)
    n, m = rotations.shape[:2]
    cross = np.empty((n, m), dtype=np.float32)
    power = np.empty((n, m), dtype=np.float32)
    rotated_scores_kernel(spectrum, rotations, frequencies, *rows, cross, power)
    return cross, power


#: The probe pairs ``(a, b)`` of the last six sums, as two index lists: the diagonal first.
PROBE_PAIRS = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])

#: What :func:`probe_sums` adds up per row, ``t`` the first rotation's sample, ``d_a`` probe
#: ``a``'s minus it, ``x`` the row (``real + i imag``), ``w`` its weight, ``<u, v>`` the real part
#: of ``u conj(v)``: everything a Gauss-Newton step needs.
PROBE_SUMS = (
    "<t,x>",
    "w<t,t>",
    *(f"<d{a},x>" for a in range(3)),
    *(f"w<d{a},t>" for a in range(3)),
    *(f"w<d{a},d{b}>" for a, b in zip(*PROBE_PAIRS, strict=True)),
)


def probe_sums(
    spectrum: np.ndarray,
    rotations: np.ndarray,
    frequencies: np.ndarray,
    real: np.ndarray,
    imag: np.ndarray,
    weight: np.ndarray,
) -> np.ndarray:
    """For each row ``i`` of ``real``, ``imag``, ``weight`` ``(n, K)``, the sums
    :data:`PROBE_SUMS` ``(n, 14)`` float64 over ``frequencies`` of the spectrum turned by
    ``rotations[i]`` ``(n, 4, 3, 3)``: a rotation and three probes near it. The differences
    ``d_a`` are taken per coefficient, before any sum: they are small beside the samples, and a
    difference of two sums would lose them to round-off."""
    rotations, frequencies, *rows = _float32(rotations, frequencies, real, imag, weight)
    sums = np.empty((len(rotations), len(PROBE_SUMS)), dtype=np.float64)
    probe_sums_kernel(spectrum, rotations, frequencies, *rows, sums)
    return sums


def _float32(*arrays) -> list[np.ndarray]:
    """Each array as the kernels read it: contiguous float32."""
    return [np.ascontiguousarray(a, dtype=np.float32) for a in arrays]
