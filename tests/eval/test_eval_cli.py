"""`cxr-covid eval` end to end on a small trained model store."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.eval.conftest import DATASET, GOOD, WEAK
from tests.helpers import write_class_folders

runner = CliRunner()


def _invoke(*args: str) -> object:
    return runner.invoke(app, list(args))


def test_eval_newest_model_prints_the_study_table_and_saves_the_record(
    eval_home: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["eval", "--json-out", str(tmp_path / "e.json")])
    assert result.exit_code == 0, result.output
    assert "COVID-19" in result.output and "normal" in result.output
    assert "viral pneumonia" in result.output
    assert GOOD in result.output  # the newest model is the default
    data = json.loads((tmp_path / "e.json").read_text())
    (model,) = data["models"]
    assert model["model"] == GOOD and model["split"] == "test" and model["n"] == 12
    # 4 test images per class in the blobs dataset (60/20/20 of 20)
    assert [c["accuracy"]["n"] for c in model["per_class"]] == [4, 4, 4]
    # The counts in the cells add up to the total.
    assert (
        sum(c["accuracy"]["successes"] for c in model["per_class"])
        == (model["accuracy"]["successes"])
    )
    assert model["accuracy"]["successes"] >= 10  # the blobs are easy: the fit learned them
    # Saved in the record, and `models show` displays it.
    record = json.loads((eval_home / "models" / GOOD / "model.json").read_text())
    (saved,) = record["evaluations"]
    assert saved["split"] == "test" and saved["n"] == 12
    assert saved["accuracy"] == pytest.approx(model["accuracy"]["value"])
    assert saved["accuracy_ci"] == pytest.approx(model["accuracy"]["ci"])
    shown = runner.invoke(app, ["models", "show", GOOD])
    assert shown.exit_code == 0
    assert "eval on dataset" in shown.output and "/12) [" in shown.output
    listed = runner.invoke(app, ["models", "list", "--json"])
    good = next(m for m in json.loads(listed.output)["models"] if m["id"] == GOOD)
    assert good["test_accuracy"] == pytest.approx(model["accuracy"]["value"])


def test_eval_no_save_leaves_the_record_alone(eval_home: Path) -> None:
    before = (eval_home / "models" / GOOD / "model.json").read_bytes()
    result = runner.invoke(app, ["eval", GOOD, "--no-save", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    assert (eval_home / "models" / GOOD / "model.json").read_bytes() == before


def test_two_models_get_mcnemar_and_every_export(eval_home: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "eval",
            GOOD,
            WEAK,
            "--split",
            "test",
            "--json-out",
            str(out / "e.json"),
            "--csv",
            str(out / "e.csv"),
            "--markdown",
            str(out / "e.md"),
            "--plots",
            str(out / "plots"),
            "--predictions",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "e.json").read_text())
    assert [m["model"] for m in data["models"]] == [GOOD, WEAK]
    (test,) = data["mcnemar"]
    correct = [
        np.array([p["true"] == p["predicted"] for p in m["predictions"]]) for m in data["models"]
    ]
    assert test["a_only"] == int((correct[0] & ~correct[1]).sum())
    assert test["b_only"] == int((~correct[0] & correct[1]).sum())
    assert test["n"] == 12
    assert "McNemar" in result.output
    markdown = (out / "e.md").read_text()
    assert f"| {GOOD} |" in markdown and f"| {WEAK} |" in markdown
    assert (out / "e.csv").read_text().startswith("model,split,source,metric,class")
    pngs = sorted(p.name for p in (out / "plots").iterdir())
    assert pngs == sorted(
        f"{m}-{kind}.png" for m in (GOOD, WEAK) for kind in ("confusion", "roc", "reliability")
    )
    for png in (out / "plots").iterdir():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.rglob(".tmp-*")]


def test_eval_probabilities_are_predict_paths_probabilities(
    eval_home: Path, tmp_path: Path
) -> None:
    from cxr_covid.inference.batches import predict_paths
    from cxr_covid.models import store

    result = runner.invoke(
        app, ["eval", GOOD, "--no-save", "--json-out", str(tmp_path / "e.json"), "--predictions"]
    )
    assert result.exit_code == 0, result.output
    predictions = json.loads((tmp_path / "e.json").read_text())["models"][0]["predictions"]
    stored = store.resolve(GOOD)
    direct = list(
        predict_paths(stored.load(), [Path(p["path"]) for p in predictions], stored.record().prep)
    )
    for row, prediction in zip(predictions, direct, strict=True):
        assert prediction.probabilities is not None
        assert row["probabilities"] == pytest.approx(prediction.probabilities.tolist(), abs=1e-6)


def test_eval_other_split(eval_home: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["eval", GOOD, "--split", "val", "--json-out", str(tmp_path / "v.json")]
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["models"][0]["split"] == "val"
    bad = runner.invoke(app, ["eval", GOOD, "--split", "holdout"])
    assert bad.exit_code == 2
    assert "'--split': 'holdout' is not one of 'test', 'val', 'train'" in bad.output


def test_eval_external_folder_with_kaggle_names(eval_home: Path, tmp_path: Path) -> None:
    folder = write_class_folders(
        tmp_path / "external",
        per_class=3,
        folder_names={"covid": "COVID", "normal": "Normal", "viral_pneumonia": "Viral Pneumonia"},
        seed=5,
    )
    # Kaggle keeps lung masks beside the images: they must not be evaluated.
    shutil.copytree(folder / "COVID", folder / "COVID" / "masks")
    result = runner.invoke(
        app, ["eval", GOOD, "--data", str(folder), "--json-out", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 0, result.output
    model = json.loads((tmp_path / "x.json").read_text())["models"][0]
    assert model["split"] == "external" and model["n"] == 9
    record = json.loads((eval_home / "models" / GOOD / "model.json").read_text())
    assert record["evaluations"][-1]["split"] == "external"


def test_eval_external_folder_with_unknown_class_fails_clearly(
    eval_home: Path, tmp_path: Path
) -> None:
    folder = write_class_folders(tmp_path / "external", per_class=2, seed=6)
    write_class_folders(
        folder, per_class=2, labels=("covid",), folder_names={"covid": "Tuberculosis"}
    )
    result = runner.invoke(app, ["eval", GOOD, "--data", str(folder)])
    assert result.exit_code == 3, result.output
    assert "unknown class folder(s) 'Tuberculosis'" in result.output
    assert "--class-map" in result.output
    # Mapping it away makes the folder usable.
    ok = runner.invoke(
        app, ["eval", GOOD, "--data", str(folder), "--class-map", "tuberculosis=skip", "--no-save"]
    )
    assert ok.exit_code == 0, ok.output
    # A class the model never learnt is refused too, naming the folder.
    write_class_folders(
        folder, per_class=1, labels=("lung_opacity",), folder_names={"lung_opacity": "Lung_Opacity"}
    )
    untrained = runner.invoke(
        app, ["eval", GOOD, "--data", str(folder), "--class-map", "Tuberculosis=skip"]
    )
    assert untrained.exit_code == 3
    assert "'Lung_Opacity' (lung_opacity)" in untrained.output
    bad_map = runner.invoke(app, ["eval", GOOD, "--data", str(folder), "--class-map", "x=flu"])
    assert bad_map.exit_code == 2 and "unknown class 'flu'" in bad_map.output


def test_unreadable_image_is_reported_and_exits_partial(eval_home: Path, tmp_path: Path) -> None:
    folder = write_class_folders(tmp_path / "external", per_class=2, seed=7)
    (folder / "covid" / "broken.png").write_bytes(b"not a png")
    result = runner.invoke(
        app, ["eval", GOOD, "--data", str(folder), "--json-out", str(tmp_path / "p.json")]
    )
    assert result.exit_code == 8, result.output
    assert "broken.png" in result.output
    model = json.loads((tmp_path / "p.json").read_text())["models"][0]
    assert model["n"] == 6 and len(model["failed"]) == 1


def test_resplit_dataset_is_refused_unless_told(eval_home: Path) -> None:
    from cxr_covid.data.dataset import resolve_dataset

    dataset = resolve_dataset(DATASET)
    rows = dataset.rows()
    # Swap one training and one test image: a re-split.
    i = next(k for k, r in enumerate(rows) if r.split == "train")
    j = next(k for k, r in enumerate(rows) if r.split == "test")
    rows[i], rows[j] = replace(rows[i], split="test"), replace(rows[j], split="train")
    dataset.write_rows(rows)
    result = runner.invoke(app, ["eval", GOOD])
    assert result.exit_code == 3
    assert "re-split" in result.output
    forced = runner.invoke(app, ["eval", GOOD, "--ignore-split-change", "--bootstrap", "0"])
    assert forced.exit_code == 0, forced.output
    assert "Warning" in forced.output


def test_eval_usage_errors(eval_home: Path, tmp_path: Path) -> None:
    both = runner.invoke(app, ["eval", "--split", "val", "--data", str(tmp_path)])
    assert both.exit_code == 2
    missing = runner.invoke(app, ["eval", "no-such-model"])
    assert missing.exit_code == 6 and "no model named 'no-such-model'" in missing.output
    stray_map = runner.invoke(app, ["eval", "--class-map", "a=covid"])
    assert stray_map.exit_code == 2


def test_eval_without_models(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval"])
    assert result.exit_code == 6
    assert "no trained model yet" in result.output


def test_json_to_stdout(eval_home: Path) -> None:
    result = runner.invoke(app, ["eval", GOOD, "--json", "--no-save", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["models"][0]["model"] == GOOD


def test_eval_on_real_chest_xrays_of_mixed_formats(eval_home: Path, cxr_sample: Path) -> None:
    """24 real images (grayscale PNGs of varied sizes, RGB JPEGs) all go through the decode
    path; the blob-trained model's accuracy on them means nothing and is not asserted."""
    result = runner.invoke(app, ["eval", GOOD, "--data", str(cxr_sample), "--no-save", "--json"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)["models"][0]
    assert model["n"] == 24 and model["failed"] == []
    assert [c["accuracy"]["n"] for c in model["per_class"]] == [8, 8, 8]
