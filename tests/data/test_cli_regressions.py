"""Download and augment from the command line: bugs found by walking the documented
commands as a new user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.helpers import build_dataset

runner = CliRunner()


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
def test_augment_refuses_a_seed_numpy_cannot_take(cxr_home: Path, seed: str) -> None:
    # A negative seed used to crash inside NumPy's SeedSequence with a traceback (exit 1).
    build_dataset(cxr_home, "d", per_class=4, size=16)
    result = runner.invoke(app, ["augment", "--seed", seed])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output
    assert not (cxr_home / "datasets" / "d" / "augmented").exists()


def test_download_refuses_a_negative_seed_as_a_usage_error(tmp_path: Path) -> None:
    # It used to exit 3 blaming a class with "only 8 patient(s)" for scikit-learn's complaint.
    from tests.helpers import write_class_folders

    write_class_folders(tmp_path / "xrays", per_class=8, size=16)
    result = runner.invoke(app, ["download", "--from-dir", str(tmp_path / "xrays"), "--seed", "-5"])
    assert result.exit_code == 2, result.output
    assert "patient" not in result.output


def test_augmenting_an_older_dataset_does_not_make_it_the_default(cxr_home: Path) -> None:
    # The default --dataset ("the only or newest") was the one whose manifest changed last,
    # so augmenting yesterday's dataset silently made train/augment pick it over today's.
    import json
    import os

    from cxr_covid.data.dataset import resolve_dataset

    for name, day in (("older", "01"), ("newer", "02")):
        build_dataset(cxr_home, name, per_class=2, size=16)
        info_path = cxr_home / "datasets" / name / "dataset.json"
        info = json.loads(info_path.read_text(encoding="utf-8"))
        info["created"] = f"2026-01-{day}T00:00:00+00:00"
        info_path.write_text(json.dumps(info), encoding="utf-8")
    manifest = cxr_home / "datasets" / "older" / "manifest.csv"
    later = (cxr_home / "datasets" / "newer" / "manifest.csv").stat().st_mtime + 60
    os.utime(manifest, (later, later))  # what `augment` does to the older one
    assert resolve_dataset(None).name == "newer"


def test_augment_force_removes_a_superseded_empty_folder(cxr_home: Path) -> None:
    # --balance on a balanced class makes an empty augmented/<class>-s42-n<count>/ folder; a
    # later --force with other settings left it behind (found only through manifest rows).
    from cxr_covid.data.augment import augment_dataset
    from cxr_covid.data.dataset import resolve_dataset

    build_dataset(cxr_home, "d", per_class=5, size=16)
    dataset = resolve_dataset("d")
    augment_dataset(dataset, factor=None, balance=True, classes=("covid",))
    folders = sorted(p.name for p in dataset.augmented_dir.iterdir())
    assert len(folders) == 1 and not any((dataset.augmented_dir / folders[0]).iterdir())
    augment_dataset(dataset, factor=2, classes=("covid",), force=True)
    assert sorted(p.name for p in dataset.augmented_dir.iterdir()) == ["covid-s42-n6"]


def test_download_errors_name_the_users_folder_not_the_internal_copy(tmp_path: Path) -> None:
    # "no images of class viral_pneumonia under images (...)": `images` is the dataset's
    # internal copy; the user gave --from-dir some/where.
    from tests.helpers import write_class_folders

    source = tmp_path / "hospital-b"
    write_class_folders(source, per_class=3, size=16, labels=("covid", "normal"))
    result = runner.invoke(app, ["download", "--from-dir", str(source)])
    assert result.exit_code == 3, result.output
    assert str(source) in result.output.replace("\n", "")
    assert "under images" not in result.output


def test_augment_takes_d_for_dataset_like_train(cxr_home: Path) -> None:
    # `train -d NAME` worked, `augment -d NAME` was "No such option: -d".
    build_dataset(cxr_home, "d", per_class=4, size=16)
    result = runner.invoke(app, ["augment", "-d", "d", "--factor", "2", "--json"])
    assert result.exit_code == 0, result.output


def _zip_of_class_folders(tmp_path: Path) -> Path:
    import zipfile

    from tests.helpers import write_class_folders

    folders = write_class_folders(tmp_path / "src", per_class=10, size=16)
    archive = tmp_path / "xrays.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folders.rglob("*.png")):
            zf.write(path, path.relative_to(folders).as_posix())
    return archive


def test_download_from_zip_checks_sha256(cxr_home: Path, tmp_path: Path) -> None:
    # --sha256 was silently ignored with --from-zip: a wrong hash still made a dataset.
    import hashlib

    archive = _zip_of_class_folders(tmp_path)
    wrong = "0" * 64
    result = runner.invoke(app, ["download", "--from-zip", str(archive), "--sha256", wrong])
    assert result.exit_code == 4, result.output
    assert "sha256" in result.output
    assert not (cxr_home / "datasets" / "xrays").exists()
    right = hashlib.sha256(archive.read_bytes()).hexdigest().upper()
    result = runner.invoke(app, ["download", "--from-zip", str(archive), "--sha256", right])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("source", ["--from-zip", "--from-dir"])
def test_download_refuses_a_malformed_or_pointless_sha256(tmp_path: Path, source: str) -> None:
    archive = _zip_of_class_folders(tmp_path)
    where = archive if source == "--from-zip" else tmp_path / "src"
    digest = "zz" if source == "--from-zip" else "0" * 64
    result = runner.invoke(app, ["download", source, str(where), "--sha256", digest])
    assert result.exit_code == 2, result.output
    assert "--sha256" in result.output
