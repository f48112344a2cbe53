"""Shared fixtures. Tests that need ../shared/data use `shared_data` and skip cleanly without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(os.environ.get("DIAT_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real face data (../shared/data); the test is skipped when it is absent."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.skip(f"real face data not found at {SHARED_DATA}")
    return SHARED_DATA
