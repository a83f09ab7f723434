"""Fixtures shared by every test: an isolated home, and the real images when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def cxr_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own home, so no test touches the user's datasets or models."""
    home = tmp_path / "cxr-home"
    monkeypatch.setenv("CXR_COVID_HOME", str(home))
    return home


@pytest.fixture
def cxr_sample() -> Path:
    """24 real chest X-rays in mixed formats (../shared/data/cxr-sample)."""
    path = SHARED_DATA / "cxr-sample"
    if not path.is_dir():
        pytest.skip(f"real sample images not available at {path}")
    return path


@pytest.fixture
def cxr_dev_zip() -> Path:
    """The 360-image development archive shaped like the Kaggle release."""
    path = SHARED_DATA / "cxr-dev" / "covid19-radiography-dev.zip"
    if not path.is_file():
        pytest.skip(f"development archive not available at {path}")
    return path
