"""From pixels to what a user is told: calibrated probabilities, an OOD flag, a decision.

`Scorer(model, record)` runs the network once per batch up to its penultimate layer (the
input of the softmax Dense head) and computes everything else from those features in numpy:

    logits      = features @ W + b                   (the head, without its softmax)
    raw         = softmax(logits)                    (what the network itself outputs)
    calibrated  = softmax(logits / T)                (temperature scaling, calibration.py)
    ood_score   = Mahalanobis distance / threshold   (ood.py; > 1 means flagged)

so calibration and the guard cost one small matrix product per batch, not a second pass.
An ensemble (models/ensemble.py) has one head per member: its features are the members'
features side by side, and its logits the log of the members' averaged probabilities (`Head`).
A record without calibration or guard (older models) gets T = 1 and no OOD figure, and says
"uncalibrated".

`fit_guards(stored)` fits both from the model's own dataset (temperature on the validation
split; guard means and covariance on the training split, threshold on the validation split)
and writes them into the record: `train` calls it at the end, `cxr-covid calibrate` later.
"""

from __future__ import annotations

import contextlib
import math
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid.errors import DataError, ModelError
from cxr_covid.inference import calibration, ood
from cxr_covid.inference.calibration import Calibration
from cxr_covid.inference.ood import OodGuard
from cxr_covid.inference.operating_point import OperatingPoint
from cxr_covid.models import ensemble, store
from cxr_covid.tf_runtime import compile_once


@dataclass(frozen=True)
class BatchScores:
    logits: np.ndarray  # (n, classes)
    raw: np.ndarray  # softmax(logits): the network's own output
    probabilities: np.ndarray  # calibrated when the record has a temperature, else raw
    ood_score: np.ndarray | None  # (n,) distance / threshold; None without a guard

    @property
    def ood(self) -> np.ndarray | None:
        return None if self.ood_score is None else self.ood_score > ood.FLAG_ABOVE


def probabilities_label(cal: Calibration | None) -> str:
    """What the record and outputs say about the probabilities they show."""
    if cal is None:
        return calibration.UNCALIBRATED
    return f"{calibration.CALIBRATED} (temperature {cal.temperature:.4g})"


def softmax_head(model: Any) -> Any:
    """The model's last layer when it is a softmax Dense (both study architectures)."""
    import keras

    head = model.layers[-1]
    activation = getattr(getattr(head, "activation", None), "__name__", "")
    if not isinstance(head, keras.layers.Dense) or activation != "softmax":
        raise ModelError(
            f"model {getattr(model, 'name', '?')}: calibration and the OOD guard need a "
            "softmax Dense output layer"
        )
    return head


@dataclass(frozen=True)
class Head:
    """A model's softmax head(s) as numpy: one (kernel, bias) per member network (one for a
    plain model), applied to the features `feature_step` returns."""

    kernels: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    @property
    def dims(self) -> int:
        return sum(int(k.shape[0]) for k in self.kernels)

    def logits(self, features: np.ndarray) -> np.ndarray:
        f = np.asarray(features, dtype=np.float64)
        if len(self.kernels) == 1:
            out: np.ndarray = f @ self.kernels[0] + self.biases[0]
            return out
        # An ensemble outputs the mean of its members' softmax probabilities, which has no
        # logit of its own; temperature scaling (calibration) needs one, so the ensemble's
        # logits are the log of its averaged probabilities (their softmax is that average
        # again, exactly). Computed as a log-mean-exp of the members' log-softmax, so that a
        # probability that underflows to 0 never becomes log(0).
        log_probs, start = [], 0
        for kernel, bias in zip(self.kernels, self.biases, strict=True):
            part = f[:, start : start + kernel.shape[0]] @ kernel + bias
            start += kernel.shape[0]
            log_probs.append(part - _logsumexp(part, axis=1)[:, None])
        stacked = np.stack(log_probs)  # (members, n, classes)
        mean: np.ndarray = _logsumexp(stacked, axis=0) - math.log(len(log_probs))
        return mean


def _logsumexp(x: np.ndarray, axis: int) -> np.ndarray:
    top = np.max(x, axis=axis, keepdims=True)
    out: np.ndarray = np.squeeze(top, axis=axis) + np.log(np.sum(np.exp(x - top), axis=axis))
    return out


