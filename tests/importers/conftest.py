"""Paths of the migration fixtures: real Avaya captures (shared) and our own."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO / "tests" / "fixtures" / "migration" / "avaya_cm_real"  # real captures
OWN = REPO / "tests" / "fixtures" / "migration"


@pytest.fixture
def shared_dir() -> Path:
    return SHARED


@pytest.fixture
def own_dir() -> Path:
    return OWN
