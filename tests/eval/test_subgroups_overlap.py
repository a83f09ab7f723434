"""`eval` per class x collection (or --data folder), and external images the model has seen."""

from __future__ import annotations

import csv
import io
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid import stats
from cxr_covid.cli import app
from cxr_covid.data.dataset import resolve_dataset
from cxr_covid.data.manifest import sha256_file, split_hash
from cxr_covid.data.overlap import IDENTICAL, NEAR_DUPLICATE, external_overlaps
from cxr_covid.errors import EXIT_DATA
from cxr_covid.evaluation import report as eval_report
from cxr_covid.evaluation.metrics import compute_metrics
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation
from cxr_covid.evaluation.subgroups import SMALL_SUBGROUP, compute_subgroups
from cxr_covid.evaluation.testsets import EvalImages
from tests.conftest import SHARED_DATA
from tests.eval.conftest import DATASET, GOOD
from tests.helpers import build_dataset, write_blob_png

runner = CliRunner()
CLASSES = ["covid", "normal", "viral_pneumonia"]


# --- subgroups --------------------------------------------------------------------------------


def test_subgroups_count_each_class_within_each_group() -> None:
    y_true = np.array([0] * 40 + [1] * 10 + [1] * 5)
    # covid: 36 of 40 right (all from "a"); normal from "a": 9 of 10; normal from "b": 1 of 5.
    y_pred = np.array([0] * 36 + [1] * 4 + [1] * 9 + [0] + [1] + [0] * 4)
    groups = ["a"] * 50 + ["b"] * 5
    found = compute_subgroups(CLASSES, y_true, y_pred, groups)
    assert [(g.cls, g.group, g.accuracy.successes, g.accuracy.n) for g in found] == [
        ("covid", "a", 36, 40),
        ("normal", "a", 9, 10),
        ("normal", "b", 1, 5),
    ]
    assert [g.small for g in found] == [False, True, True]
    assert found[2].accuracy.low == pytest.approx(stats.wilson_interval(1, 5)[0])
    assert found[0].to_dict()["small"] is False
    assert found[1].to_dict()["accuracy"]["n"] == 10


def test_thirty_images_is_not_small() -> None:
    y = np.zeros(SMALL_SUBGROUP, dtype=int)
    (group,) = compute_subgroups(CLASSES, y, y, ["x"] * SMALL_SUBGROUP)
    assert not group.small
    (fewer,) = compute_subgroups(CLASSES, y[:-1], y[:-1], ["x"] * (SMALL_SUBGROUP - 1))
    assert fewer.small


def _evaluation_with_subgroups() -> ModelEvaluation:
    y_true = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    y_pred = np.array([0, 0, 1, 1, 0, 0, 2, 2])
    probs = np.full((len(y_true), 3), 0.1)
    probs[np.arange(len(y_true)), y_pred] = 0.8
    metrics = compute_metrics(y_true, probs, CLASSES, bootstrap=0)
    groups = ["kaggle-covid"] * 3 + ["kermany", "rsna", "rsna"] + ["kermany"] * 2
    return ModelEvaluation(
        model_id="m",
        architecture="baseline",
        augmented=False,
        image_size=32,
        classes=CLASSES,
        test_set=EvalImages(
            paths=tuple(Path(f"/x/{i}.png") for i in range(len(y_true))),
            labels=tuple(CLASSES[i] for i in y_true),
            split="test",
            source="dataset hand, test split",
            groups=tuple(groups),
        ),
        **metrics.by_name(),
        paths=[Path(f"/x/{i}.png") for i in range(len(y_true))],
        y_true=y_true,
        probabilities=probs,
        subgroups=compute_subgroups(CLASSES, y_true, y_pred, groups),
    )


def test_subgroups_reach_json_csv_and_markdown() -> None:
    report = EvaluationReport([_evaluation_with_subgroups()], [], [], 0.95, 0, 1)
    data = report.to_dict()["models"][0]
    normal_rsna = next(
        g for g in data["subgroups"] if g["class"] == "normal" and g["group"] == "rsna"
    )
    assert normal_rsna["accuracy"]["successes"] == 0 and normal_rsna["accuracy"]["n"] == 2
    assert normal_rsna["small"] is True
    rows = list(csv.DictReader(io.StringIO(eval_report.to_csv(report))))
    sub = [r for r in rows if r["metric"].startswith("subgroup_accuracy:")]
    assert {(r["metric"], r["class"], r["successes"], r["n"], r["flag"]) for r in sub} == {
        ("subgroup_accuracy:kaggle-covid", "covid", "2", "3", "small"),
        ("subgroup_accuracy:kermany", "normal", "1", "1", "small"),
        ("subgroup_accuracy:rsna", "normal", "0", "2", "small"),
        ("subgroup_accuracy:kermany", "viral_pneumonia", "2", "2", "small"),
    }
    assert not any(r["flag"] for r in rows if not r["metric"].startswith("subgroup"))
    markdown = eval_report.to_markdown(report)
    assert "### Per class and source" in markdown
    assert "| normal | rsna | 0.00% (0/2) [0.0-65.8] | small (under 30 images) |" in markdown


