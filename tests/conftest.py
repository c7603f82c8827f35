"""Shared fixtures: temp images, the shared/ reference data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FSPROTO_SHARED", PROJECT_ROOT.parent / "shared"))


@pytest.fixture
def shared_dir() -> Path:
    return SHARED
