"""From SOAP environments to one similarity per pair of structures.

A structure is described by one SOAP vector per centre (its environments). Two ways to compare
two such sets, both normalised so that a structure is exactly 1 to itself:

- ``average``: the cosine of the mean vectors. This equals dscribe's ``AverageKernel`` with a
  linear metric after its normalisation (the mean of all pairwise dot products is the dot product
  of the means), at the cost of one mean per structure instead of one dot product per pair of
  environments.
- ``rematch``: dscribe's ``REMatchKernel`` (De et al. 2016, "Comparing molecules and solids
  across structural and alchemical space"): the environments of two structures are matched by an
  entropy-regularised optimal transport plan on their cosine similarities; ``alpha`` -> 0 is the
  best one-to-one match, ``alpha`` -> infinity the average kernel.

``amplitude_features`` turns a power spectrum into the rotation-invariant amplitude per radial
function and degree, which compares densities the way a rotation-maximised correlation does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def cosine_matrix(x: np.ndarray) -> np.ndarray:
    """Cosine similarity (n, n) of the rows of x (n, f); a zero row is alike only to itself."""
    norms = np.linalg.norm(x, axis=1)
    unit = x / np.where(norms > 0, norms, 1.0)[:, None]
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    cos = (cos + cos.T) / 2
    np.fill_diagonal(cos, 1.0)
    return cos


def standardized(x: np.ndarray) -> np.ndarray:
    """Features (columns of x, (n, f)) z-scored across the rows; constant features dropped."""
    x = x - x.mean(axis=0)
    std = x.std(axis=0)
    keep = std > 1e-12 * max(float(np.abs(x).max()), 1e-300)
    return x[:, keep] / std[keep]


def amplitude_features(power: np.ndarray, n_max: int, l_max: int) -> np.ndarray:
    """Amplitudes sqrt(p_nnl) (..., (l_max + 1) * n_max) of one-species SOAP power spectra.

    power: (..., (l_max + 1) * n_max (n_max + 1) / 2) as dscribe orders it: one block per degree
    l, each block the pairs n <= n' in row order. With dscribe's orthonormal radial basis
    p_nnl = c * sum_m |c_nlm|^2, so the amplitude is the length of the density's component in
    radial function n and degree l, which a rotation leaves unchanged. Summed products of
    amplitudes bound the correlation of two densities over all their relative rotations from
    above (the spherical-harmonic shape descriptor of Kazhdan et al. 2003); the cross terms
    n != n' of the full power spectrum mostly repeat the radial profile. Tiny negative diagonal
    values from rounding count as 0.
    """
    pairs = n_max * (n_max + 1) // 2
    if power.shape[-1] != (l_max + 1) * pairs:
        raise ValueError(
            f"power spectrum of {power.shape[-1]} features is not one species with n_max "
            f"{n_max}, l_max {l_max}"
        )
    row_starts = np.cumsum([0] + [n_max - n for n in range(n_max - 1)])  # index of (n, n)
    diagonal = (np.arange(l_max + 1)[:, None] * pairs + row_starts[None, :]).ravel()
    return np.sqrt(np.clip(power[..., diagonal], 0.0, None))


def weight_degrees(x: np.ndarray, l_max: int, weight: float, squared: bool) -> np.ndarray:
    """x (..., (l_max + 1) * per_degree) with the blocks of degrees l >= 1 scaled by ``weight``
    (by ``weight**2`` when ``squared``, for power spectra, quadratic in the amplitudes).

    With a Gaussian of 25 Å on each C-alpha, degree 0 (the radial profile) holds 88-99.9 % of a
    SHREC protein's power, so the cosine of the amplitudes mostly compares sizes; the degrees
    l >= 1 hold the shape about the centre (elongation, lobes).
    """
    per_degree = x.shape[-1] // (l_max + 1)
    scale = np.ones(x.shape[-1])
    scale[per_degree:] = weight**2 if squared else weight
    return x * scale


def average_similarity(environments: Sequence[np.ndarray], standardize: bool) -> np.ndarray:
    """Cosine (n, n) of each structure's mean environment vector; ``standardize`` z-scores the
    mean vectors' features across the structures first (see :func:`standardized`)."""
    means = np.stack([np.asarray(e, dtype=np.float64).mean(axis=0) for e in environments])
    return cosine_matrix(standardized(means) if standardize else means)


def rematch_similarity(environments: Sequence[np.ndarray], alpha: float) -> np.ndarray:
    """REMatch similarity (n, n) of the structures' environments (dscribe ``REMatchKernel``).

    Each environment vector is scaled to unit length first, so the local similarity is a cosine
    in [-1, 1] and the kernel of a structure with itself is the same for all structures; the
    kernel is then normalised by its diagonal (dscribe's ``normalize_kernel``).
    """
    from dscribe.kernels import REMatchKernel

    unit = []
    for e in environments:
        e = np.asarray(e, dtype=np.float64)
        norms = np.linalg.norm(e, axis=1, keepdims=True)
        unit.append(e / np.where(norms > 0, norms, 1.0))
    kernel = REMatchKernel(metric="linear", alpha=alpha, threshold=1e-14, normalize_kernel=True)
    k = np.asarray(kernel.create(unit), dtype=np.float64)
    k = np.clip((k + k.T) / 2, -1.0, 1.0)
    np.fill_diagonal(k, 1.0)
    return k
