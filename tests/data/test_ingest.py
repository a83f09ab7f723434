"""`download --from-zip/--from-dir`: layouts, the real archive, classes, names, dedupe."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data.catalog import CHECKING
from cxr_covid.data.dataset import Dataset, resolve_dataset
from cxr_covid.data.extract import UNPACKING
from cxr_covid.data.ingest import download_dataset
from cxr_covid.data.manifest import read_manifest, sha256_file
from cxr_covid.errors import EXIT_DATA, EXIT_USAGE
from cxr_covid.progress import NullReporter
from tests.data.zips import layout_zip
from tests.helpers import write_class_folders

runner = CliRunner()


def _zip(tmp_path: Path, layout: str, per_class: int = 10) -> Path:
    path = tmp_path / f"{layout}.zip"
    path.write_bytes(layout_zip(layout, per_class))
    return path


@pytest.mark.parametrize(
    ("layout", "expected_layout"),
    [
        ("first", "kaggle-first"),
        ("intermediate", "kaggle-intermediate"),
        ("current", "kaggle-current"),
    ],
)
def test_every_kaggle_layout_is_catalogued(
    tmp_path: Path, cxr_home: Path, layout: str, expected_layout: str
) -> None:
    result = download_dataset(from_zip=_zip(tmp_path, layout))
    assert result.layout == expected_layout
    per_class: dict[str, int] = {}
    for by_class in result.counts.values():
        for label, n in by_class.items():
            per_class[label] = per_class.get(label, 0) + n
    assert per_class == {"covid": 10, "normal": 10, "viral_pneumonia": 10}
    rows = result.dataset.rows()
    assert not any("/masks/" in r.path for r in rows)
    # Each row's class comes from its folder, and its hash from the extracted file.
    for row in rows:
        assert row.sha256 == sha256_file(result.dataset.file(row))
        assert (row.width, row.height) == (24, 24)
    info = result.dataset.info()
    assert info["manifest_sha256"] and info["seed"] == 42
    assert info["split"]["fractions"] == [0.7, 0.15, 0.15]


def test_current_layout_skips_masks_and_lung_opacity_by_default(
    tmp_path: Path, cxr_home: Path
) -> None:
    result = download_dataset(from_zip=_zip(tmp_path, "current"), name="cur")
    assert result.skipped == {}  # lung opacity was not even extracted
    # Masks of the selected classes stay beside their images for the lung field (audit),
    # never in the manifest; lung opacity's are not extracted.
    masks = list((cxr_home / "datasets" / "cur").rglob("masks/*.png"))
    assert len(masks) == 30 and not any("Lung_Opacity" in str(m) for m in masks)
    assert not any("/masks/" in r.path for r in result.dataset.rows())
    assert not list((cxr_home / "datasets" / "cur").rglob("Lung_Opacity*"))


def test_classes_opts_lung_opacity_in(tmp_path: Path, cxr_home: Path) -> None:
    archive = _zip(tmp_path, "current")
    result = runner.invoke(
        app,
        [
            "download",
            "--from-zip",
            str(archive),
            "--classes",
            "covid,normal,viral_pneumonia,Lung_Opacity",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert sum(counts[s]["lung_opacity"] for s in ("train", "val", "test")) == 10


def test_unknown_class_is_a_data_error(tmp_path: Path, cxr_home: Path) -> None:
    result = runner.invoke(
        app, ["download", "--from-zip", str(_zip(tmp_path, "first")), "--classes", "covid,flu"]
    )
    assert result.exit_code == EXIT_DATA
    assert "unknown class 'flu'" in result.stderr


def test_real_archive_catalogues_120_per_class(cxr_dev_zip: Path, cxr_home: Path) -> None:
    result = runner.invoke(app, ["download", "--from-zip", str(cxr_dev_zip), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["dataset"] == "covid19-radiography-dev"
    assert report["layout"] == "kaggle-current"
    assert report["excluded"] == []
    totals: dict[str, int] = {}
    for by_class in report["counts"].values():
        for label, n in by_class.items():
            totals[label] = totals.get(label, 0) + n
    assert totals == {"covid": 120, "normal": 120, "viral_pneumonia": 120}
    # 70/15/15 of 120 per class, stratified.
    assert report["counts"]["train"] == {"covid": 84, "normal": 84, "viral_pneumonia": 84}
    assert report["counts"]["test"] == {"covid": 18, "normal": 18, "viral_pneumonia": 18}


def test_table_is_printed(tmp_path: Path, cxr_home: Path) -> None:
    result = runner.invoke(app, ["download", "--from-zip", str(_zip(tmp_path, "first"))])
    assert result.exit_code == 0, result.stderr
    for word in ("COVID-19", "normal", "viral pneumonia", "train", "val", "test", "Total"):
        assert word in result.stdout


def test_from_dir_with_class_map(tmp_path: Path, cxr_home: Path) -> None:
    source = write_class_folders(
        tmp_path / "mine",
        per_class=8,
        folder_names={"covid": "positive", "normal": "healthy", "viral_pneumonia": "vp"},
    )
    result = runner.invoke(app, ["download", "--from-dir", str(source)])
    assert result.exit_code == EXIT_DATA  # 'positive' and 'vp' are not class names
    assert "--class-map" in result.stderr
    result = runner.invoke(
        app,
        ["download", "--from-dir", str(source), "--class-map", "positive=covid,vp=Viral Pneumonia"],
    )
    assert result.exit_code == 0, result.stderr
    rows = resolve_dataset("mine").rows()
    assert {r.label for r in rows if r.path.startswith("images/positive/")} == {"covid"}
    assert {r.label for r in rows if r.path.startswith("images/vp/")} == {"viral_pneumonia"}
    assert len(rows) == 24
    assert (source / "positive").is_dir()  # the user's folder is copied, never moved


def test_bad_class_map_and_split_are_usage_errors(tmp_path: Path) -> None:
    source = write_class_folders(tmp_path / "d", per_class=4)
    result = runner.invoke(app, ["download", "--from-dir", str(source), "--class-map", "x"])
    assert result.exit_code == EXIT_USAGE
    result = runner.invoke(
        app, ["download", "--from-dir", str(source), "--split", "0.75,0.15,0.15"]
    )
    assert result.exit_code == EXIT_USAGE
    assert "105 %" in result.stderr


def test_existing_name_needs_force(tmp_path: Path, cxr_home: Path) -> None:
    archive = _zip(tmp_path, "first")
    assert (
        runner.invoke(app, ["download", "--from-zip", str(archive), "--name", "x"]).exit_code == 0
    )
    first = (cxr_home / "datasets" / "x" / "dataset.json").read_text()
    result = runner.invoke(app, ["download", "--from-zip", str(archive), "--name", "x"])
    assert result.exit_code == EXIT_USAGE
    assert "--force" in result.stderr
    assert (cxr_home / "datasets" / "x" / "dataset.json").read_text() == first
    other = _zip(tmp_path, "current", per_class=12)
    result = runner.invoke(app, ["download", "--from-zip", str(other), "--name", "x", "--force"])
    assert result.exit_code == 0, result.stderr
    assert len(Dataset(cxr_home / "datasets" / "x").rows()) == 36
    assert sorted(p.name for p in (cxr_home / "datasets").iterdir()) == ["x"]


def test_split_is_deterministic_and_seed_dependent(tmp_path: Path, cxr_home: Path) -> None:
    archive = _zip(tmp_path, "first", per_class=20)
    a = download_dataset(from_zip=archive, name="a").dataset.rows()
    b = download_dataset(from_zip=archive, name="b").dataset.rows()
    c = download_dataset(from_zip=archive, name="c", seed=7).dataset.rows()
    assert [(r.path, r.split) for r in a] == [(r.path, r.split) for r in b]
    assert [r.split for r in a] != [r.split for r in c]


def _smooth_image(rng: np.random.Generator, size: int = 96) -> Image.Image:
    """Low-frequency structure like a radiograph's (the noisy blob images are all texture,
    which no perceptual hash survives resizing)."""
    low = rng.integers(30, 220, size=(9, 9), dtype=np.uint8)
    return Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC)


def _jpeg_copy(img: Image.Image, size: int) -> bytes:
    buffer = io.BytesIO()
    img.resize((size, size), Image.Resampling.BILINEAR).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def test_duplicates_are_reported_and_dedupe_drops_them(tmp_path: Path, cxr_home: Path) -> None:
    source = write_class_folders(tmp_path / "src", per_class=12, size=48)
    # An exact copy within a class, and a resized re-encoded copy filed under another class.
    shutil.copy(source / "covid" / "covid-1.png", source / "covid" / "covid-copy.png")
    original = _smooth_image(np.random.default_rng(3))
    original.save(source / "covid" / "covid-2.png")
    (source / "normal" / "normal-from-covid.jpg").write_bytes(_jpeg_copy(original, 80))
    report = download_dataset(from_dir=source, name="plain")
    assert report.duplicates == [["images/covid/covid-1.png", "images/covid/covid-copy.png"]]
    near = {(n.a, n.b) for n in report.near_duplicates}
    assert ("images/covid/covid-1.png", "images/covid/covid-copy.png") in near
    cross = [n for n in report.near_duplicates if n.across_classes]
    assert [(n.a, n.b) for n in cross] == [
        ("images/covid/covid-2.png", "images/normal/normal-from-covid.jpg")
    ]
    assert len(report.near_duplicates) == 2  # distinct images are not near-duplicates
    assert len(report.dataset.rows()) == 38

    deduped = download_dataset(from_dir=source, name="deduped", dedupe=True)
    assert deduped.dropped == [
        "images/covid/covid-2.png",
        "images/covid/covid-copy.png",
        "images/normal/normal-from-covid.jpg",
    ]
    paths = {r.path for r in deduped.dataset.rows()}
    assert "images/covid/covid-1.png" in paths and len(paths) == 35
    saved = json.loads((deduped.dataset.root / "report.json").read_text())
    assert len(saved["dropped"]) == 3


def test_patient_ids_keep_a_patient_in_one_split(tmp_path: Path, cxr_home: Path) -> None:
    rng = np.random.default_rng(1)
    source = tmp_path / "kermany"
    for label, folder in (("normal", "NORMAL"), ("viral_pneumonia", "PNEUMONIA")):
        (source / folder).mkdir(parents=True)
        for patient in range(12):
            for k in range(3):
                pixels = rng.integers(0, 255, size=(16, 16), dtype=np.uint8)
                name = f"person{patient + (100 if label == 'normal' else 0)}_virus_{k}.jpeg"
                Image.fromarray(pixels).save(source / folder / name, format="JPEG")
    rows = download_dataset(from_dir=source, classes=("normal", "viral_pneumonia")).dataset.rows()
    splits: dict[str, set[str]] = {}
    for row in rows:
        assert row.patient
        splits.setdefault(row.patient, set()).add(row.split)
    assert all(len(s) == 1 for s in splits.values())
    assert {r.split for r in rows} == {"train", "val", "test"}


def test_manifest_is_readable_by_the_shared_reader(tmp_path: Path, cxr_home: Path) -> None:
    result = download_dataset(from_zip=_zip(tmp_path, "first"))
    rows = read_manifest(result.dataset.manifest_path)
    assert {r.origin for r in rows} == {"original"}
    assert {r.split for r in rows} == {"train", "val", "test"}


class _CtrlC(NullReporter):
    """Ctrl-C once the task `stage` has done three units."""

    def __init__(self, stage: str) -> None:
        self.stage = stage

    def advance(self, task: str, completed: int, total: int | None = None) -> None:
        if task == self.stage and completed >= 3:
            raise KeyboardInterrupt


@pytest.mark.parametrize("stage", [UNPACKING, CHECKING])
def test_interrupt_leaves_previous_dataset_and_no_partial_one(
    tmp_path: Path, cxr_home: Path, stage: str
) -> None:
    archive = _zip(tmp_path, "first")
    download_dataset(from_zip=archive, name="keep")
    before = (cxr_home / "datasets" / "keep" / "manifest.csv").read_bytes()

    with pytest.raises(KeyboardInterrupt):
        download_dataset(
            from_zip=_zip(tmp_path, "current"), name="keep", force=True, reporter=_CtrlC(stage)
        )
    with pytest.raises(KeyboardInterrupt):
        download_dataset(from_zip=archive, name="new", reporter=_CtrlC(stage))
    assert sorted(p.name for p in (cxr_home / "datasets").iterdir()) == ["keep"]
    assert (cxr_home / "datasets" / "keep" / "manifest.csv").read_bytes() == before
