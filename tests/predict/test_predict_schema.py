"""predict's row schema is fixed: the same keys in CSV and JSON lines, whatever the rule."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.schemas import schema_id
from tests.helpers import write_blob_png
from tests.json_docs import Documented, documented

runner = CliRunner()


def documented_rows() -> Documented:
    return documented()[schema_id("predict")]


FIXED = ["decision", "decision_rule", "true_class"]


def _inputs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    root = tmp_path / "cohort"
    write_blob_png(root / "covid" / "a.png", "covid", 24, rng)
    write_blob_png(root / "NORMAL" / "b.png", "normal", 24, rng)
    write_blob_png(root / "unsorted" / "c.png", "normal", 24, rng)
    return root


def _csv(model: Path, root: Path, out: Path, *extra: str) -> tuple[list[str], list[dict[str, str]]]:
    args = ["predict", str(root), "-r", "--model", str(model), "-o", str(out), *extra]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    with open(out, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        return list(reader.fieldnames or []), list(reader)


def test_csv_columns_do_not_change_with_the_rule(tiny_model: Path, tmp_path: Path) -> None:
    root = _inputs(tmp_path)
    plain, rows = _csv(tiny_model, root, tmp_path / "a.csv")
    ruled, ruled_rows = _csv(tiny_model, root, tmp_path / "b.csv", "--threshold", "covid=0.3")
    assert plain == ruled
    assert all(name in plain for name in FIXED)
    assert {r["decision_rule"] for r in rows} == {"argmax"}
    assert {r["decision_rule"] for r in ruled_rows} == {"covid>=0.3"}
    for row in ruled_rows:
        expected = "covid" if float(row["p_covid"]) >= 0.3 else row["decision"]
        assert row["decision"] == expected


def test_true_class_comes_from_class_folders(tiny_model: Path, tmp_path: Path) -> None:
    root = _inputs(tmp_path)
    _, rows = _csv(tiny_model, root, tmp_path / "a.csv")
    truth = {Path(r["path"]).name: r["true_class"] for r in rows}
    assert truth == {"a.png": "covid", "b.png": "normal", "c.png": ""}


def test_jsonl_has_the_csv_keys_in_the_same_order(tiny_model: Path, tmp_path: Path) -> None:
    root = _inputs(tmp_path)
    header, _ = _csv(tiny_model, root, tmp_path / "a.csv")
    out = tmp_path / "a.jsonl"
    args = ["predict", str(root), "-r", "--model", str(tiny_model), "-o", str(out)]
    assert runner.invoke(app, args).exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert all(list(r) == header for r in records)
    assert {r["true_class"] for r in records} == {"covid", "normal", None}


def test_resume_with_another_rule_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    root = _inputs(tmp_path)
    out = tmp_path / "a.csv"
    _csv(tiny_model, root, out)
    args = ["predict", str(root), "-r", "--model", str(tiny_model), "-o", str(out)]
    result = runner.invoke(app, [*args, "--resume", "--threshold", "covid=0.3"])
    assert result.exit_code == 2
    assert "rule" in result.output


def test_json_writes_json_lines_to_stdout(tiny_model: Path, tmp_path: Path) -> None:
    root = _inputs(tmp_path)
    result = runner.invoke(app, ["predict", str(root), "-r", "--model", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    assert len(records) == 3 and all("decision_rule" in r for r in records)
    documented = documented_rows()
    for record in records:
        keys = {k for k in record if not k.startswith("p_")}
        assert keys == documented.always, keys ^ documented.always


def test_predict_without_out_or_json_is_a_usage_error(tiny_model: Path, tmp_path: Path) -> None:
    root = _inputs(tmp_path)
    result = runner.invoke(app, ["predict", str(root), "-r", "--model", str(tiny_model)])
    assert result.exit_code == 2
    assert "--json" in result.output
