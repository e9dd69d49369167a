"""Shared pytest fixtures.

``../shared`` (real MOS label files and six real clips) sits beside the checkout in CI and on the
developers' machines but not in a user's fresh clone: tests that need it use the ``shared_dir``
fixture and skip cleanly when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("VERSUSQ_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """Path to ``../shared``; skips the test when it is not there."""
    if not (SHARED_DIR / "data").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DIR} (only present in CI/dev checkouts)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def labels_dir(shared_dir: Path) -> Path:
    """``../shared/data/labels``: verbatim MOS label files of the public benchmarks."""
    return shared_dir / "data" / "labels"


@pytest.fixture(scope="session")
def real_videos_dir(shared_dir: Path) -> Path:
    """``../shared/data/videos``: six real clips with known MOS (``scores.csv``)."""
    return shared_dir / "data" / "videos"
