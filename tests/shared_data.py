"""Where the shared real-data recordings live: ``../shared/data`` beside the repository root.

Tests that need a whole recording call :func:`shared_data_file`; when the
directory is not there (a checkout without the shared data) they skip with a
reason instead of failing. Small excerpts belong in ``tests/fixtures`` instead.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data_file(*parts: str) -> Path:
    """The path of a shared data file, or skip the calling test if it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"shared data file {path} not found (expected ../shared/data beside the repo root {REPO_ROOT})")
    return path
