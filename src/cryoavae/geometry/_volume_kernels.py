"""Compiled inner loops (numba) that rotate volumes and spectra, in one file.

numba's on-disk cache is invalidated only when the file defining a cached function changes, not
when a function it calls from another file does; keeping every kernel and helper here means an
edit anywhere in them recompiles them all. That is why the simulator's fused pass (rotation, CTF,
noise and normalisation in one loop, ``simulate_spectra_kernel``) lives here beside the rotation
kernels it is built from. The public, documented entry points are in
:mod:`cryoavae.geometry.volume_rotation` (``rotate_volumes``, ``rotate_spectra``) and
:mod:`cryoavae.sources.simulate.pipeline` (``simulate_batch``); conventions are documented there.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Oversampling of the Fourier-space map (RELION's default padding factor).
PAD_FACTOR = 2
#: Zero voxels added around each volume so every trilinear neighbour index is in range.
PAD_VOXELS = 2
#: Outward margin (voxels) on the row clipping, so round-off never drops a contributing voxel.
_CLIP_MARGIN = 1e-3
#: How a Fourier coefficient takes its noise draw ``z``: ``z``, ``conj(z)``, ``sqrt(2) Re z``.
DIRECT, CONJUGATE, REAL = 0, 1, 2


@numba.njit(cache=True, inline="always")
def _clip_row(base, slope, lo, hi, first, last):
    """Narrow ``[first, last]`` to the ``i`` with ``lo <= base + slope * i <= hi``."""
    if slope > 1e-9:
        first = max(first, math.ceil((lo - base) / slope))
        last = min(last, math.floor((hi - base) / slope))
    elif slope < -1e-9:
        first = max(first, math.ceil((hi - base) / slope))
        last = min(last, math.floor((lo - base) / slope))
    elif base < lo or base > hi:
        last = first - 1
    return first, last


@numba.njit(parallel=True, fastmath=True, cache=True)
def rotate_volumes_kernel(padded, low, high, source_index, rotations, shifts, out):
    # padded: (m, P, P, P) float32, P = d + 2 * PAD_VOXELS; out: (n, d, d, d) float32.
    n, d = out.shape[0], out.shape[1]
    size = padded.shape[1]
    c = d // 2
    for p in numba.prange(n):
        vol = padded[source_index[p]].ravel()
        q = rotations[p]
        lo = low[source_index[p]]
        hi = high[source_index[p]]
        # Source sample s lies in (lo - 1, hi + 1) on each axis when any neighbour is nonzero.
        lo_x = lo[0] - 1.0 - _CLIP_MARGIN + PAD_VOXELS
        lo_y = lo[1] - 1.0 - _CLIP_MARGIN + PAD_VOXELS
        lo_z = lo[2] - 1.0 - _CLIP_MARGIN + PAD_VOXELS
        hi_x = hi[0] + 1.0 + _CLIP_MARGIN + PAD_VOXELS
        hi_y = hi[1] + 1.0 + _CLIP_MARGIN + PAD_VOXELS
        hi_z = hi[2] + 1.0 + _CLIP_MARGIN + PAD_VOXELS
        cx = c + shifts[p, 0]
        # Source = R^T (r - c - t) + c: row a of R^T is column a of R.
        ax = np.float32(q[0, 0])
        ay = np.float32(q[0, 1])
        az = np.float32(q[0, 2])
        for k in range(d):
            z = k - c - shifts[p, 2]
            for j in range(d):
                y = j - c - shifts[p, 1]
                # Padded source coordinates at x = 0 (i = cx), in (x, y, z).
                bx = q[1, 0] * y + q[2, 0] * z + c + PAD_VOXELS
                by = q[1, 1] * y + q[2, 1] * z + c + PAD_VOXELS
                bz = q[1, 2] * y + q[2, 2] * z + c + PAD_VOXELS
                row = out[p, k, j]
                row[:] = 0.0
                if lo[0] > hi[0]:
                    continue
                first, last = 0, d - 1
                first, last = _clip_row(bx - q[0, 0] * cx, q[0, 0], lo_x, hi_x, first, last)
                first, last = _clip_row(by - q[0, 1] * cx, q[0, 1], lo_y, hi_y, first, last)
                first, last = _clip_row(bz - q[0, 2] * cx, q[0, 2], lo_z, hi_z, first, last)
                fbx, fby, fbz = np.float32(bx), np.float32(by), np.float32(bz)
                for i in range(first, last + 1):
                    x = np.float32(i - cx)
                    sx = fbx + ax * x
                    sy = fby + ay * x
                    sz = fbz + az * x
                    ix, iy, iz = int(sx), int(sy), int(sz)  # sources are > 0: int() is floor
                    fx, fy, fz = sx - ix, sy - iy, sz - iz
                    b0 = (iz * size + iy) * size + ix
                    b1 = b0 + size * size
                    v00 = vol[b0] + (vol[b0 + 1] - vol[b0]) * fx
                    v01 = vol[b0 + size] + (vol[b0 + size + 1] - vol[b0 + size]) * fx
                    v10 = vol[b1] + (vol[b1 + 1] - vol[b1]) * fx
                    v11 = vol[b1 + size] + (vol[b1 + size + 1] - vol[b1 + size]) * fx
                    v0 = v00 + (v01 - v00) * fy
                    v1 = v10 + (v11 - v10) * fy
                    row[i] = v0 + (v1 - v0) * fz


@numba.njit(cache=True)
def _shift_phase_tables(d, shift):
    """``exp(-2 pi i f t_a / d)`` at index ``f + d//2``, ``f`` in ``[-d//2, d//2]``: (3, d + 1).

    A shift by ``t`` voxels as a phase ramp; for integer shifts, an exact circular shift.
    """
    table = np.empty((3, d + 1), dtype=np.complex64)
    for a in range(3):
        for index in range(d + 1):
            angle = -2.0 * math.pi * (index - d // 2) * shift[a] / d
            table[a, index] = complex(math.cos(angle), math.sin(angle))
    return table


@numba.njit(cache=True, inline="always")
def _sample_rotated(spectrum, q, fx, fy, fz):
    """Trilinear sample of a padded spectrum ``(P, P, P)`` at ``A^T f`` (``q``: A, float32)."""
    half = spectrum.shape[0] // 2
    # (A^T f)_a = sum_b A[b, a] f_b; padded index = PAD_FACTOR * that + half (always > 0).
    sx = PAD_FACTOR * (q[0, 0] * fx + q[1, 0] * fy + q[2, 0] * fz) + half
    sy = PAD_FACTOR * (q[0, 1] * fx + q[1, 1] * fy + q[2, 1] * fz) + half
    sz = PAD_FACTOR * (q[0, 2] * fx + q[1, 2] * fy + q[2, 2] * fz) + half
    ix, iy, iz = int(sx), int(sy), int(sz)
    wx, wy, wz = np.float32(sx - ix), np.float32(sy - iy), np.float32(sz - iz)
    s00 = spectrum[iz, iy, ix] + (spectrum[iz, iy, ix + 1] - spectrum[iz, iy, ix]) * wx
    s01 = spectrum[iz, iy + 1, ix] + (spectrum[iz, iy + 1, ix + 1] - spectrum[iz, iy + 1, ix]) * wx
    s10 = spectrum[iz + 1, iy, ix] + (spectrum[iz + 1, iy, ix + 1] - spectrum[iz + 1, iy, ix]) * wx
    s11 = (
        spectrum[iz + 1, iy + 1, ix]
        + (spectrum[iz + 1, iy + 1, ix + 1] - spectrum[iz + 1, iy + 1, ix]) * wx
    )
    s0 = s00 + (s01 - s00) * wy
    s1 = s10 + (s11 - s10) * wy
    return s0 + (s1 - s0) * wz


@numba.njit(cache=True, inline="always")
def _rotated_coefficient(spectrum, q, frequency, centre_phase, shift_phases, shifted, c):
    """One output coefficient: the rotated sample, its phase origin moved to voxel 0, shifted."""
    fx, fy, fz = frequency[0], frequency[1], frequency[2]
    value = _sample_rotated(spectrum, q, np.float32(fx), np.float32(fy), np.float32(fz))
    value = value * centre_phase
    if shifted:
        value = value * (
            shift_phases[0, fx + c] * shift_phases[1, fy + c] * shift_phases[2, fz + c]
        )
    return value


@numba.njit(parallel=True, fastmath=True, cache=True)
def rotate_spectra_kernel(
    spectra, source_index, rotations, shifts, flat, frequencies, centre_phase, out, d
):
    c = d // 2
    for p in numba.prange(out.shape[0]):
        spectrum = spectra[source_index[p]]
        shift_phases = _shift_phase_tables(d, shifts[p])
        shifted = shifts[p, 0] != 0.0 or shifts[p, 1] != 0.0 or shifts[p, 2] != 0.0
        q = rotations[p].astype(np.float32)
        for j in range(len(flat)):
            out[p, flat[j]] = _rotated_coefficient(
                spectrum, q, frequencies[j], centre_phase[j], shift_phases, shifted, c
            )


@numba.njit(parallel=True, fastmath=True, cache=True)
def rotated_parts_kernel(spectrum, rotations, frequencies, real, imag):
    # spectrum: (P, P, P) complex64; rotations: (r, 3, 3) float32; frequencies: (K, 3) float32
    # (x, y, z, inside the band limit); real, imag: (r, K) float32. No centre phase.
    for p in numba.prange(rotations.shape[0]):
        q = rotations[p]
        for j in range(frequencies.shape[0]):
            value = _sample_rotated(
                spectrum, q, frequencies[j, 0], frequencies[j, 1], frequencies[j, 2]
            )
            real[p, j] = value.real
            imag[p, j] = value.imag


@numba.njit(parallel=True, fastmath=True, cache=True)
def rotated_scores_kernel(spectrum, rotations, frequencies, real, imag, weight, cross, power):
    # rotations: (n, m, 3, 3) float32; real, imag, weight: (n, K) float32 (particle n's
    # coefficients and the weight of a template's power); cross, power: (n, m) float32. The
    # samples of rotated_parts_kernel, summed against the particle's row as they are made.
    for p in numba.prange(rotations.shape[0]):
        for r in range(rotations.shape[1]):
            q = rotations[p, r]
            c = np.float32(0.0)
            w = np.float32(0.0)
            for j in range(frequencies.shape[0]):
                value = _sample_rotated(
                    spectrum, q, frequencies[j, 0], frequencies[j, 1], frequencies[j, 2]
                )
                c += value.real * real[p, j] + value.imag * imag[p, j]
                w += (value.real * value.real + value.imag * value.imag) * weight[p, j]
            cross[p, r] = c
            power[p, r] = w


@numba.njit(cache=True, inline="always")
def _dot(a, b):
    return a.real * b.real + a.imag * b.imag


@numba.njit(parallel=True, fastmath=True, cache=True)
def probe_sums_kernel(spectrum, rotations, frequencies, real, imag, weight, sums):
    # rotations: (n, 4, 3, 3) float32, a rotation and three probes near it; real, imag, weight:
    # (n, K) float32; sums: (n, 14) float64, in volume_rotation.PROBE_SUMS's order, d_a the
    # difference of probe a's sample and the first rotation's.
    for p in numba.prange(rotations.shape[0]):
        q0, q1, q2, q3 = rotations[p, 0], rotations[p, 1], rotations[p, 2], rotations[p, 3]
        acc = np.zeros(14, dtype=np.float64)
        for j in range(frequencies.shape[0]):
            fx, fy, fz = frequencies[j, 0], frequencies[j, 1], frequencies[j, 2]
            t = _sample_rotated(spectrum, q0, fx, fy, fz)
            a = _sample_rotated(spectrum, q1, fx, fy, fz) - t
            b = _sample_rotated(spectrum, q2, fx, fy, fz) - t
            c = _sample_rotated(spectrum, q3, fx, fy, fz) - t
            x = complex(real[p, j], imag[p, j])
            w = weight[p, j]
            acc[0] += _dot(t, x)
            acc[1] += w * _dot(t, t)
            acc[2] += _dot(a, x)
            acc[3] += _dot(b, x)
            acc[4] += _dot(c, x)
            acc[5] += w * _dot(a, t)
            acc[6] += w * _dot(b, t)
            acc[7] += w * _dot(c, t)
            acc[8] += w * _dot(a, a)
            acc[9] += w * _dot(b, b)
            acc[10] += w * _dot(c, c)
            acc[11] += w * _dot(a, b)
            acc[12] += w * _dot(a, c)
            acc[13] += w * _dot(b, c)
        sums[p, :] = acc


@numba.njit(cache=True, inline="always")
def _noise_value(noise, slot, mode):
    z = noise[slot]
    if mode == CONJUGATE:
        return np.conj(z)
    if mode == REAL:
        return np.complex64(math.sqrt(2.0) * z.real)
    return z


@numba.njit(parallel=True, fastmath=True, cache=True)
def simulate_spectra_kernel(
    spectra,
    class_index,
    rotations,
    shifts,
    flat,
    frequencies,
    centre_phase,
    k2_index,
    weight,
    slot,
    mode,
    ctf_table,
    noise,
    snr,
    with_noise,
    order,
    out,
    d,
):
    """Per particle: ``out = zscore_spectrum(W (C rotate(S) + sigma N))`` on the rfftn grid.

    Rotation (:func:`.rotation.rotate_spectra`), CTF (table lookup by ``|k|^2``), noise at SNR and
    normalisation in one pass; ``W`` is implicit: only measured coefficients are listed. ``sigma``
    makes ``var(W C rotate(S)) / var(sigma W N) = snr`` exactly for the drawn noise; variances
    come from Parseval's theorem, accumulated in float64. ``out``: (n, d * d * h) complex64.
    """
    n_signal = len(frequencies)
    n_coefficients = len(flat)
    volume = float(d) ** 3
    c = d // 2
    for i in numba.prange(len(order)):
        p = order[i]  # particles sorted by class, so each thread reuses one spectrum in cache
        spectrum = spectra[class_index[p]]
        shift_phases = _shift_phase_tables(d, shifts[p])
        shifted = shifts[p, 0] != 0.0 or shifts[p, 1] != 0.0 or shifts[p, 2] != 0.0
        q = rotations[p].astype(np.float32)
        ctf = ctf_table[p]
        signal = np.zeros(n_coefficients, dtype=np.complex64)  # coefficients j, in list order
        if with_noise:
            for j in range(n_coefficients):
                signal[j] = _noise_value(noise[p], slot[j], mode[j])  # noise first, for now
        signal_power = 0.0
        noise_power = 0.0
        cross_power = 0.0
        for j in range(n_signal):
            a = _rotated_coefficient(
                spectrum, q, frequencies[j], centre_phase[j], shift_phases, shifted, c
            )
            a = a * ctf[k2_index[j]]
            b = signal[j]
            signal_power += weight[j] * (a.real * a.real + a.imag * a.imag)
            noise_power += weight[j] * (b.real * b.real + b.imag * b.imag)
            cross_power += weight[j] * (a.real * b.real + a.imag * b.imag)
            signal[j] = a
        for j in range(n_signal, n_coefficients):
            b = signal[j]
            noise_power += weight[j] * (b.real * b.real + b.imag * b.imag)
            signal[j] = 0
        sigma = 0.0
        if with_noise and noise_power > 0.0:
            sigma = math.sqrt(signal_power / (snr * noise_power))
        total = signal_power + sigma * sigma * noise_power + 2.0 * sigma * cross_power
        scale = np.float32(volume / math.sqrt(total)) if total > 0.0 else np.float32(0.0)
        noise_scale = np.float32(sigma) * scale
        out[p, :] = 0
        if with_noise:
            for j in range(n_coefficients):
                b = _noise_value(noise[p], slot[j], mode[j])
                out[p, flat[j]] = signal[j] * scale + b * noise_scale
        else:
            for j in range(n_signal):
                out[p, flat[j]] = signal[j] * scale