def classifier_head(model: Any) -> Head:
    """The softmax head of every member network (ensemble.members), as numpy."""
    heads = [softmax_head(network) for network in ensemble.members(model)]
    return Head(
        tuple(np.asarray(h.kernel, dtype=np.float64) for h in heads),
        tuple(np.asarray(h.bias, dtype=np.float64) for h in heads),
    )


# One compiled step per model, kept while the model lives: commands that go back and forth
# between models (eval --group, the audit, reproduce) must not build and trace it again.
_STEPS: weakref.WeakKeyDictionary[Any, Callable[[np.ndarray], np.ndarray]] = (
    weakref.WeakKeyDictionary()
)


def feature_step(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """Penultimate features for uint8-valued pixels, compiled once per model (any batch)."""
    import tensorflow as tf

    with contextlib.suppress(TypeError):  # not weak-referenceable: compile without caching
        cached = _STEPS.get(model)
        if cached is not None:
            return cached
    classifier_head(model)  # refuses a model without a softmax head, before compiling
    features = ensemble.feature_model(model)
    shape = tuple(model.inputs[0].shape[1:])

    def step(x: Any) -> Any:
        return features(x, training=False)

    compiled = compile_once(step, [tf.TensorSpec((None, *shape), tf.float32)])

    def run(pixels: np.ndarray) -> np.ndarray:
        return np.asarray(compiled(pixels.astype(np.float32, copy=False)))

    with contextlib.suppress(TypeError):
        _STEPS[model] = run
    return run


class Scorer:
    """Calibrated probabilities and OOD scores for batches of uint8 pixels."""

    def __init__(self, model: Any, record: store.ModelRecord) -> None:
        self.head = classifier_head(model)
        self.features = feature_step(model)
        self.calibration = Calibration.from_record(_field(record, "calibration"))
        self.guard = OodGuard.from_record(_field(record, "ood"))
        self.temperature = self.calibration.temperature if self.calibration else 1.0

    @property
    def label(self) -> str:
        return probabilities_label(self.calibration)

    def logits(self, features: np.ndarray) -> np.ndarray:
        return self.head.logits(features)

    def from_features(self, features: np.ndarray, pixels: np.ndarray | None) -> BatchScores:
        """Scores from penultimate features (and the input pixels, for the guard's pixel
        statistics; None leaves that part out)."""
        logits = self.logits(features)
        return BatchScores(
            logits=logits,
            raw=calibration.softmax(logits),
            probabilities=calibration.softmax(logits, self.temperature),
            ood_score=self.guard.scores(features, pixels) if self.guard else None,
        )

    def __call__(self, pixels: np.ndarray) -> BatchScores:
        return self.from_features(self.features(pixels), pixels)


def describe(record: store.ModelRecord) -> list[tuple[str, str]]:
    """(label, text) rows for `models show`: probabilities, guard, operating point."""
    cal = Calibration.from_record(_field(record, "calibration"))
    guard = OodGuard.from_record(_field(record, "ood"))
    point = OperatingPoint.from_record(_field(record, "operating_point"))
    rows = [("probabilities", probabilities_label(cal) + (f", {cal.fitted_on}" if cal else ""))]
    rows.append(
        (
            "OOD guard",
            f"fitted on {guard.n_fit} training images, threshold at the {guard.quantile:g} "
            f"quantile of {guard.n_val} validation images"
            if guard
            else "none (run `cxr-covid calibrate`)",
        )
    )
    if point is not None:
        rows.append(
            (
                "operating point",
                f"{point.cls} if p >= {point.threshold:.4g} ({point.criterion} "
                f"{point.target:g}, chosen on {point.chosen_on})",
            )
        )
    return rows


def _field(record: store.ModelRecord, name: str) -> dict[str, Any] | None:
    value = getattr(record, name, None)
    return value if isinstance(value, dict) else None


# --- fitting from a model's own dataset -----------------------------------------------------


def features_of(model: Any, batches: Iterator[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(penultimate features, pixel statistics) of every image in `batches`."""
    run = feature_step(model)
    features: list[np.ndarray] = []
    statistics: list[np.ndarray] = []
    for pixels in batches:
        if len(pixels):
            features.append(run(pixels))
            statistics.append(ood.pixel_statistics(pixels))
    if not features:
        return np.zeros((0, classifier_head(model).dims)), np.zeros((0, 0))
    return np.concatenate(features).astype(np.float64), np.concatenate(statistics)


def cached_batches(reader: Any, count: int, batch_size: int) -> Iterator[np.ndarray]:
    """Pixels of a training cache split (pipeline.BatchReader), in order."""
    for start in range(0, count, batch_size):
        pixels, _ = reader.read(np.arange(start, min(count, start + batch_size)))
        yield pixels


def file_batches(paths: Sequence[Path], prep: Any, batch_size: int) -> Iterator[np.ndarray]:
    """Pixels of image files; a file that cannot be read is an error here (it is the model's
    own dataset, which training read without trouble)."""
    from cxr_covid.inference.batches import load_batches

    for batch in load_batches(paths, prep, batch_size):
        if batch.errors:
            raise DataError(batch.errors[0][1])
        yield batch.pixels


@dataclass(frozen=True)
class FittedGuards:
    calibration: Calibration
    guard: OodGuard | None
    val_accuracy: float
    seconds: float = 0.0  # time spent computing features and fitting

    def to_dict(self) -> dict[str, Any]:
        """`calibrate --json`'s figures: the temperature, the guard without its arrays."""
        guard = self.guard.to_dict() if self.guard is not None else {}
        return {
            "calibration": self.calibration.to_dict(),
            "ood": {k: v for k, v in guard.items() if k not in ("features", "pixels")},
        }


def fit_from_features(
    model: Any,
    train: tuple[np.ndarray, np.ndarray],
    train_labels: np.ndarray,
    val: tuple[np.ndarray, np.ndarray],
    val_labels: np.ndarray,
    source: str,
    quantile: float = ood.DEFAULT_QUANTILE,
) -> FittedGuards:
    """Fit temperature and guard from (features, pixel statistics) of both splits."""
    (train_features, train_stats), (val_features, val_stats) = train, val
    logits = classifier_head(model).logits(val_features)
    created = store.now_iso()
    cal = calibration.fit(logits, val_labels, f"{source}, val split", created)
    guard = None
    if len(train_features) >= 2 and len(val_features) >= 1:
        guard = ood.fit(
            train_features,
            train_labels,
            val_features,
            train_pixel_stats=train_stats,
            val_pixel_stats=val_stats,
            fitted_on=f"{source}: train split (means, covariance), val split (threshold)",
            created=created,
            quantile=quantile,
        )
    accuracy = float(np.mean(logits.argmax(axis=1) == val_labels)) if len(val_labels) else math.nan
    return FittedGuards(cal, guard, accuracy)


def apply(record: store.ModelRecord, fitted: FittedGuards) -> list[str]:
    """Write the fitted guards into `record` (in memory). Returns notes for the user."""
    notes: list[str] = []
    record.calibration = fitted.calibration.to_dict()
    point = OperatingPoint.from_record(_field(record, "operating_point"))
    if point is not None and point.temperature != fitted.calibration.temperature:
        # Its threshold was chosen on other probabilities: applying it to these would
        # silently move the sensitivity it promised.
        record.operating_point = {}
        notes.append(
            f"the stored operating point ({point.cls} >= {point.threshold:.4g}) was chosen "
            "on the previous probabilities and has been removed; choose it again with "
            "`cxr-covid eval --operating-point ... --save-operating-point`"
        )
    if fitted.guard is not None:
        record.ood = fitted.guard.to_dict()
    return notes


def fit_for_training(
    model: Any,
    train_split: Any,
    val_split: Any,
    dataset_name: str,
    batch_size: int,
) -> FittedGuards:
    """At the end of `train`: features of the cached train and val splits."""
    started = time.perf_counter()
    with contextlib.ExitStack() as stack:
        train_reader = stack.enter_context(train_split.reader())
        val_reader = stack.enter_context(val_split.reader())
        val_features = features_of(model, cached_batches(val_reader, val_split.count, batch_size))
        train_features = features_of(
            model, cached_batches(train_reader, train_split.count, batch_size)
        )
    fitted = fit_from_features(
        model,
        train_features,
        np.asarray(train_split.labels, dtype=np.int64),
        val_features,
        np.asarray(val_split.labels, dtype=np.int64),
        f"dataset {dataset_name}",
    )
    return replace(fitted, seconds=time.perf_counter() - started)
