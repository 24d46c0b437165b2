"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    """The real test data: $VACCBENCH_TEST_DATA, else ../shared/data beside the project."""
    return Path(os.environ.get("VACCBENCH_TEST_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "ilsvrc2012-val-subset").is_dir():
        pytest.skip(f"real test data not found at {path} (set VACCBENCH_TEST_DATA to the folder "
                    "holding ilsvrc2012-val-subset/, imagenet-sample/ and weights/)")
    return path


@pytest.fixture(scope="session")
def project_root() -> Path:
    return ROOT
