"""Single-axis tilt geometry: projection of the sample and weighted back-projection.

The specimen tilts about y. At tilt ``theta`` a point at offset ``u = (x, y, z)`` from the
volume's centre ``(X // 2, Y // 2, Z // 2)`` is rotated actively by ``Ry(theta)`` and projected
along z onto detector column ``X // 2 + x cos(theta) + z sin(theta)``, row ``Y // 2 + y``. The
detector is ``Y`` rows by ``X`` columns at the volume's voxel size; what falls outside it is lost
(as a real field of view loses it at high tilt).

Since y is the tilt axis, each row ``y`` is its own 2-D problem in ``(x, z)``, and one sparse
matrix ``S`` of shape ``(Z X, n_tilts X)`` serves every row: back-projection with linear
interpolation (each voxel reads the two detector columns around its projected position) is
``S @ images``, and projection is its adjoint ``S.T @ volume`` (each voxel's value split between
the same two columns, so a projection sums the volume along each ray: line integrals in voxels).
Volumes are ``(Z, X, Y)`` for these products (y fastest); tilt images are ``(n_tilts, Y, X)``.

Reconstruction is weighted back-projection: each image's rows are filtered by a ramp ``|k_x|``
(built in real space, Kak & Slaney's discrete ramp, so the mean is not lost to a zero DC term),
rolled off by a Gaussian above a cutoff as IMOD's ``tilt -RADIAL cutoff falloff``, weighted by
the angle each tilt covers, and back-projected. The reconstruction's Fourier transform is empty
in the missing wedge beyond the tilt range.

Why not teamtomo's ``torch-fourier-slice``: its projection and back-projection work on cubic
volumes zero-padded twofold, i.e. a 1024^3 complex grid (8 GB) for a 512 x 512 x 200 tomogram.
The tests use it as the independent reference for projections of rotated maps.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.sparse
import torch

__all__ = [
    "angular_weights_rad",
    "backproject",
    "project",
    "radial_weights",
    "tilt_matrix",
    "weighted_backprojection",
]


def tilt_matrix(
    size_xyz: tuple[int, int, int], tilt_angles_deg: np.ndarray
) -> scipy.sparse.csr_matrix:
    """The back-projection operator ``S`` ``(Z X, n X)`` float32 CSR (see the module docstring).

    Row ``z X + x`` holds, for every tilt ``i``, weights ``1 - w`` and ``w`` at columns
    ``i X + floor(s)`` and ``i X + floor(s) + 1``, ``s`` the voxel's projected column.
    """
    size_x, _, size_z = (int(v) for v in size_xyz)
    theta = np.deg2rad(np.asarray(tilt_angles_deg, dtype=np.float64))  # (n,)
    x = np.arange(size_x) - size_x // 2
    z = np.arange(size_z) - size_z // 2
    s = (
        size_x // 2
        + x[None, None, :] * np.cos(theta)[:, None, None]
        + z[None, :, None] * np.sin(theta)[:, None, None]
    )  # (n, Z, X) projected column of each voxel
    left = np.floor(s)
    w = s - left
    left = left.astype(np.int64)
    rows = np.broadcast_to(np.arange(size_z * size_x).reshape(1, size_z, size_x), s.shape)
    tilt = np.broadcast_to(np.arange(len(theta))[:, None, None], s.shape)
    columns = np.stack([left, left + 1])  # (2, n, Z, X)
    weights = np.stack([1.0 - w, w])
    keep = (columns >= 0) & (columns < size_x) & (weights > 0)
    matrix = scipy.sparse.coo_matrix(
        (
            weights[keep].astype(np.float32),
            (
                np.broadcast_to(rows, columns.shape)[keep],
                (np.broadcast_to(tilt, columns.shape) * size_x + columns)[keep],
            ),
        ),
        shape=(size_z * size_x, len(theta) * size_x),
    )
    return matrix.tocsr()


def project(volume_zxy: torch.Tensor | np.ndarray, matrix: scipy.sparse.csr_matrix) -> np.ndarray:
    """Projections ``(n, Y, X)`` float32 of a ``(Z, X, Y)`` volume: ``S.T @ volume``."""
    volume = np.asarray(volume_zxy, dtype=np.float32)
    size_z, size_x, size_y = volume.shape
    n = matrix.shape[1] // size_x
    transposed = matrix.T.tocsr()
    projections = transposed @ volume.reshape(size_z * size_x, size_y)  # (n X, Y)
    return np.ascontiguousarray(projections.reshape(n, size_x, size_y).transpose(0, 2, 1))


def backproject(images: np.ndarray, matrix: scipy.sparse.csr_matrix, size_z: int) -> np.ndarray:
    """Back-projection ``(Z, X, Y)`` float32 of tilt images ``(n, Y, X)``: ``S @ images``."""
    n, size_y, size_x = images.shape
    stacked = np.ascontiguousarray(np.asarray(images, dtype=np.float32).transpose(0, 2, 1))
    volume = matrix @ stacked.reshape(n * size_x, size_y)  # (Z X, Y)
    return volume.reshape(size_z, size_x, size_y)


def angular_weights_rad(tilt_angles_deg: np.ndarray) -> np.ndarray:
    """The angle each tilt stands for: half the gap to each neighbour (the end tilts count
    their one gap twice), ``(n,)`` radians; one tilt counts 1."""
    theta = np.deg2rad(np.asarray(tilt_angles_deg, dtype=np.float64))
    if len(theta) == 1:
        return np.ones(1)
    order = np.argsort(theta)
    gaps = np.diff(theta[order])
    spacing = np.empty_like(theta)
    spacing[order] = 0.5 * (np.concatenate([gaps[:1], gaps]) + np.concatenate([gaps, gaps[-1:]]))
    return spacing


def radial_weights(
    length_px: int, cutoff_cycles_per_px: float, falloff_cycles_per_px: float
) -> np.ndarray:
    """The weighting filter along x for rows zero-padded to ``length_px``: ``(length_px // 2 + 1,)``
    float32 on ``numpy.fft.rfftfreq(length_px)``.

    The discrete ramp is the transform of Kak & Slaney's kernel ``h[0] = 1/4``,
    ``h[n] = -1 / (pi n)^2`` for odd ``n``, 0 for even ``n`` (so ``|k|`` without a spurious DC
    term), times ``exp(-(k - cutoff)^2 / (2 falloff^2))`` above the cutoff (zero there when the
    falloff is 0).
    """
    n = int(length_px)
    offsets = np.fft.fftfreq(n) * n  # signed sample offsets in FFT order
    kernel = np.zeros(n)
    odd = np.abs(offsets) % 2 == 1
    kernel[odd] = -1.0 / (math.pi * offsets[odd]) ** 2
    kernel[0] = 0.25
    ramp = np.fft.rfft(kernel).real
    k = np.fft.rfftfreq(n)
    above = k > cutoff_cycles_per_px
    rolloff = np.ones_like(k)
    if falloff_cycles_per_px > 0:
        rolloff[above] = np.exp(
            -0.5 * ((k[above] - cutoff_cycles_per_px) / falloff_cycles_per_px) ** 2
        )
    else:
        rolloff[above] = 0.0
    return (ramp * rolloff).astype(np.float32)


def weighted_backprojection(
    images: np.ndarray,
    tilt_angles_deg: np.ndarray,
    matrix: scipy.sparse.csr_matrix,
    size_z: int,
    cutoff_cycles_per_px: float = 0.35,
    falloff_cycles_per_px: float = 0.035,
) -> np.ndarray:
    """The tomogram ``(Z, Y, X)`` float32 (MRC order) reconstructed from ``images`` ``(n, Y, X)``.

    Rows are zero-padded to twice their length for the filter, so it does not wrap around.
    """
    images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
    size_x = images.shape[-1]
    padded = 2 * size_x
    weights = torch.from_numpy(radial_weights(padded, cutoff_cycles_per_px, falloff_cycles_per_px))
    scale = torch.from_numpy(angular_weights_rad(tilt_angles_deg).astype(np.float32))
    spectrum = torch.fft.rfft(images, n=padded, dim=-1)  # (n, Y, padded // 2 + 1)
    filtered = torch.fft.irfft(spectrum * weights, n=padded, dim=-1)[..., :size_x]
    filtered = filtered * scale[:, None, None]
    volume = backproject(filtered.numpy(), matrix, size_z)  # (Z, X, Y)
    return np.ascontiguousarray(volume.transpose(0, 2, 1))
