"""The training cache and tf.data pipeline: same pixels as the shared decode path, built
once, rebuilt when the data or preprocessing change, every image once per epoch."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cxr_covid.data import pipeline
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.data.manifest import AUGMENTED, ManifestRow, sha256_file
from cxr_covid.errors import DataError
from tests.helpers import build_dataset, write_blob_png


@pytest.fixture
def blobs(cxr_home: Path) -> Dataset:
    return build_dataset(cxr_home, "blobs", per_class=5, size=40)


def test_cache_holds_exactly_what_load_for_model_returns(blobs: Dataset) -> None:
    prep = Preprocessing(image_size=24, resize="bilinear")
    cached = pipeline.cache_split(blobs, "train", prep)
    rows = pipeline.split_rows(blobs.rows(), "train")
    assert cached.count == len(rows) == 9
    assert cached.pixels_path.stat().st_size == 9 * 24 * 24 * 3
    with cached.reader() as reader:
        pixels, labels = reader.read(np.arange(cached.count))
    for i, row in enumerate(rows):
        np.testing.assert_array_equal(pixels[i], load_for_model(blobs.file(row), prep))
    # Labels follow the study's order: covid=0, normal=1, viral_pneumonia=2.
    assert cached.classes == ("covid", "normal", "viral_pneumonia")
    expected = [cached.classes.index(r.label) for r in rows]
    assert labels.tolist() == expected
    assert set(labels.tolist()) == {0, 1, 2}


def test_cache_is_reused_and_rebuilt_when_inputs_change(blobs: Dataset) -> None:
    prep = Preprocessing(image_size=16)
    first = pipeline.cache_split(blobs, "val", prep)
    stamp = first.pixels_path.stat().st_mtime_ns
    again = pipeline.cache_split(blobs, "val", prep)
    assert again.pixels_path == first.pixels_path
    assert again.pixels_path.stat().st_mtime_ns == stamp  # reused, not rewritten

    other_size = pipeline.cache_split(blobs, "val", Preprocessing(image_size=20))
    assert other_size.pixels_path != first.pixels_path
    other_resize = pipeline.cache_split(blobs, "val", Preprocessing(16, resize="bicubic"))
    assert other_resize.pixels_path != first.pixels_path

    # A truncated pixel file is detected and rebuilt.
    with first.pixels_path.open("r+b") as handle:
        handle.truncate(10)
    rebuilt = pipeline.cache_split(blobs, "val", prep)
    assert rebuilt.pixels_path.stat().st_size == rebuilt.count * 16 * 16 * 3

    # A changed manifest gets a new key.
    rows = blobs.rows()
    blobs.write_rows([*rows[:-1], replace(rows[-1], split="val")])
    changed = pipeline.cache_split(blobs, "val", prep)
    assert changed.pixels_path.parent != first.pixels_path.parent
    # Nothing half-written is left behind.
    assert not [p for p in blobs.cache_dir.rglob(".tmp-*")]


def test_augmented_rows_only_with_augment(blobs: Dataset) -> None:
    rows = blobs.rows()
    rng = np.random.default_rng(1)
    extra = []
    for i in range(3):
        path = write_blob_png(blobs.augmented_dir / "covid" / f"aug-{i}.png", "covid", 40, rng)
        extra.append(
            ManifestRow(
                path=path.relative_to(blobs.root).as_posix(),
                label="covid",
                sha256=sha256_file(path),
                width=40,
                height=40,
                split="train",
                origin=AUGMENTED,
                source=rows[0].path,
            )
        )
    blobs.write_rows(rows + extra)
    prep = Preprocessing(image_size=16)
    plain = pipeline.cache_split(blobs, "train", prep)
    with_aug = pipeline.cache_split(blobs, "train", prep, include_augmented=True)
    assert with_aug.count == plain.count + 3
    assert (with_aug.labels == 0).sum() == (plain.labels == 0).sum() + 3
    val = pipeline.cache_split(blobs, "val", prep, include_augmented=True)
    assert val.count == len(pipeline.split_rows(rows, "val"))


def test_unreadable_image_is_a_data_error(blobs: Dataset) -> None:
    row = pipeline.split_rows(blobs.rows(), "train")[0]
    blobs.file(row).write_bytes(b"not a png")
    with pytest.raises(DataError, match=row.path):
        pipeline.cache_split(blobs, "train", Preprocessing(image_size=16))
    assert not list(blobs.cache_dir.rglob("*.u8"))


def test_epoch_order_is_a_seeded_permutation_per_epoch() -> None:
    a = pipeline.epoch_order(50, seed=42, epoch=0)
    assert sorted(a.tolist()) == list(range(50))
    np.testing.assert_array_equal(a, pipeline.epoch_order(50, seed=42, epoch=0))
    assert not np.array_equal(a, pipeline.epoch_order(50, seed=42, epoch=1))
    assert not np.array_equal(a, pipeline.epoch_order(50, seed=7, epoch=0))


def test_dataset_yields_every_image_once_per_epoch(blobs: Dataset) -> None:
    cached = pipeline.cache_split(blobs, "train", Preprocessing(image_size=16))
    # Tag each image by its index in the cache so the batches can be traced back.
    with cached.reader() as reader:
        all_pixels, _ = reader.read(np.arange(cached.count))
        data = pipeline.make_dataset(
            cached, reader, global_batch=4, shuffle=True, seed=3, first_epoch=0, epochs=2
        )
        batches = [(x.numpy(), y.numpy()) for x, y in data]
    assert [len(y) for _, y in batches] == [4, 4, 1, 4, 4, 1]  # never across epochs
    assert batches[0][0].dtype == np.float32
    seen = []
    for x, _ in batches:
        for image in x:
            matches = np.flatnonzero(
                (all_pixels.reshape(cached.count, -1) == image.reshape(-1)).all(axis=1)
            )
            seen.append(int(matches[0]))
    first, second = seen[:9], seen[9:]
    assert sorted(first) == sorted(second) == list(range(9))
    assert first == pipeline.epoch_order(9, 3, 0).tolist()
    assert second == pipeline.epoch_order(9, 3, 1).tolist()


def test_reader_uses_pread_not_mmap(blobs: Dataset) -> None:
    cached = pipeline.cache_split(blobs, "train", Preprocessing(image_size=16))
    with cached.reader() as reader:
        reader.read(np.arange(cached.count))
        maps = Path(f"/proc/{os.getpid()}/maps")
        if not maps.exists():
            pytest.skip("no /proc/PID/maps here to see the process's mappings")
        assert str(cached.pixels_path) not in maps.read_text()
