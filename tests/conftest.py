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


@pytest.fixture
def one_thread():
    """One torch thread: the machine is shared, and results then do not depend on its cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