# --- external overlaps ------------------------------------------------------------------------


def _external_folder(tmp_path: Path, cxr_home: Path) -> tuple[Path, dict[str, str]]:
    """An external folder: a train image copied, a val image re-encoded (resized JPEG), a
    test image copied (held out: not an overlap) and two new images. Returns name -> kind."""
    build_dataset(cxr_home, "blobs", per_class=10, size=48)
    dataset = resolve_dataset("blobs")
    rows = [r for r in dataset.rows() if r.label == "normal"]
    by_split = {s: next(r for r in rows if r.split == s) for s in ("train", "val", "test")}
    # The generated blobs are mostly noise, which no perceptual hash survives; a radiograph
    # is smooth. Make the val image smooth, as a real one is, and record its new hash.
    yy, xx = np.mgrid[0:48, 0:48] / 48
    smooth = 60 + 120 * xx + 70 * np.exp(-((yy - 0.4) ** 2 + (xx - 0.6) ** 2) / 0.02)
    Image.fromarray(smooth.clip(0, 255).astype(np.uint8)).save(dataset.file(by_split["val"]))
    dataset.write_rows(
        [
            replace(r, sha256=sha256_file(dataset.file(r))) if r == by_split["val"] else r
            for r in dataset.rows()
        ]
    )
    ext = tmp_path / "ext" / "normal"
    ext.mkdir(parents=True)
    shutil.copy(dataset.file(by_split["train"]), ext / "copy-train.png")
    with Image.open(dataset.file(by_split["val"])) as image:
        image.convert("RGB").resize((40, 40)).save(ext / "reencoded-val.jpg", quality=80)
    shutil.copy(dataset.file(by_split["test"]), ext / "copy-test.png")
    rng = np.random.default_rng(123)
    for i in range(2):
        write_blob_png(ext / f"new-{i}.png", "normal", 48, rng)
    return tmp_path / "ext", {"copy-train.png": IDENTICAL, "reencoded-val.jpg": NEAR_DUPLICATE}


def test_external_overlaps_finds_copies_of_training_and_validation_images(
    tmp_path: Path, cxr_home: Path
) -> None:
    root, expected = _external_folder(tmp_path, cxr_home)
    paths = sorted((root / "normal").iterdir())
    dataset = resolve_dataset("blobs")
    check = external_overlaps(paths, "blobs", split_sha256=split_hash(dataset.rows()))
    found = {o.path.name: o.kind for o in check.overlaps}
    assert found == expected
    near = next(o for o in check.overlaps if o.kind == NEAR_DUPLICATE)
    assert near.split == "val" and 0 < near.distance <= 10
    identical = next(o for o in check.overlaps if o.kind == IDENTICAL)
    assert identical.split == "train" and identical.distance == 0
    assert "train+val" in check.checked_against and check.warnings == []
    assert (dataset.cache_dir / "dhash-v1.json").is_file()  # the next check decodes nothing
    again = external_overlaps(paths, "blobs")
    assert {o.path.name for o in again.overlaps} == set(expected)


def test_a_resplit_dataset_is_checked_whole(tmp_path: Path, cxr_home: Path) -> None:
    root, expected = _external_folder(tmp_path, cxr_home)
    paths = sorted((root / "normal").iterdir())
    check = external_overlaps(paths, "blobs", split_sha256="0" * 64)
    assert "re-split" in check.warnings[0]
    assert {o.path.name for o in check.overlaps} == {*expected, "copy-test.png"}


def test_eval_data_leaves_out_what_the_model_trained_on(eval_home: Path, tmp_path: Path) -> None:
    dataset = resolve_dataset(DATASET)
    train = [r for r in dataset.rows() if r.split == "train"]
    ext = tmp_path / "ext"
    for label in ("covid", "normal"):
        folder = ext / label
        folder.mkdir(parents=True)
        first = next(r for r in train if r.label == label)
        shutil.copy(dataset.file(first), folder / "seen.png")
        rng = np.random.default_rng(7 if label == "covid" else 8)
        for i in range(3):
            write_blob_png(folder / f"new-{i}.png", label, 32, rng)
    result = runner.invoke(
        app, ["eval", GOOD, "--data", str(ext), "--json", "--no-save", "--bootstrap", "0"]
    )
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)["models"][0]
    assert model["n"] == 6
    assert sorted(Path(o["path"]).parent.name for o in model["overlaps"]) == ["covid", "normal"]
    assert {o["kind"] for o in model["overlaps"]} == {"identical"}
    assert any("2 external image(s) overlap" in w for w in model["warnings"])
    assert [
        (g["class"], g["group"], g["accuracy"]["n"], g["small"]) for g in model["subgroups"]
    ] == [
        ("covid", "folder ext", 3, True),
        ("normal", "folder ext", 3, True),
    ]
    # Nothing left once every image is a training image: a clear error.
    for new in ext.rglob("new-*.png"):
        new.unlink()
    empty = runner.invoke(app, ["eval", GOOD, "--data", str(ext), "--no-save"])
    assert empty.exit_code == EXIT_DATA
    assert "nothing external is left" in empty.output


