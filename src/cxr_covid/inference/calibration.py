"""Calibrated probabilities: temperature scaling, and how well calibrated a model is.

Temperature scaling (Guo, Pleiss, Sun & Weinberger 2017, "On calibration of modern neural
networks", ICML) divides the network's logits by one number T > 0 before the softmax:

    p = softmax(z / T)

T is chosen to minimise the negative log-likelihood on the validation split. One parameter
cannot change which class is largest, so accuracy, the confusion matrix and every argmax are
unchanged; only how sure the model says it is changes (T > 1 softens over-confident models).
The NLL is convex in 1/T, so a bounded one-dimensional search finds the optimum.

Also here: the expected calibration error (ECE, 10 equal-width bins of top-class confidence)
and the multi-class Brier score (mean over images of sum_k (p_k - y_k)^2), each with a
percentile bootstrap interval (stats.py), before and after calibration. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr_covid import stats

METHOD = "temperature scaling (Guo et al. 2017), fitted on the validation split"
UNCALIBRATED = "uncalibrated"
CALIBRATED = "calibrated"
# Search range for log(T): T between ~0.007 and ~150 covers every model seen in practice.
_LOG_T_RANGE = (-5.0, 5.0)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: np.ndarray = e / e.sum(axis=-1, keepdims=True)
    return out


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the true labels under softmax(logits / T)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    y = np.asarray(labels, dtype=np.int64)
    return float(np.mean(log_norm - z[np.arange(len(y)), y])) if len(y) else math.nan


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iterations: int = 80) -> float:
    """The T minimising the NLL of `labels` (golden-section search on log T).

    The NLL is convex in 1/T, hence unimodal in log T, so golden-section search converges
    to the global optimum within the range. Returns 1.0 (no change) without data.
    """
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return 1.0
    a, b = _LOG_T_RANGE
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(logits, labels, math.exp(c)), nll(logits, labels, math.exp(d))
    for _ in range(iterations):
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(logits, labels, math.exp(c))
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(logits, labels, math.exp(d))
    return float(math.exp((a + b) / 2.0))


def brier(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """Multi-class Brier score: mean over images of sum_k (p_k - [k == label])^2 (0 is best)."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return math.nan
    onehot = np.zeros_like(p)
    onehot[np.arange(len(y)), y] = 1.0
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> float:
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if len(y) == 0:
        return math.nan
    _, value = stats.calibration_bins(p.max(axis=1), p.argmax(axis=1) == y, n_bins)
    return value


@dataclass(frozen=True)
class Calibration:
    """What the model record stores under `calibration` (empty dict: uncalibrated)."""

    temperature: float
    n: int  # validation images it was fitted on
    nll_before: float
    nll_after: float
    fitted_on: str  # e.g. "dataset dev, val split"
    created: str
    method: str = METHOD

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "temperature": self.temperature,
            "n": self.n,
            "nll_before": _finite(self.nll_before),
            "nll_after": _finite(self.nll_after),
            "fitted_on": self.fitted_on,
            "created": self.created,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> Calibration | None:
        """The stored calibration, or None for records without one (older models)."""
        if not data or "temperature" not in data:
            return None
        temperature = float(data["temperature"])
        if not (temperature > 0 and math.isfinite(temperature)):
            return None
        return cls(
            temperature=temperature,
            n=int(data.get("n", 0)),
            nll_before=float(data.get("nll_before") or math.nan),
            nll_after=float(data.get("nll_after") or math.nan),
            fitted_on=str(data.get("fitted_on", "")),
            created=str(data.get("created", "")),
            method=str(data.get("method", METHOD)),
        )


def fit(logits: np.ndarray, labels: np.ndarray, fitted_on: str, created: str) -> Calibration:
    temperature = fit_temperature(logits, labels)
    return Calibration(
        temperature=round(temperature, 6),
        n=len(labels),
        nll_before=nll(logits, labels),
        nll_after=nll(logits, labels, temperature),
        fitted_on=fitted_on,
        created=created,
    )


@dataclass(frozen=True)
class CalibrationQuality:
    """ECE and Brier score, each with a bootstrap interval."""

    ece: stats.Estimate
    brier: stats.Estimate

    def to_dict(self) -> dict[str, Any]:
        return {"ece": self.ece.to_dict(), "brier": self.brier.to_dict()}


def quality(
    probabilities: np.ndarray,
    labels: np.ndarray,
    samples: Sequence[np.ndarray],
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> CalibrationQuality:
    """ECE and Brier with percentile intervals over the bootstrap resamples `samples`."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    estimates = stats.bootstrap_estimates(
        lambda idx: [ece(p[idx], y[idx]), brier(p[idx], y[idx])], len(y), samples, confidence
    )
    return CalibrationQuality(ece=estimates[0], brier=estimates[1])


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)
