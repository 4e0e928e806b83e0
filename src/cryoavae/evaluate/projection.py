"""The 2-D map of mu the figures draw: UMAP with the cosine metric."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.neighbors import NearestNeighbors


def umap_projection(mu: np.ndarray, n_neighbors: int, min_dist: float, seed: int) -> np.ndarray:
    """2-D UMAP of mu ``(n, k)`` with the cosine metric -> ``(n, 2)``; seeded, single-threaded.

    The exact cosine neighbour graph comes from scikit-learn and is handed to umap-learn as
    ``precomputed_knn``: this skips umap's own neighbour search, whose numba JIT compile
    (pynndescent above 4,096 points) costs tens of seconds in every fresh process. umap-learn is
    imported here so that only this step pays its import and its remaining compile (seconds).
    """
    n = len(mu)
    if n < 4:
        return np.zeros((n, 2))
    import umap

    k = min(n_neighbors, n - 1)
    distances, neighbours = (
        NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(mu).kneighbors(mu)
    )
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=k,
        min_dist=min_dist,
        metric="cosine",
        random_state=seed,
        n_jobs=1,  # a seed forces one thread anyway; saying so avoids umap's warning
        precomputed_knn=(neighbours, np.maximum(distances, 0.0), None),
        init="spectral" if n > 10 else "random",
    )
    with warnings.catch_warnings():
        # Without a search index umap cannot transform() new data; we never ask it to.
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return np.asarray(reducer.fit_transform(mu), dtype=np.float64)
