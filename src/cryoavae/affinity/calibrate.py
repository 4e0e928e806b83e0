"""Calibration: a monotone map of raw similarities onto [-1, 1], before the PSD projection.

The affinity loss asks cos(mu_i, mu_j) to equal the prior, so the prior's values, not only its
ranking, decide how far apart the classes sit in the latent space. SOAP cosines of proteins crowd
near 1 (0.87-1.0 for the ten SHREC'21 proteins), unevenly: a linear stretch that sends the least
similar pair to -1 leaves the large complexes at 0.7-0.96 from each other, i.e. nearly collinear,
and the model then confuses them. Every method here keeps the order of the pairs (any rank
statistic of the prior is unchanged before the projection), sends identical structures to 1 and
the least similar pair to -1, and works on the distance d = sqrt(1 - s) (for unit vectors the
chord between them, up to a factor sqrt 2; s within 1e-12 of 1 counts as identical):

- ``linear``: a = 1 - 2 (d / d_max)^2, the linear stretch of s (:func:`matrix.spread_similarity`).
- ``power``: a = 1 - 2 (d / d_max)^g with g = ln(1/2) / ln(d_median / d_max), so the median pair
  lands at 0: half the pairs of classes are asked to be alike, half unlike. g = 2 is ``linear``;
  when the median gives no exponent (fewer than 3 classes, or half the pairs tied at d_max or at
  0) it falls back to it.
- ``rank``: a = 1 - 2 R / P, with R the rank of d among the P pairs (1 = closest, ties
  averaged); identical structures (d = 0) get 1. The values are then spread evenly, whatever the
  raw distances were.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from cryoavae.affinity.matrix import check_square, spread_similarity
from cryoavae.core.errors import InputError

METHODS = ("power", "rank", "linear")
# Raw similarities this close to 1 are identical structures up to rounding (a rotated copy's SOAP
# cosine is 1 - 2e-16 here). Without the floor an exponent below 1 would magnify that rounding:
# (1e-8 / 0.37)^0.8 ~ 1e-6.
IDENTICAL = 1e-12


def calibrate_similarity(raw: np.ndarray, method: str) -> tuple[np.ndarray, dict]:
    """Map raw similarities (n, n), at most 1, onto [-1, 1] with ``method`` (see the module).

    Returns the (n, n) symmetric matrix with a unit diagonal and a dict of plain types:
    ``method``, and for ``power`` the ``exponent`` used and ``median_distance`` / ``max_distance``.
    """
    s = check_square(raw, "raw similarity")
    if method not in METHODS:
        raise InputError(
            f"affinity.soap.calibration: {method!r} is not one of {', '.join(METHODS)}"
        )
    s = (s + s.T) / 2
    n = s.shape[0]
    info: dict = {"method": method}
    iu = np.triu_indices(n, k=1)
    s = np.where(1.0 - s > IDENTICAL, s, 1.0)
    distance = np.sqrt(1.0 - s)
    if method == "linear" or n < 2:
        return spread_similarity(s), info
    d = distance[iu]
    d_max = float(d.max())
    if d_max <= 0.0:
        return np.ones_like(s), info
    if method == "rank":
        ranks = rankdata(d, method="average")  # (P,) 1 = closest pair
        values = np.where(d > 0, 1.0 - 2.0 * ranks / d.size, 1.0)
    else:
        d_median = float(np.median(d))
        exponent = 2.0
        if 0.0 < d_median < d_max:
            exponent = float(np.log(0.5) / np.log(d_median / d_max))
        info.update(exponent=exponent, median_distance=d_median, max_distance=d_max)
        values = 1.0 - 2.0 * (d / d_max) ** exponent
    out = np.ones_like(s)
    out[iu] = np.clip(values, -1.0, 1.0)
    out.T[iu] = out[iu]
    return out, info
