"""Shared test fixtures: paths into the repository."""

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def schema_path() -> Path:
    return REPO / "workflow" / "schemas" / "config.schema.yaml"
