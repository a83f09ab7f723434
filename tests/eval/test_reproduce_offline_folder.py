"""Issue 21, item 12: an offline `reproduce` must not name a run folder that never appears."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_DOWNLOAD

runner = CliRunner()


def test_offline_reproduce_names_no_run_folder(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The Kaggle endpoint unreachable by name (.invalid never resolves, RFC 6761).
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", "http://nonexistent.invalid/api/dataset")
    result = runner.invoke(app, ["reproduce", "--preset", "quick"])
    assert result.exit_code == EXIT_DOWNLOAD, result.stderr
    assert "offline" in result.stderr
    assert "run folder" not in result.stderr.lower()
    assert not (cxr_home / "reproduce").exists()
