"""`train --no-calibrate` skips calibration and the guard; `models show` says so."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cxr_covid.cli.app import app
from tests.helpers import build_dataset


def _train(*extra: str) -> None:
    result = CliRunner().invoke(
        app,
        ["train", "--dataset", "blobs", "--image-size", "16", "--epochs", "1", "--batch-size",
         "8", "--seed", "1", *extra],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def test_no_calibrate_leaves_the_model_uncalibrated_until_calibrate(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    _train("--no-calibrate", "--name", "plain")
    record = json.loads((cxr_home / "models" / "plain" / "model.json").read_text())
    assert record["calibration"] == {} and record["ood"] == {}
    assert record["training"]["calibrate"] is False

    runner = CliRunner()
    shown = runner.invoke(app, ["models", "show", "plain"]).output
    assert "uncalibrated" in shown and "none (run `cxr-covid calibrate`)" in shown

    assert runner.invoke(app, ["calibrate", "plain"]).exit_code == 0
    record = json.loads((cxr_home / "models" / "plain" / "model.json").read_text())
    assert record["calibration"]["temperature"] > 0
    assert record["ood"]["features"]["threshold"] > 0 and record["ood"]["pixels"]
    shown = runner.invoke(app, ["models", "show", "plain"]).output
    assert "calibrated (temperature" in shown


def test_train_calibrates_by_default(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    _train("--name", "guarded")
    record = json.loads((cxr_home / "models" / "guarded" / "model.json").read_text())
    assert record["calibration"]["n"] == 6  # the validation split: 2 per class
    assert record["ood"]["n_fit"] == 18 and record["training"]["calibration_seconds"] >= 0


def test_calibrate_refuses_a_model_without_a_dataset(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    _train("--name", "m")
    path = cxr_home / "models" / "m" / "model.json"
    record = json.loads(path.read_text())
    record["dataset"] = {}
    path.write_text(json.dumps(record))
    result = CliRunner().invoke(app, ["calibrate", "m"])
    assert result.exit_code == 3 and "validation split is unknown" in result.output


def test_bad_decision_options_are_refused_with_one_line(cxr_home: Path, tmp_path: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    _train("--name", "m")
    image = next((cxr_home / "datasets" / "blobs" / "images").rglob("*.png"))
    runner = CliRunner()
    cases = [
        ["predict", str(image), "--out", str(tmp_path / "p.csv"), "--threshold", "cat=0.3"],
        ["predict", str(image), "--out", str(tmp_path / "q.csv"), "--threshold", "covid=2"],
        ["eval", "m", "--save-operating-point"],
        ["eval", "m", "--operating-point", "covid:recall=0.9"],
    ]
    for args in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert "Error:" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "p.csv").exists()
    record = json.loads((cxr_home / "models" / "m" / "model.json").read_text())
    assert record["operating_point"] == {} and record["evaluations"] == []
