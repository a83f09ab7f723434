"""Batched prediction over image files, streamed, sharing training's decode path.

`predict_paths` is the one place that turns files into class probabilities: `predict`,
`eval` and `heatmap` all call it, so the same file always gets the same probabilities.
Decoding runs in a thread pool (Pillow releases the GIL while decoding) and overlaps the
model's compute on the previous batch; only a few batches are ever in memory, so 100,000
inputs cost no more memory than 100.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.errors import CxrCovidError


@dataclass(frozen=True)
class Prediction:
    index: int
    path: Path
    probabilities: np.ndarray | None  # shape (classes,), None when the file failed
    error: str | None = None


@dataclass(frozen=True)
class _Batch:
    indices: list[int]
    pixels: np.ndarray  # (n, S, S, 3) uint8
    errors: list[tuple[int, str]]


def _load_one(path: Path, prep: Preprocessing) -> np.ndarray | str:
    try:
        return load_for_model(path, prep)
    except CxrCovidError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must cost one row, not the whole run
        return f"{path}: {type(exc).__name__}: {exc}"


def load_batches(
    paths: Sequence[Path],
    prep: Preprocessing,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch_batches: int = 2,
) -> Iterator[_Batch]:
    """Decode `paths` into uint8 batches in order, `prefetch_batches` ahead of the consumer."""
    workers = workers or max(2, min(8, os.cpu_count() or 2))
    starts = range(0, len(paths), batch_size)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: list[tuple[int, list[Future[np.ndarray | str]]]] = []
        start_iter = iter(starts)

        def submit_next() -> None:
            start = next(start_iter, None)
            if start is not None:
                chunk = paths[start : start + batch_size]
                pending.append((start, [pool.submit(_load_one, p, prep) for p in chunk]))

        for _ in range(prefetch_batches + 1):
            submit_next()
        while pending:
            start, futures = pending.pop(0)
            submit_next()
            indices, arrays, errors = [], [], []
            for offset, future in enumerate(futures):
                result = future.result()
                if isinstance(result, str):
                    errors.append((start + offset, result))
                else:
                    indices.append(start + offset)
                    arrays.append(result)
            size = prep.image_size
            pixels = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
            yield _Batch(indices, pixels, errors)


def predict_paths(
    model: Any,
    paths: Sequence[Path],
    prep: Preprocessing,
    batch_size: int = 32,
) -> Iterator[Prediction]:
    """Yield one Prediction per path, in input order, as soon as its batch is done."""
    for batch in load_batches(paths, prep, batch_size):
        probabilities = (
            np.asarray(model(batch.pixels.astype(np.float32), training=False))
            if len(batch.indices)
            else np.zeros((0, 0))
        )
        by_index: dict[int, Prediction] = {}
        for row, index in enumerate(batch.indices):
            by_index[index] = Prediction(index, paths[index], probabilities[row])
        for index, message in batch.errors:
            by_index[index] = Prediction(index, paths[index], None, message)
        for index in sorted(by_index):
            yield by_index[index]
