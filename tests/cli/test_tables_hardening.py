"""Issue 13, item 17: tables never cut an id or a figure, in an 80-column terminal or piped."""

from __future__ import annotations

import io
import re
import shutil
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.cli.models import models_table
from cxr_covid.models import store
from cxr_covid.system import ModelSummary
from tests.helpers import write_class_folders
from tests.predict.conftest import save_tiny_model

runner = CliRunner()
LONG_ID = "baseline-aug-covid19-radiography-database-20261202-053010-2"  # 59 characters


def _summary(model_id: str) -> ModelSummary:
    return ModelSummary(
        id=model_id,
        architecture="inception",
        dataset="covid19-radiography-database",
        image_size=224,
        augmented=True,
        val_accuracy=29 / 33,
        val_images=33,
        test_accuracy=1234 / 1345,
        test_images=1345,
        created="2026-12-02T05:30:10+00:00",
    )


def _cells(text: str) -> list[str]:
    """The text of every table cell, one per cell, whatever the border characters."""
    return [c.strip() for c in re.split(r"[│┃|]", text) if c.strip()]


def test_models_table_in_an_80_column_terminal_keeps_the_whole_id() -> None:
    buffer = io.StringIO()
    console = Console(file=buffer, width=80, force_terminal=True, color_system=None)
    console.print(models_table([_summary(LONG_ID), _summary("short")]))
    text = buffer.getvalue()
    assert LONG_ID in _cells(text), text  # whole, on one line, in one cell
    assert "…" not in text, text


@pytest.fixture
def long_named_model(cxr_home: Path) -> store.StoredModel:
    folder = save_tiny_model(cxr_home)
    target = folder.with_name(LONG_ID)
    shutil.move(folder, target)
    stored = store.StoredModel(target)
    record = stored.record()
    record.id = LONG_ID
    record.metrics = {"best_val_accuracy": 29 / 33}
    record.dataset = {"name": "covid19-radiography-database", "val_images": 33}
    stored.write_record(record)
    return stored


def test_models_list_piped_at_80_columns_keeps_ids_and_figures(
    monkeypatch: pytest.MonkeyPatch, long_named_model: store.StoredModel
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, ["models", "list"])  # stdout is not a terminal here
    assert result.exit_code == 0, result.output
    cells = _cells(result.output)
    assert LONG_ID in cells, result.output
    assert any(c.startswith("87.88% (29/33) [") and c.endswith("]") for c in cells), cells
    assert "…" not in result.output


def test_eval_one_vs_rest_cells_piped_at_80_columns_are_whole(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    long_named_model: store.StoredModel,
    tmp_path: Path,
) -> None:
    from cxr_covid.cli.evaluate import render
    from cxr_covid.evaluation import report as eval_report
    from cxr_covid.evaluation.evaluate import evaluate

    data = write_class_folders(tmp_path / "data", 4, 24)
    report = evaluate([long_named_model], data_dir=data, bootstrap=50, save=False)
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    render(report)
    text = capsys.readouterr().out
    cells = _cells(text)
    figures = [c for row in eval_report.class_metric_rows(report.evaluations[0]) for c in row]
    assert figures
    missing = [f for f in figures if f not in cells]
    assert not missing, text
    assert LONG_ID in text
    assert "…" not in text
