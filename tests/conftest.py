"""Shared test fixtures: paths into the repository, and one torch thread for model tests."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def schema_path() -> Path:
    """The study schema (in the package; workflow/schemas/ links to it)."""
    return REPO / "src" / "cryoavae" / "config.schema.yaml"


@pytest.fixture(scope="session", autouse=True)
def shared_numba_cache(tmp_path_factory):
    """One numba cache for every study the tests run (each in a folder of its own): umap-learn
    compiles once per test session instead of once per study, as a user's results/cache does.
    pytest-xdist's workers share it (their temporary folders lie side by side in the session's);
    numba writes each cache entry to a temporary file and renames it, so they can. A cache
    folder already chosen (``NUMBA_CACHE_DIR``, as CI sets for all its steps) is kept."""
    import os

    before = os.environ.get("NUMBA_CACHE_DIR")
    if before:
        yield
        return
    session = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        session = session.parent
    cache = session / "numba_cache"
    cache.mkdir(exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache)
    yield
    os.environ.pop("NUMBA_CACHE_DIR", None)


@pytest.fixture
def one_thread():
    """One torch thread: the machine is shared, and results then do not depend on its cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
