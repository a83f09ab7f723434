"""The audit's source probe: how well the model's penultimate features tell, within one class,
which collection an image comes from.

A model that has learnt the disease and nothing else would give a healthy child and a healthy
adult from two collections similar features; a model that has learnt the collections (age,
scanner, burned-in markers) gives features from which a linear classifier reads the collection
back. The probe fits that classifier (scikit-learn's LogisticRegression on standardised
features, class-weighted) with stratified k-fold cross-validation on the test split, one class
at a time, and reports the balanced accuracy of its out-of-fold calls (mean recall over the
class's collections) with a stratified-bootstrap interval, against chance, 1 / collections.
Within a class, so what it measures is source, not disease; it needs no external data.

Only classes with two or more recorded collections, each with at least `MIN_PER_COLLECTION`
test images, are probed; "overall" pools every probed class's out-of-fold calls (mean recall
over all the (class, collection) pairs, against the mean of their chances).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_covid import stats
from cxr_covid.data.manifest import UNKNOWN

MAX_FOLDS = 5
MIN_PER_COLLECTION = 3  # fewer test images in a collection: that class is not probed
BOOTSTRAP = 1_000


@dataclass
class ClassProbe:
    label: str
    collections: dict[str, int]  # collection -> test images
    folds: int
    balanced_accuracy: stats.Estimate
    chance: float

    @property
    def above_chance(self) -> bool:
        return self.balanced_accuracy.low > self.chance

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.label,
            "collections": self.collections,
            "folds": self.folds,
            "balanced_accuracy": self.balanced_accuracy.to_dict(),
            "chance": self.chance,
            "above_chance": self.above_chance,
        }


@dataclass
class SourceProbeResult:
    per_class: list[ClassProbe] = field(default_factory=list)
    overall: stats.Estimate | None = None
    overall_chance: float | None = None
    skipped: str | None = None  # why nothing was probed
    notes: list[str] = field(default_factory=list)  # classes left out, and why

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": (
                "logistic regression on the penultimate features, stratified "
                f"{MAX_FOLDS}-fold cross-validation within each class (test split); balanced "
                "accuracy with a 95 % stratified-bootstrap interval"
            ),
            "per_class": [p.to_dict() for p in self.per_class],
            "overall": self.overall.to_dict() if self.overall else None,
            "overall_chance": self.overall_chance,
            "skipped": self.skipped,
            "notes": self.notes,
        }


def penultimate(model: Any, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    """(N, D) features the classifier reads (the input of its softmax layer)."""
    from cxr_covid.models.ensemble import feature_model

    features = feature_model(model)  # an ensemble's members' features side by side
    out = [
        np.asarray(features(pixels[i : i + batch_size].astype(np.float32), training=False))
        for i in range(0, len(pixels), batch_size)
    ]
    return np.concatenate(out).reshape(len(pixels), -1) if out else np.zeros((0, 0))


def _out_of_fold(features: np.ndarray, targets: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(
        StandardScaler(), LogisticRegression(max_iter=2_000, class_weight="balanced")
    )
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(probe, features, targets, cv=split))


def _balanced(truth: np.ndarray, calls: np.ndarray, seed: int) -> stats.Estimate:
    """Mean recall over the groups of `truth`, with a stratified-bootstrap interval."""
    groups = int(truth.max()) + 1

    def statistic(idx: np.ndarray) -> list[float]:
        cm = stats.confusion_matrix(truth[idx], calls[idx], groups)
        return [stats.balanced_accuracy(cm)]

    samples = stats.stratified_bootstrap_indices(truth, BOOTSTRAP, seed)
    return stats.bootstrap_estimates(statistic, len(truth), samples)[0]


def probe(
    features: np.ndarray,
    labels: Sequence[str],
    collections: Sequence[str],
    *,
    seed: int = 0,
) -> SourceProbeResult:
    """The probe on one set of images (module docstring); `collections` may say `unknown`."""
    known = [c not in ("", UNKNOWN) for c in collections]
    if not any(known):
        return SourceProbeResult(skipped="the dataset records no collection for its images")
    result = SourceProbeResult()
    pooled_truth: list[np.ndarray] = []
    pooled_calls: list[np.ndarray] = []
    pair_chances: list[float] = []
    for label in sorted(set(labels)):
        chosen = [
            i for i, (lab, k) in enumerate(zip(labels, known, strict=True)) if lab == label and k
        ]
        counts = Counter(collections[i] for i in chosen)
        if len(counts) < 2:
            continue
        if min(counts.values()) < MIN_PER_COLLECTION:
            result.notes.append(
                f"{label}: not probed, a collection has fewer than {MIN_PER_COLLECTION} test "
                f"images ({dict(sorted(counts.items()))})"
            )
            continue
        names = sorted(counts)
        targets = np.array([names.index(collections[i]) for i in chosen])
        folds = min(MAX_FOLDS, min(counts.values()))
        calls = _out_of_fold(features[chosen], targets, folds, seed)
        result.per_class.append(
            ClassProbe(
                label,
                {n: counts[n] for n in names},
                folds,
                _balanced(targets, calls, seed),
                1.0 / len(names),
            )
        )
        offset = len(pair_chances)  # pair ids: each class's collections after the last's
        pooled_truth.append(targets + offset)
        pooled_calls.append(calls + offset)
        pair_chances += [1.0 / len(names)] * len(names)
    if not result.per_class:
        result.skipped = (
            "no class holds two or more recorded collections with at least "
            f"{MIN_PER_COLLECTION} test images each"
        )
        return result
    result.overall = _balanced(np.concatenate(pooled_truth), np.concatenate(pooled_calls), seed)
    result.overall_chance = float(np.mean(pair_chances))
    return result


__all__ = ["ClassProbe", "SourceProbeResult", "penultimate", "probe"]
