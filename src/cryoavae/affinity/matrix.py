"""From raw similarities to a valid prior: spread, project onto correlation matrices, compare."""

from __future__ import annotations

import numpy as np
from scipy.stats import spearmanr

from cryoavae.core.errors import InputError


def spread_similarity(raw: np.ndarray) -> np.ndarray:
    """Stretch raw similarities (n, n) linearly so the least similar pair gets -1.

    a_ij = 1 - 2 (1 - s_ij) / (1 - s_min), with s_min the smallest off-diagonal value. Reading
    1 - s as a squared distance (for unit vectors |u - v|^2 = 2 (1 - cos)), this rescales all
    distances by the largest one: identical structures stay at 1, the most different pair goes
    to -1, and the order of every pair is kept (so any rank statistic is unchanged). Averaged
    SOAP cosines of proteins all lie within a few hundredths of 1; without this, every class
    would be asked to sit at almost the same latent direction. The result is usually not PSD:
    :func:`build_affinity` projects it afterwards. A matrix with no spread (all off-diagonal
    values 1, or n = 1) is returned as all ones.
    """
    s = check_square(raw, "raw similarity")
    n = s.shape[0]
    out = np.ones_like(s)
    if n < 2:
        return out
    off = ~np.eye(n, dtype=bool)
    s_min = float(s[off].min())
    if s_min >= 1.0 - 1e-15:
        return out
    out = 1.0 - 2.0 * (1.0 - s) / (1.0 - s_min)
    out = np.clip((out + out.T) / 2, -1.0, 1.0)
    np.fill_diagonal(out, 1.0)
    return out


def check_square(m: np.ndarray, what: str) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise InputError(f"affinity: {what} must be a square matrix; got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise InputError(f"affinity: {what} holds NaN or infinite values")
    return m


def _psd_part(m: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Symmetric m with eigenvalues below ``floor`` raised to it (nearest PSD in Frobenius)."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.maximum(w, floor)) @ v.T


def nearest_correlation_matrix(
    m: np.ndarray, *, tol: float = 1e-10, max_iterations: int = 1000
) -> np.ndarray:
    """The nearest (Frobenius) symmetric PSD matrix with unit diagonal to ``m`` (n, n).

    Higham (2002), "Computing the nearest correlation matrix", alternating projections onto the
    PSD cone and the unit-diagonal set with Dykstra's correction. A last step clips eigenvalues at
    0 and rescales to a unit diagonal, so the result is exactly a correlation matrix (entries in
    [-1, 1]) even when the iteration stops early. A PSD unit-diagonal input comes back unchanged.
    """
    a = check_square(m, "matrix")
    a = (a + a.T) / 2
    y = a.copy()
    np.fill_diagonal(y, 1.0)
    correction = np.zeros_like(a)
    for _ in range(max_iterations):
        r = y - correction
        x = _psd_part(r)
        correction = x - r
        y_next = x.copy()
        np.fill_diagonal(y_next, 1.0)
        change = np.linalg.norm(y_next - y) / max(np.linalg.norm(y), 1e-300)
        y = y_next
        if change < tol:
            break
    x = _psd_part(y)
    d = np.sqrt(np.clip(np.diag(x), 1e-300, None))
    x = x / d[:, None] / d[None, :]
    x = np.clip((x + x.T) / 2, -1.0, 1.0)
    np.fill_diagonal(x, 1.0)
    return x


def best_achievable_l1(a: np.ndarray) -> float:
    """Floor of the affinity loss for prior ``a``: mean |G - A| over off-diagonal class pairs.

    G is the nearest correlation matrix to A, i.e. the Gram matrix of the best unit latent
    directions (one per class, latent dimension >= n). It is exactly 0 for a valid (PSD) prior
    and an upper bound of the true L1 optimum otherwise (G is Frobenius-, not L1-, optimal). The
    loss of a trained model cannot go much below it whatever the weight on the affinity term.
    """
    m = check_square(a, "affinity")
    n = m.shape[0]
    if n < 2:
        return 0.0
    g = nearest_correlation_matrix(m)
    off = ~np.eye(n, dtype=bool)
    return float(np.abs(g - m)[off].mean())


def _min_eigenvalue(m: np.ndarray) -> float:
    return float(np.linalg.eigvalsh((m + m.T) / 2).min())


def build_affinity(raw: np.ndarray, *, spread: bool = True) -> tuple[np.ndarray, dict]:
    """Turn raw similarities into the prior handed to training: spread, then project.

    Returns the (n, n) matrix (symmetric, unit diagonal, in [-1, 1], PSD) and a dict with
    ``min_eigenvalue_before``/``_after`` and ``best_l1_before``/``_after`` (see
    :func:`best_achievable_l1`); "before" is the spread matrix. ``spread=False`` keeps the values
    (a user's own matrix) and only projects.
    """
    m = check_square(raw, "raw similarity")
    spread_m = spread_similarity(m) if spread else (m + m.T) / 2
    final = nearest_correlation_matrix(spread_m)
    info = {
        "min_eigenvalue_before": _min_eigenvalue(spread_m),
        "min_eigenvalue_after": _min_eigenvalue(final),
        "best_l1_before": best_achievable_l1(spread_m),
        "best_l1_after": best_achievable_l1(final),
    }
    return final, info


def spearman_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two (n, n) matrices over their upper triangles (i < j).

    NaN when it is undefined (fewer than 2 pairs, or a constant triangle).
    """
    a = check_square(a, "matrix")
    b = check_square(b, "matrix")
    if a.shape != b.shape:
        raise InputError(f"affinity: cannot compare matrices of shapes {a.shape} and {b.shape}")
    iu = np.triu_indices(a.shape[0], k=1)
    x, y = a[iu], b[iu]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)
