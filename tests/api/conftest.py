"""Fixtures for the Python API, export, packs, cards and datasets: a tiny stored model."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_covid import classes
from tests.data.conftest import Server, http_server  # noqa: F401  (the real local server)
from tests.helpers import blob_image
from tests.predict.conftest import save_tiny_model

TINY_ID = "tiny-baseline"


@pytest.fixture(autouse=True)
def _quick_local_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny back-off, and no proxy between the tests and their 127.0.0.1 server."""
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_BACKOFF", "0.001")
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_TIMEOUT", "5")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture(scope="session")
def _tiny_model_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("api-tiny-home"), seed=3)


@pytest.fixture
def tiny(cxr_home: Path, _tiny_model_source: Path) -> Path:
    """An untrained 24 px baseline stored in this test's home as `tiny-baseline`."""
    target = cxr_home / "models" / TINY_ID
    shutil.copytree(_tiny_model_source, target)
    return target


@pytest.fixture
def xrays(tmp_path: Path) -> list[Path]:
    """Six small blob "X-rays" (two per class) in mixed sizes and modes."""
    rng = np.random.default_rng(7)
    folder = tmp_path / "xrays"
    folder.mkdir()
    files = []
    for i, label in enumerate(classes.STUDY_CLASSES * 2):
        size = 32 + 8 * i
        path = folder / f"{label}-{i}.png"
        pixels = blob_image(label, size, rng)
        image = Image.fromarray(pixels, mode="L")
        (image.convert("RGB") if i % 2 else image).save(path)
        files.append(path)
    return files


__all__ = ["Server"]
