"""Eval outputs on stdout and the store's refusals, needing the trained model store of
tests/eval/conftest.py (regressions found by QA)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.eval.conftest import GOOD

runner = CliRunner()


@pytest.mark.parametrize("flag", ["--csv", "--markdown"])
def test_dash_means_stdout_for_csv_and_markdown_too(
    eval_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    # `--json -` printed to stdout, but `--csv -` / `--markdown -` wrote a file named "-".
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["eval", GOOD, flag, "-", "--no-save", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "-").exists()
    if flag == "--csv":
        rows = list(csv.DictReader(io.StringIO(result.stdout)))
        assert rows and rows[0]["model"] == GOOD
    else:
        assert result.stdout.startswith("# Evaluation")


def test_only_one_output_can_be_stdout(eval_home: Path) -> None:
    result = runner.invoke(app, ["eval", GOOD, "--json", "--csv", "-", "--no-save"])
    assert result.exit_code == 2
    assert "only one of --json and --csv" in result.output


def test_models_rm_without_an_answer_changes_nothing_and_is_not_a_bug_exit(
    eval_home: Path,
) -> None:
    # With stdin closed the prompt raised Abort: "Aborted." and exit 1 ("a bug").
    result = runner.invoke(app, ["models", "rm", GOOD], input="")
    assert result.exit_code == 2, result.output
    assert "--yes" in result.output
    assert runner.invoke(app, ["models", "show", GOOD]).exit_code == 0
