"""Fixtures shared by the project's own tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # Import torch once, before any in-process pytester run: pytester drops the modules an
    import torch  # noqa: F401  inner run imported, and torch refuses to be initialised twice.
except ImportError:  # the core's tests run without the torch extra
    pass

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


@pytest.fixture(scope="session")
def shared_seeds() -> Path:
    """The seed READMEs the committed baselines were written from: $VACCBENCH_SEEDS, else
    `seeds/` beside the test data (../shared/seeds)."""
    path = Path(os.environ.get("VACCBENCH_SEEDS", shared_data_dir().parent / "seeds"))
    if len(list(path.glob("00[0234]_*.txt"))) < 4:
        pytest.skip(f"seed READMEs not found at {path} (set VACCBENCH_SEEDS to the folder holding "
                    "000_*.txt ... 004_*.txt)")
    return path
