"""Batched prediction over image files, streamed, sharing training's decode path.

`predict_paths` is the one place that turns files into class probabilities: `predict` and
`eval` call it (and `heatmap` reads through the same `load_for_model`), so the same file
always gets the same probabilities.

Why it is fast (benchmarks/bench_predict.py, docs/performance.md):
- decoding runs in a thread pool (Pillow and zlib release the GIL) a few batches ahead of
  the model, so on two cores the decode of batch n+1 overlaps the compute of batch n;
- the model runs through one `tf.function`-compiled step traced once for any batch size,
  not `model.predict`, whose per-call set-up costs more than a small batch's compute.

Why memory stays flat: only the list of file names and `prefetch_batches + 1` decoded
batches exist at any time; a batch is decoded only when the consumer has taken an earlier
one, so 100,000 inputs cost no more pixel memory than 100.
"""

from __future__ import annotations

import contextlib
import os
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.errors import CxrCovidError, DependencyError
from cxr_covid.tf_runtime import compile_once


@dataclass(frozen=True)
class Prediction:
    index: int
    path: Path
    probabilities: np.ndarray | None  # shape (classes,), None when the file failed
    error: str | None = None
    # With a scoring.Scorer: the network's own softmax (probabilities are then calibrated)
    # and the OOD score (distance / threshold, > 1 flagged; None without a guard).
    raw_probabilities: np.ndarray | None = None
    ood_score: float | None = None


@dataclass(frozen=True)
class _Batch:
    indices: list[int]
    pixels: np.ndarray  # (n, S, S, 3) uint8
    errors: list[tuple[int, str]]


def _load_one(path: Path, prep: Preprocessing) -> np.ndarray | str:
    try:
        return load_for_model(path, prep)
    except DependencyError:
        raise  # a missing extra is the installation's problem, not this file's: stop the run
    except CxrCovidError as exc:
        return str(exc)
    except Exception as exc:  # a decoder bug must cost one row, not the whole run
        return f"{path}: {type(exc).__name__}: {exc}"


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


def load_batches(
    paths: Sequence[Path],
    prep: Preprocessing,
    batch_size: int = 32,
    workers: int | None = None,
    prefetch_batches: int = 2,
) -> Iterator[_Batch]:
    """Decode `paths` into uint8 batches in order, `prefetch_batches` ahead of the consumer.

    Files that cannot be decoded are reported in the batch's `errors` instead of its pixels.
    At most `(prefetch_batches + 1) * batch_size` files are ever decoded ahead of what the
    consumer has taken.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    workers = workers or default_workers()
    size = prep.image_size
    starts = iter(range(0, len(paths), batch_size))
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    pending: deque[tuple[int, list[Future[np.ndarray | str]]]] = deque()

    def submit_next() -> None:
        start = next(starts, None)
        if start is not None:
            chunk = paths[start : start + batch_size]
            pending.append((start, [pool.submit(_load_one, p, prep) for p in chunk]))

    try:
        for _ in range(prefetch_batches + 1):
            submit_next()
        while pending:
            start, futures = pending.popleft()
            submit_next()
            indices: list[int] = []
            errors: list[tuple[int, str]] = []
            pixels = np.empty((len(futures), size, size, 3), np.uint8)
            for offset, future in enumerate(futures):
                result = future.result()
                if isinstance(result, str):
                    errors.append((start + offset, result))
                else:
                    pixels[len(indices)] = result
                    indices.append(start + offset)
            yield _Batch(indices, pixels[: len(indices)], errors)
    finally:
        # On Ctrl-C or an early `break`, drop the queued decodes instead of finishing them.
        pool.shutdown(wait=True, cancel_futures=True)


# One compiled step per live model: tracing costs a fraction of a second, so it is done once
# per model, not once per call (eval and predict may call predict_paths many times).
_STEPS: weakref.WeakKeyDictionary[Any, Callable[[np.ndarray], Any]] = weakref.WeakKeyDictionary()


def compiled_predict(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """`model(x, training=False)` compiled once, for any batch size; returns numpy."""
    import tensorflow as tf

    try:
        cached = _STEPS.get(model)
    except TypeError:  # not weak-referenceable: compile without caching
        cached = None
    if cached is None:
        shape = tuple(model.inputs[0].shape[1:])

        def call(x: Any) -> Any:
            return model(x, training=False)

        step = compile_once(call, [tf.TensorSpec((None, *shape), tf.float32)])
        with contextlib.suppress(TypeError):
            _STEPS[model] = step
        cached = step
    compiled = cached

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(pixels.astype(np.float32, copy=False)))

    return run


def predict_paths(
    model: Any,
    paths: Sequence[Path],
    prep: Preprocessing,
    batch_size: int = 32,
    *,
    workers: int | None = None,
    prefetch_batches: int = 2,
    scorer: Callable[[np.ndarray], Any] | None = None,
) -> Iterator[Prediction]:
    """Yield one Prediction per path, in input order, as soon as its batch is done.

    With `scorer` (a scoring.Scorer), probabilities are calibrated and each Prediction
    carries the raw probabilities and OOD score too. A file that cannot be read yields a
    Prediction with `probabilities=None` and the reason in `error`; the others in its batch
    are unaffected. Raises DependencyError when a DICOM file needs the missing `dicom` extra.
    """
    run = compiled_predict(model) if scorer is None else None
    for batch in load_batches(paths, prep, batch_size, workers, prefetch_batches):
        by_index: dict[int, Prediction] = {}
        if scorer is not None and batch.indices:
            scores = scorer(batch.pixels)  # a scoring.BatchScores
            ood = scores.ood_score
            for row, index in enumerate(batch.indices):
                by_index[index] = Prediction(
                    index,
                    paths[index],
                    scores.probabilities[row],
                    raw_probabilities=scores.raw[row],
                    ood_score=None if ood is None else float(ood[row]),
                )
        elif run is not None and batch.indices:
            probabilities = run(batch.pixels)
            for row, index in enumerate(batch.indices):
                by_index[index] = Prediction(index, paths[index], probabilities[row])
        for index, message in batch.errors:
            by_index[index] = Prediction(index, paths[index], None, message)
        for index in sorted(by_index):
            yield by_index[index]
