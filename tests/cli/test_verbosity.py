"""The root's --quiet (errors and results only) and --verbose (TensorFlow's logs too)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.tf_runtime import TF_LOGS_ENV
from tests.helpers import write_blob_png
from tests.predict.conftest import save_tiny_model

runner = CliRunner()


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("verbosity"))


def _images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for i in range(3):
        write_blob_png(tmp_path / "in" / f"{i}.png", "covid", 24, rng)
    return tmp_path / "in"


def test_quiet_keeps_results_and_drops_progress_and_messages(model: Path, tmp_path: Path) -> None:
    args = ["predict", str(_images(tmp_path)), "--model", str(model), "-o", "-"]
    normal = runner.invoke(app, args)
    quiet = runner.invoke(app, ["--quiet", *args])
    assert normal.exit_code == quiet.exit_code == 0, quiet.output
    assert "row(s) written" in normal.stderr  # the summary is a message when stdout is data
    assert quiet.stderr == ""
    assert quiet.stdout == normal.stdout  # the rows, unchanged
    assert len(quiet.stdout.splitlines()) == 4


def test_quiet_still_says_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["-q", "predict", str(tmp_path / "missing.png"), "-o", "-"])
    assert result.exit_code == 2
    assert "Error:" in result.stderr and "no such file" in result.stderr


def test_quiet_and_verbose_exclude_each_other() -> None:
    result = runner.invoke(app, ["--quiet", "--verbose", "info"])
    assert result.exit_code == 2
    assert "exclude each other" in result.stderr


def test_verbose_keeps_tensorflow_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TF_LOGS_ENV, raising=False)
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    tf_logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(tf_logger, "level", tf_logger.level)
    runner.invoke(app, ["--verbose", "models", "list"])
    import os

    assert os.environ.get(TF_LOGS_ENV) == "1"
    assert tf_logger.level == logging.INFO
    runner.invoke(app, ["--quiet", "models", "list"])
    assert tf_logger.level == logging.ERROR


def test_a_later_invocation_gets_back_the_environment_and_warnings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--verbose and --quiet last one invocation: the next one in the same process (the API,
    a notebook) sees the environment variables and warning filters it had before."""
    import os
    import warnings

    monkeypatch.delenv(TF_LOGS_ENV, raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    tf_logger = logging.getLogger("tensorflow")
    monkeypatch.setattr(tf_logger, "level", tf_logger.level)
    runner.invoke(app, ["models", "list"])  # whatever an earlier test's invocation left
    filters = list(warnings.filters)
    runner.invoke(app, ["--verbose", "models", "list"])
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0"
    runner.invoke(app, ["models", "list"])
    assert TF_LOGS_ENV not in os.environ
    assert os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "3"
    runner.invoke(app, ["--quiet", "models", "list"])
    assert warnings.filters[0][0] == "ignore"
    runner.invoke(app, ["models", "list"])
    assert warnings.filters == filters
