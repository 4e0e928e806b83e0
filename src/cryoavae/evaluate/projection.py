"""The 2-D map of mu the figures draw: UMAP with the cosine metric."""

from __future__ import annotations

import logging
import os
import time
import warnings

import numpy as np
import sklearn
from sklearn.neighbors import NearestNeighbors

from cryoavae.inference.latents import PLACEMENT_NEIGHBOURS, WORKING_MEMORY_MB, place_by_neighbours

log = logging.getLogger(__name__)


def cache_umap_compilation(cache_dir: str | os.PathLike) -> None:
    """Keep umap-learn's numba compilations in ``cache_dir``, so that a second evaluation on
    this machine loads them instead of compiling again (~13 s saved per fresh process here).

    umap-learn compiles most of its functions without numba's ``cache=True``; every such
    module-level function is switched to caching. numba keys each cache entry by the function,
    its argument types and the CPU, so a cache shared by different machines stays correct. A
    cache folder the user chose for numba (``NUMBA_CACHE_DIR``) wins over ``cache_dir``.
    """
    import numba
    from numba.core.dispatcher import Dispatcher

    cache_dir = os.environ.get("NUMBA_CACHE_DIR") or cache_dir
    os.makedirs(cache_dir, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    numba.config.CACHE_DIR = str(cache_dir)
    import umap.distances
    import umap.layouts
    import umap.sparse
    import umap.spectral
    import umap.umap_
    import umap.utils

    modules = (umap.distances, umap.layouts, umap.sparse, umap.spectral, umap.umap_, umap.utils)
    for module in modules:
        for function in vars(module).values():
            if isinstance(function, Dispatcher):
                function.enable_caching()  # also for those already caching: it is idempotent


def umap_projection(
    mu: np.ndarray,
    n_neighbors: int,
    min_dist: float,
    seed: int,
    cache_dir=None,
    max_points: int | None = None,
) -> np.ndarray:
    """2-D UMAP of mu ``(n, k)`` with the cosine metric -> ``(n, 2)``; seeded, single-threaded.

    The exact cosine neighbour graph comes from scikit-learn and is handed to umap-learn as
    ``precomputed_knn``: this skips umap's own neighbour search, whose numba JIT compile
    (pynndescent above 4,096 points) costs tens of seconds in every fresh process. umap-learn is
    imported here so that only this step pays its import and its remaining compile (seconds);
    with ``cache_dir`` that compile is paid once per machine (:func:`cache_umap_compilation`).

    Above ``max_points`` particles UMAP is fitted on a draw of that many (seeded) and the others
    are placed at the mean position of their ``PLACEMENT_NEIGHBOURS`` nearest fitted particles
    (cosine, :func:`cryoavae.inference.latents.place_by_neighbours`, which also places a new
    particle set): the neighbour search grows with the square of the fitted count.
    """
    n = len(mu)
    if max_points is not None and n > max_points:
        fitted = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        xy = np.empty((n, 2))
        xy[fitted] = umap_projection(mu[fitted], n_neighbors, min_dist, seed, cache_dir)
        rest = np.setdiff1d(np.arange(n), fitted)
        xy[rest] = place_by_neighbours(mu[fitted], xy[fitted], mu[rest], PLACEMENT_NEIGHBOURS)
        log.info("UMAP fitted on %d of %d particles (the rest placed by neighbours)", max_points, n)
        return xy
    if n < 4:
        return np.zeros((n, 2))
    started = time.perf_counter()
    if cache_dir is not None:
        cache_umap_compilation(cache_dir)
    import umap

    k = min(n_neighbors, n - 1)
    with sklearn.config_context(working_memory=WORKING_MEMORY_MB):
        search = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(mu)
        distances, neighbours = search.kneighbors(mu)
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
        xy = np.asarray(reducer.fit_transform(mu), dtype=np.float64)
    log.info("UMAP of %d particles: %.1f s", n, time.perf_counter() - started)
    return xy
