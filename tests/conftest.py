"""Shared fixtures: temp images, the shared/ reference data location."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FSPROTO_SHARED", PROJECT_ROOT.parent / "shared"))


@pytest.fixture
def shared_dir() -> Path:
    return SHARED


@pytest.fixture(scope="module")
def utc() -> Iterator[Any]:
    """FST dates are local time on both sides; the reference's guest runs in UTC, so the host does too."""
    old = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if old is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = old
    time.tzset()
