"""Training input: decode each image once into an on-disk uint8 cache, then stream batches.

Why a cache: decoding and resizing a 299 px PNG costs far more CPU than reading 150 KB of
ready pixels, and the study's recipe (everything in one float32 array, ~0.6 MB per image)
needs 12 GB for the current release. Here every image goes through
`cxr_covid.data.images.load_for_model` exactly once (the shared decode path, so training
sees the same pixels as eval, predict and heatmap) into

    <dataset>/cache/<key>/<split>.u8            N * S * S * 3 bytes, rows in `order` below
    <dataset>/cache/<key>/<split>.labels.npy    N int32 labels (index into `classes`)
    <dataset>/cache/<key>/<split>.json          key, classes, image size, the row order

where `key` hashes the manifest, image size, resize method, input view, normalisation and
class list, so a changed manifest or preprocessing never reuses stale pixels. Every file is
written atomically and the .json (written last) marks a complete entry.

Batches are read with `os.pread` rather than `np.memmap`: mapped pages count in the
process's resident set, so a memmap of 20,000 images would make peak memory grow with the
data set; pread'd bytes live in the kernel's page cache, which the kernel reclaims freely.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic
from cxr_covid.classes import label_order
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.data.manifest import AUGMENTED, ManifestRow, manifest_hash, select
from cxr_covid.errors import CxrCovidError, DataError
from cxr_covid.progress import NULL, Reporter

CACHE_FORMAT = 1
# Images decoded per chunk while building: bounds the memory of a build to a few MB
# whatever the data set's size, while keeping every decode thread busy.
_BUILD_CHUNK = 64


@dataclass(frozen=True)
class CachedSplit:
    """One split's pixels on disk and its labels in memory (4 bytes per image)."""

    split: str
    pixels_path: Path
    labels: np.ndarray  # (N,) int32
    image_size: int
    classes: tuple[str, ...]

    @property
    def count(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_bytes(self) -> int:
        return self.image_size * self.image_size * 3

    def reader(self) -> BatchReader:
        return BatchReader(self)


class BatchReader:
    """Reads images by index with `os.pread` (thread-safe: no shared file offset)."""

    def __init__(self, cached: CachedSplit) -> None:
        self.cached = cached
        self._fd: int | None = os.open(cached.pixels_path, os.O_RDONLY)

    def read(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._fd is None:
            raise RuntimeError("reader is closed")
        size = self.cached.image_size
        item = self.cached.image_bytes
        out = np.empty((len(indices), size, size, 3), dtype=np.uint8)
        flat = out.reshape(len(indices), item)
        for row, index in enumerate(indices):
            data = os.pread(self._fd, item, int(index) * item)
            if len(data) != item:
                raise DataError(f"{self.cached.pixels_path}: truncated cache (delete it)")
            flat[row] = np.frombuffer(data, dtype=np.uint8)
        return out, self.cached.labels[np.asarray(indices, dtype=np.int64)]

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> BatchReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def dataset_classes(rows: Sequence[ManifestRow]) -> list[str]:
    """The classes a model trained on these rows predicts, in the study's label order."""
    return label_order(sorted({r.label for r in rows}))


def split_rows(
    rows: Sequence[ManifestRow], split: str, *, include_augmented: bool = False
) -> list[ManifestRow]:
    chosen = select(list(rows), split, include_augmented=include_augmented)
    if include_augmented and split == "train":
        # An augmented row is only ever a training image, whatever its split column says.
        chosen += [r for r in rows if r.origin == AUGMENTED and r.split != split]
    return chosen


def cache_key(rows: Sequence[ManifestRow], prep: Preprocessing, classes: Sequence[str]) -> str:
    text = json.dumps(
        {
            "format": CACHE_FORMAT,
            "manifest": manifest_hash(list(rows)),
            "image_size": prep.image_size,
            "resize": prep.resize,
            "classes": list(classes),
            # Only when not the default, so existing caches keep their keys.
            **({"input": prep.input} if prep.input != "full" else {}),
            **({"normalize": prep.normalize} if prep.normalize != "none" else {}),
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _entry_name(split: str, include_augmented: bool) -> str:
    return f"{split}+augmented" if include_augmented else split


def _valid(meta_path: Path, pixels_path: Path, labels_path: Path, expected: dict[str, Any]) -> bool:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        labels = np.load(labels_path, allow_pickle=False)
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or any(meta.get(k) != v for k, v in expected.items()):
        return False
    count = int(meta.get("count", -1))
    item = int(expected["image_size"]) ** 2 * 3
    return (
        labels.shape == (count,)
        and pixels_path.is_file()
        and pixels_path.stat().st_size == count * item
    )


def _decode(dataset: Dataset, row: ManifestRow, prep: Preprocessing) -> np.ndarray:
    try:
        return load_for_model(dataset.file(row), prep)
    except CxrCovidError as exc:
        raise DataError(
            f"{row.path}: cannot be used for training ({exc}); fix or remove it from the manifest"
        ) from exc


def cache_split(
    dataset: Dataset,
    split: str,
    prep: Preprocessing,
    *,
    include_augmented: bool = False,
    rows: Sequence[ManifestRow] | None = None,
    classes: Sequence[str] | None = None,
    workers: int | None = None,
    reporter: Reporter = NULL,
) -> CachedSplit:
    """The split's cache entry, built (in parallel, atomically) unless a valid one exists."""
    all_rows = list(rows) if rows is not None else dataset.rows()
    chosen = split_rows(all_rows, split, include_augmented=include_augmented)
    classes = list(classes) if classes is not None else dataset_classes(all_rows)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({r.label for r in chosen} - set(index))
    if unknown:
        raise DataError(f"{dataset.name}: {split} rows with unknown classes {unknown}")
    key = cache_key(all_rows, prep, classes)
    folder = dataset.cache_dir / key
    name = _entry_name(split, include_augmented)
    pixels_path = folder / f"{name}.u8"
    labels_path = folder / f"{name}.labels.npy"
    meta_path = folder / f"{name}.json"
    expected: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "key": key,
        "split": split,
        "include_augmented": include_augmented,
        "image_size": prep.image_size,
        "resize": prep.resize,
        "classes": list(classes),
        "count": len(chosen),
    }
    labels = np.array([index[r.label] for r in chosen], dtype=np.int32)
    if not _valid(meta_path, pixels_path, labels_path, expected):
        _build(dataset, chosen, prep, pixels_path, split, workers, reporter)
        with atomic.open_for_write(labels_path, "wb") as handle:
            np.save(handle, labels, allow_pickle=False)
        # Written last: its presence (with matching fields) marks a complete entry.
        atomic.write_json(meta_path, {**expected, "order": [r.path for r in chosen]})
    return CachedSplit(split, pixels_path, labels, prep.image_size, tuple(classes))


def _build(
    dataset: Dataset,
    rows: list[ManifestRow],
    prep: Preprocessing,
    target: Path,
    split: str,
    workers: int | None,
    reporter: Reporter,
) -> None:
    workers = workers or max(2, min(8, os.cpu_count() or 2))
    task = f"Caching {split} images"
    reporter.start(task, total=len(rows), unit="images")
    with (
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cache") as pool,
        atomic.open_for_write(target, "wb") as handle,
    ):
        done = 0
        for start in range(0, len(rows), _BUILD_CHUNK):
            chunk = rows[start : start + _BUILD_CHUNK]
            # map keeps the order, so row i of the manifest is image i of the file.
            for pixels in pool.map(lambda r: _decode(dataset, r, prep), chunk):
                handle.write(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
            done += len(chunk)
            reporter.advance(task, done)
    reporter.finish(task)


# --- tf.data -----------------------------------------------------------------------------


def epoch_order(count: int, seed: int, epoch: int) -> np.ndarray:
    """The shuffled image order of one epoch: a function of (seed, epoch) alone, so a
    resumed run sees exactly the order the uninterrupted run would have seen."""
    return np.random.default_rng([seed, epoch]).permutation(count).astype(np.int64)


def make_dataset(
    cached: CachedSplit,
    reader: BatchReader,
    *,
    global_batch: int,
    shuffle: bool,
    seed: int = 0,
    first_epoch: int = 0,
    epochs: int = 1,
    pipeline_id: int = 0,
    num_pipelines: int = 1,
    replica_batch: int | None = None,
    drop_remainder: bool = False,
    shard_by_data: bool = False,
    sample_weights: np.ndarray | None = None,
    transform: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> Any:
    """A tf.data pipeline of (float32 pixels, int32 labels) batches over `epochs` epochs.

    Each epoch's order is shuffled (seeded per epoch) when `shuffle`; batches never cross an
    epoch boundary. For distributed training every input pipeline computes the same global
    batches and keeps its own slice (`pipeline_id` of `num_pipelines`), then splits that
    into batches of `replica_batch` for the replicas it feeds.

    `sample_weights` (one per image, `train --balance-sources`) draws each epoch's images
    with replacement in proportion to them, seeded per epoch. `transform(pixels, keys)`
    (`train --augment-acquisition`) changes each batch on the fly; `keys` are
    epoch * count + index, unique per image and epoch, so a seeded transform is reproducible.
    """
    import tensorflow as tf

    count = cached.count
    size = cached.image_size

    def order(epoch: np.int64) -> np.ndarray:
        if shuffle and sample_weights is not None:
            chosen = balanced_order(sample_weights, seed, int(epoch))
        elif shuffle:
            chosen = epoch_order(count, seed, int(epoch))
        else:
            chosen = np.arange(count, dtype=np.int64)
        return chosen + int(epoch) * count if transform is not None else chosen

    def epoch_batches(epoch: Any) -> Any:
        indices = tf.numpy_function(order, [epoch], tf.int64, stateful=False)
        indices.set_shape([count])
        batches = tf.data.Dataset.from_tensor_slices(indices).batch(
            global_batch, drop_remainder=drop_remainder
        )
        if num_pipelines > 1:
            batches = batches.map(lambda b: b[pipeline_id::num_pipelines])
        if replica_batch is not None:
            batches = batches.unbatch().batch(replica_batch)
        return batches

    def read(indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if transform is None:
            return reader.read(indices)
        pixels, labels = reader.read(indices % count)
        return transform(pixels, indices), labels

    def load(indices: Any) -> tuple[Any, Any]:
        pixels, labels = tf.numpy_function(read, [indices], (tf.uint8, tf.int32), stateful=False)
        pixels.set_shape([None, size, size, 3])
        labels.set_shape([None])
        # Models hold their own 1/255 rescale; feed the uint8 values as float32.
        return tf.cast(pixels, tf.float32), labels

    data = tf.data.Dataset.range(first_epoch, first_epoch + epochs).flat_map(epoch_batches)
    data = data.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    options = tf.data.Options()
    # Multi-worker: every worker builds the same seeded global batches; tf.distribute's DATA
    # policy splits each one so every worker computes its own slice. Otherwise never shard.
    policy = tf.data.experimental.AutoShardPolicy
    options.experimental_distribute.auto_shard_policy = policy.DATA if shard_by_data else policy.OFF
    return data.with_options(options).prefetch(tf.data.AUTOTUNE)


def balanced_order(weights: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """One epoch's images drawn with replacement in proportion to `weights`, seeded by
    (seed, epoch) alone like `epoch_order`, so a resumed run draws the same images."""
    p = np.asarray(weights, dtype=np.float64)
    p = p / p.sum()
    rng = np.random.default_rng([seed, epoch, 1])
    return rng.choice(len(p), size=len(p), replace=True, p=p).astype(np.int64)


def steps_per_epoch(count: int, global_batch: int, drop_remainder: bool) -> int:
    return count // global_batch if drop_remainder else -(-count // global_batch)
