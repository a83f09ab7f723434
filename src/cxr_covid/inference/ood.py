"""Out-of-distribution guard: does an input look like the images the model was trained on?

Two Gaussian models, each with its own threshold; an input is flagged when either says so
(its score, distance / threshold, is the larger of the two, and above 1 means flagged).

1. Features. Method (Lee, Lee, Lee & Shin 2018, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks", NeurIPS): the penultimate features
f(x) (the Dense layer before the softmax) of the training images are modelled as one
Gaussian per class with a shared covariance. An input's score is its smallest Mahalanobis
distance to a class mean,

    d(x) = min_c sqrt((f(x) - mu_c)^T S^-1 (f(x) - mu_c)),

with S the Ledoit-Wolf shrinkage estimate of the shared covariance (Ledoit & Wolf 2004):
with 64 features and a few hundred images the plain sample covariance is near-singular
(ReLU units that never fire have zero variance), and shrinkage keeps S^-1 well defined.

The threshold is the 0.99 quantile of d over the validation images, which the means and
covariance were not fitted on, so about 1 % of real in-distribution images are expected to be
flagged.

2. Pixels. The same distance (one class, same shrinkage) on a few image statistics computed
from the model's own input pixels: a 16-bin grey-level histogram, mean and spread of grey,
colourfulness (|R-G| + |G-B|) and edge strength. Measured on the development archive
(tests/predict/test_ood.py, docs/ood.md), the feature distance alone let a blank image and a
colourful photograph-like image through: a network that never saw such inputs can map them
onto the features of a real X-ray; their pixel statistics are far from any X-ray's.

What it cannot catch: see docs/ood.md. Pure numpy (+ scikit-learn's Ledoit-Wolf).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

METHOD = (
    "Mahalanobis distance (Ledoit-Wolf covariance, fitted on the training split) on the "
    "penultimate features (class-conditional) and on pixel statistics; each thresholded at a "
    "quantile of the validation split; flagged when either is exceeded"
)
# Scores are distance / threshold, so one cut serves every guard: above it, flagged.
FLAG_ABOVE = 1.0
FEATURES = "features"
PIXELS = "pixels"
HISTOGRAM_BINS = 16
# Pixel statistics are fractions in [0, 1]: no variance below this (squared) floor, so a
# statistic that is constant in training (colourfulness of grey PNGs) does not make a tiny
# deviation (JPEG chroma noise in a real X-ray) look infinitely far.
PIXEL_FLOOR = 0.02
DEFAULT_QUANTILE = 0.99


# Pixel statistics are taken on a grid of about this many pixels a side (every 4th row and
# column at 224 px): they barely change, and predict's cost stays around 1 %.
STATISTICS_GRID = 56


def pixel_statistics(pixels: np.ndarray) -> np.ndarray:
    """(n, 20) statistics of uint8 (n, S, S, 3) pixels, sampled on a regular grid."""
    pixels = np.asarray(pixels)
    step = max(1, pixels.shape[1] // STATISTICS_GRID)
    x = pixels[:, ::step, ::step, :].astype(np.float32) / 255.0
    n = len(x)
    grey = x.mean(axis=3).reshape(n, -1)
    bins = np.minimum((grey * HISTOGRAM_BINS).astype(np.int64), HISTOGRAM_BINS - 1)
    offsets = (np.arange(n) * HISTOGRAM_BINS)[:, None]
    histogram = np.bincount((bins + offsets).ravel(), minlength=n * HISTOGRAM_BINS)
    histogram = histogram.reshape(n, HISTOGRAM_BINS) / max(grey.shape[1], 1)
    colour = np.abs(x[..., 0] - x[..., 1]).mean(axis=(1, 2)) + np.abs(x[..., 1] - x[..., 2]).mean(
        axis=(1, 2)
    )
    g = grey.reshape(x.shape[:3])
    edges = np.abs(np.diff(g, axis=1)).mean(axis=(1, 2)) + np.abs(np.diff(g, axis=2)).mean(
        axis=(1, 2)
    )
    return np.column_stack([histogram, grey.mean(axis=1), grey.std(axis=1), colour, edges])


@dataclass(frozen=True)
class Gaussians:
    """One Mahalanobis model: class means, a shared whitening and a threshold."""

    means: np.ndarray  # (classes, dims); one row for the pixel model
    whitening: np.ndarray  # (dims, dims): L with L L^T = S^-1
    threshold: float

    def distances(self, values: np.ndarray) -> np.ndarray:
        """Smallest Mahalanobis distance of each row of `values` to a mean."""
        f = np.asarray(values, dtype=np.float64)
        white = f @ self.whitening
        centres = self.means @ self.whitening
        squared = (
            (white**2).sum(axis=1)[:, None]
            - 2.0 * white @ centres.T
            + (centres**2).sum(axis=1)[None, :]
        )
        out: np.ndarray = np.sqrt(np.maximum(squared.min(axis=1), 0.0))
        return out

    def scores(self, values: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.distances(values) / self.threshold
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "dims": int(self.means.shape[1]),
            "means": _rounded(self.means),
            "whitening": _rounded(self.whitening),
        }

    @classmethod
    def from_dict(cls, data: Any) -> Gaussians | None:
        if not isinstance(data, dict) or "whitening" not in data:
            return None
        means = np.asarray(data["means"], dtype=np.float64)
        whitening = np.asarray(data["whitening"], dtype=np.float64)
        threshold = float(data["threshold"])
        if (
            means.ndim != 2
            or whitening.shape != (means.shape[1], means.shape[1])
            or not (threshold > 0 and math.isfinite(threshold))
        ):
            return None
        return cls(means, whitening, threshold)


@dataclass(frozen=True)
class OodGuard:
    features: Gaussians
    pixels: Gaussians | None
    quantile: float
    n_fit: int
    n_val: int
    fitted_on: str
    created: str
    method: str = METHOD

    def component_scores(
        self, features: np.ndarray, pixels: np.ndarray | None
    ) -> dict[str, np.ndarray]:
        found = {FEATURES: self.features.scores(features)}
        if self.pixels is not None and pixels is not None:
            found[PIXELS] = self.pixels.scores(pixel_statistics(pixels))
        return found

    def scores(self, features: np.ndarray, pixels: np.ndarray | None = None) -> np.ndarray:
        """The larger of the components' distance / threshold: above 1 means flagged."""
        out: np.ndarray = np.max(
            np.stack(list(self.component_scores(features, pixels).values())), axis=0
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "quantile": self.quantile,
            "n_fit": self.n_fit,
            "n_val": self.n_val,
            "fitted_on": self.fitted_on,
            "created": self.created,
            FEATURES: self.features.to_dict(),
            PIXELS: self.pixels.to_dict() if self.pixels is not None else None,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> OodGuard | None:
        """The stored guard, or None for records without one (older models)."""
        if not data:
            return None
        features = Gaussians.from_dict(data.get(FEATURES))
        if features is None:
            return None
        return cls(
            features=features,
            pixels=Gaussians.from_dict(data.get(PIXELS)),
            quantile=float(data.get("quantile", DEFAULT_QUANTILE)),
            n_fit=int(data.get("n_fit", 0)),
            n_val=int(data.get("n_val", 0)),
            fitted_on=str(data.get("fitted_on", "")),
            created=str(data.get("created", "")),
            method=str(data.get("method", METHOD)),
        )


def _rounded(array: np.ndarray) -> list[Any]:
    """7 significant digits: the record stays small (JSON) and distances change < 1e-5."""
    out: list[Any] = np.vectorize(lambda x: float(f"{x:.7g}"))(array).tolist()
    return out


def fit_gaussians(
    train: np.ndarray,
    labels: np.ndarray,
    val: np.ndarray,
    quantile: float,
    floor: float = 0.0,
) -> Gaussians:
    """Class means and shrunk shared covariance on `train`; threshold = the `quantile` of
    the distances of `val` (images the model was not fitted on)."""
    from sklearn.covariance import ledoit_wolf

    x = np.asarray(train, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    present = np.unique(y)
    means = np.stack([x[y == c].mean(axis=0) for c in present])
    centred = x - means[np.searchsorted(present, y)]
    covariance, _ = ledoit_wolf(centred, assume_centered=True)
    # A floor keeps the inverse finite when a dimension is constant (a dead ReLU unit).
    minimum = max(1e-6 * float(np.trace(covariance)) / len(covariance), floor**2, 1e-12)
    covariance = covariance + np.eye(len(covariance)) * minimum
    precision = np.linalg.inv(covariance)
    whitening = np.linalg.cholesky((precision + precision.T) / 2.0)
    # Round first, then set the threshold with the very numbers the record will hold.
    probe = Gaussians(np.asarray(_rounded(means)), np.asarray(_rounded(whitening)), 1.0)
    threshold = float(np.quantile(probe.distances(val), quantile, method="higher"))
    return Gaussians(probe.means, probe.whitening, max(threshold, 1e-9))


def fit(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    val_features: np.ndarray,
    *,
    train_pixel_stats: np.ndarray | None = None,
    val_pixel_stats: np.ndarray | None = None,
    fitted_on: str,
    created: str,
    quantile: float = DEFAULT_QUANTILE,
) -> OodGuard:
    if not 0.5 <= quantile < 1.0:
        raise ValueError(f"quantile must be in [0.5, 1), got {quantile}")
    if len(train_features) < 2 or len(val_features) < 1:
        raise ValueError("the guard needs at least 2 training and 1 validation image")
    features = fit_gaussians(train_features, train_labels, val_features, quantile)
    pixels = None
    if train_pixel_stats is not None and val_pixel_stats is not None:
        pixels = fit_gaussians(
            train_pixel_stats,
            np.zeros(len(train_pixel_stats), np.int64),
            val_pixel_stats,
            quantile,
            PIXEL_FLOOR,
        )
    return OodGuard(
        features, pixels, quantile, len(train_features), len(val_features), fitted_on, created
    )