def test_eval_on_the_split_groups_by_collection(eval_home: Path) -> None:
    result = runner.invoke(app, ["eval", GOOD, "--json", "--no-save", "--bootstrap", "0"])
    assert result.exit_code == 0, result.output
    model = json.loads(result.stdout)["models"][0]
    # The generated dataset records no provenance: one "unknown" group per class.
    assert [(g["class"], g["group"], g["accuracy"]["n"]) for g in model["subgroups"]] == [
        ("covid", "unknown", 4),
        ("normal", "unknown", 4),
        ("viral_pneumonia", "unknown", 4),
    ]
    assert model["overlaps"] == []
    table = runner.invoke(app, ["eval", GOOD, "--no-save", "--bootstrap", "0"])
    assert "per class and source" in table.output
    assert "small (under 30 images)" in table.output


# --- the real development data ------------------------------------------------------------------


def test_real_dev_model_on_adult_normals(tmp_path: Path) -> None:
    """Trained on the dev zip (paediatric normals), evaluated per collection and on the
    adult normals as an external folder: none of them overlaps the training images."""
    zip_path = SHARED_DATA / "cxr-dev" / "covid19-radiography-dev.zip"
    sources = SHARED_DATA / "cxr-dev" / "sources.csv"
    adults = SHARED_DATA / "cxr-dev" / "adult-normal"
    if not (zip_path.is_file() and sources.is_file() and adults.is_dir()):
        pytest.skip(f"development data not available under {SHARED_DATA / 'cxr-dev'}")
    downloaded = runner.invoke(
        app, ["download", "--from-zip", str(zip_path), "--sources", str(sources), "--name", "dev"]
    )
    assert downloaded.exit_code == 0, downloaded.output
    trained = runner.invoke(
        app,
        ["train", "--dataset", "dev", "--epochs", "1", "--image-size", "32", "--name", "dev32"],
    )
    assert trained.exit_code == 0, trained.output
    own = runner.invoke(app, ["eval", "dev32", "--json", "--no-save", "--bootstrap", "0"])
    groups = {(g["class"], g["group"]) for g in json.loads(own.stdout)["models"][0]["subgroups"]}
    assert groups == {
        ("covid", "kaggle-covid"),
        ("normal", "kermany"),
        ("viral_pneumonia", "kermany"),
    }
    external = runner.invoke(
        app,
        ["eval", "dev32", "--data", str(adults), "--json", "--no-save", "--bootstrap", "0"],
    )
    assert external.exit_code == 0, external.output
    model = json.loads(external.stdout)["models"][0]
    assert model["overlaps"] == []
    (group,) = model["subgroups"]
    assert (group["class"], group["group"], group["accuracy"]["n"]) == (
        "normal",
        "folder adult-normal",
        120,
    )


def test_mirrored_copies_of_training_images_are_found(tmp_path: Path, cxr_home: Path) -> None:
    # Issue 22, case 9: a flipped copy of a training radiograph is leakage, not external data.
    build_dataset(cxr_home, "blobs", per_class=10, size=48)
    dataset = resolve_dataset("blobs")
    train = next(r for r in dataset.rows() if r.split == "train")
    yy, xx = np.mgrid[0:48, 0:48] / 48  # smooth and lopsided, as a radiograph is
    smooth = 40 + 150 * xx * yy + 60 * np.exp(-((yy - 0.3) ** 2 + (xx - 0.7) ** 2) / 0.02)
    pixels = smooth.clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(dataset.file(train))
    dataset.write_rows(
        [
            replace(r, sha256=sha256_file(dataset.file(r))) if r == train else r
            for r in dataset.rows()
        ]
    )
    ext = tmp_path / "ext"
    ext.mkdir()
    Image.fromarray(np.ascontiguousarray(pixels[:, ::-1])).save(ext / "left-right.png")
    Image.fromarray(np.ascontiguousarray(pixels[::-1, :])).save(ext / "up-down.png")
    check = external_overlaps(sorted(ext.iterdir()), "blobs")
    assert {o.path.name: o.kind for o in check.overlaps} == {
        "left-right.png": NEAR_DUPLICATE,
        "up-down.png": NEAR_DUPLICATE,
    }
    assert all(o.match == train.path for o in check.overlaps)
    assert "mirrored" in check.summary() and "cropped" in check.to_dict()["checked_for"]
