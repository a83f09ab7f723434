"""`cxr-covid augment`: the study's 5x table, train only, deterministic, idempotent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data.augment import augment_dataset, transform
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.images import read_image
from cxr_covid.data.manifest import ORIGINAL, sha256_file
from cxr_covid.errors import EXIT_DATA, EXIT_USAGE
from tests.helpers import build_dataset

runner = CliRunner()


def _train_counts(dataset: Dataset) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in dataset.rows():
        if row.split == "train":
            counts[row.label] = counts.get(row.label, 0) + 1
    return counts


def test_study_factor_table(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "d", per_class=15, size=24)
    originals = dataset.rows()
    result = runner.invoke(app, ["augment", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    # 60 % of 15 = 9 training images per class; covid x5 = 45, the others untouched.
    assert report["before"] == {"covid": 9, "normal": 9, "viral_pneumonia": 9}
    assert report["after"] == {"covid": 45, "normal": 9, "viral_pneumonia": 9}
    assert report["created"] == 36
    assert _train_counts(dataset) == report["after"]
    rows = dataset.rows()
    assert [r for r in rows if r.origin == ORIGINAL] == originals  # originals unchanged
    augmented = [r for r in rows if r.origin != ORIGINAL]
    train_sources = {r.path for r in originals if r.split == "train" and r.label == "covid"}
    for row in augmented:
        assert row.split == "train" and row.origin == "augmented" and row.label == "covid"
        assert row.source in train_sources  # never made from val or test images
        assert row.path.startswith("augmented/")
        assert row.sha256 == sha256_file(dataset.file(row))
    # Each training image is the source of exactly four new ones (5x = 1 + 4).
    per_source: dict[str, int] = {}
    for row in augmented:
        per_source[row.source] = per_source.get(row.source, 0) + 1
    assert set(per_source.values()) == {4} and len(per_source) == 9


def test_table_is_printed(cxr_home: Path) -> None:
    build_dataset(cxr_home, "d", per_class=10, size=24)
    result = runner.invoke(app, ["augment"])
    assert result.exit_code == 0, result.stderr
    assert "Original data" in result.stdout and "Data augmentation" in result.stdout
    assert "30" in result.stdout  # covid: 6 training images x 5


def test_idempotent_and_force_redoes_identically(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "d", per_class=10, size=24)
    first = augment_dataset(dataset)
    manifest = dataset.manifest_path.read_bytes()
    again = augment_dataset(dataset)
    assert again.created == 0 and again.skipped == ["covid"]
    assert dataset.manifest_path.read_bytes() == manifest
    assert again.after == first.after
    redone = augment_dataset(dataset, force=True)
    assert redone.created == first.created
    assert dataset.manifest_path.read_bytes() == manifest  # deterministic: same bytes


def test_deterministic_across_datasets_and_seed_dependent(cxr_home: Path) -> None:
    a = build_dataset(cxr_home, "a", per_class=10, size=24)
    b = build_dataset(cxr_home, "b", per_class=10, size=24)
    c = build_dataset(cxr_home, "c", per_class=10, size=24)
    augment_dataset(a, seed=1)
    augment_dataset(b, seed=1)
    augment_dataset(c, seed=2)

    def hashes(d: Dataset) -> list[str]:
        return [r.sha256 for r in d.rows() if r.origin != ORIGINAL]

    assert hashes(a) == hashes(b)
    assert hashes(a) != hashes(c)


def test_new_settings_need_force_and_replace_old_images(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "d", per_class=10, size=24)
    augment_dataset(dataset)
    old_folders = {p.name for p in dataset.augmented_dir.iterdir()}
    result = runner.invoke(app, ["augment", "--factor", "3"])
    assert result.exit_code == EXIT_USAGE
    assert "--force" in result.stderr
    result = runner.invoke(app, ["augment", "--factor", "3", "--force", "--json"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["after"]["covid"] == 18
    assert _train_counts(dataset)["covid"] == 18
    folders = {p.name for p in dataset.augmented_dir.iterdir()}
    assert folders.isdisjoint(old_folders) and len(folders) == 1
    for row in dataset.rows():
        assert dataset.file(row).is_file()


def test_missing_files_are_regenerated(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "d", per_class=10, size=24)
    augment_dataset(dataset)
    victim = next(r for r in dataset.rows() if r.origin != ORIGINAL)
    dataset.file(victim).unlink()
    repaired = augment_dataset(dataset)
    assert repaired.created == 24
    assert dataset.file(victim).is_file()


def test_balance_raises_minorities_to_the_majority(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "d", per_class=10, size=24)
    # Make covid a minority: move some of its training images to... nothing; drop rows.
    rows = dataset.rows()
    covid_train = [r for r in rows if r.label == "covid" and r.split == "train"]
    dataset.write_rows([r for r in rows if r not in covid_train[:4]])
    result = augment_dataset(dataset, balance=True, classes=("covid", "viral_pneumonia"))
    assert result.before == {"covid": 2, "normal": 6, "viral_pneumonia": 6}
    assert result.after == {"covid": 6, "normal": 6, "viral_pneumonia": 6}
    assert result.created == 4


def test_unknown_or_absent_class(cxr_home: Path) -> None:
    build_dataset(cxr_home, "d", per_class=5, size=24)
    result = runner.invoke(app, ["augment", "--classes", "lung_opacity"])
    assert result.exit_code == EXIT_DATA
    result = runner.invoke(app, ["augment", "--classes", "flu"])
    assert result.exit_code == EXIT_DATA


def test_no_dataset_is_a_data_error() -> None:
    result = runner.invoke(app, ["augment"])
    assert result.exit_code == EXIT_DATA
    assert "download" in result.stderr


# Seeds 0-3 flip (and 0, 2, 3 rotate), 4 only rotates, 5 does neither.
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_transform_is_a_flip_and_or_small_rotation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[5:15, 5:15] = 255  # a bright square in the top-left
    out = transform(pixels, np.random.default_rng(seed))
    flip, rotate = rng.random() < 0.7, rng.random() < 0.7
    assert out.shape == pixels.shape and out.dtype == np.uint8
    left, right = out[:, :20].mean(), out[:, 20:].mean()
    assert (right > left) == flip  # a flip moves the square to the right
    assert np.array_equal(out, pixels) == (not rotate and not flip)  # identity when neither
    # Never more than ±15°: the square stays in its quadrant.
    assert out[20:].mean() < out[:20].mean()


def test_augmented_images_decode_with_the_shared_path(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "d", per_class=5, size=24)
    augment_dataset(dataset, factor=2)
    augmented = [row for row in dataset.rows() if row.origin != ORIGINAL]
    assert augmented
    for row in augmented:
        assert read_image(dataset.file(row)).shape == (24, 24, 3)


def test_identical_training_images_get_distinct_files(cxr_home: Path) -> None:
    import dataclasses
    import shutil

    dataset = build_dataset(cxr_home, "d", per_class=10, size=24)
    rows = dataset.rows()
    first = next(r for r in rows if r.label == "covid" and r.split == "train")
    twin = dataclasses.replace(first, path="images/covid/twin.png")
    shutil.copy(dataset.file(first), dataset.file(twin))
    dataset.write_rows([*rows, twin])
    augment_dataset(dataset)
    augmented = [r.path for r in dataset.rows() if r.origin != ORIGINAL]
    assert len(augmented) == len(set(augmented)) == 28  # 7 training images x 4
    assert all(dataset.file(r).is_file() for r in dataset.rows())


def test_augment_says_when_it_makes_a_class_the_largest(cxr_home: Path) -> None:
    """Issue 21, item 12: 420 -> 2,100 COVID-19 against 280 viral pneumonia went unsaid."""
    build_dataset(cxr_home, "d", per_class=10, size=24)
    result = runner.invoke(app, ["augment"])
    assert result.exit_code == 0, result.stderr
    assert "Original data" in result.stdout  # the counts before and after
    warning = " ".join(result.stderr.split())
    assert "Warning: augmentation makes covid the largest training class (6 -> 30" in warning
    data = json.loads(runner.invoke(app, ["augment", "--json"]).stdout)
    assert data["warnings"] and "covid" in data["warnings"][0]


def test_balance_raises_to_the_largest_class_without_a_warning(cxr_home: Path) -> None:
    build_dataset(cxr_home, "d", per_class=10, size=24)
    result = runner.invoke(app, ["augment", "--balance", "--classes", "covid"])
    assert result.exit_code == 0, result.stderr
    assert "Warning" not in result.stderr
