"""An evaluation's results as dataclasses (numbers, never text): per class, per model, per pair
of models, and the whole report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_covid import classes, stats
from cxr_covid.data.overlap import Overlap
from cxr_covid.evaluation.subgroups import Subgroup
from cxr_covid.evaluation.testsets import EvalImages
from cxr_covid.models import store
from cxr_covid.models.records import SavedEvaluation

if TYPE_CHECKING:
    from cxr_covid.evaluation.decisions import Decisions


@dataclass(frozen=True)
class ClassResult:
    """One class: the study's per-class accuracy (= sensitivity) and its one-vs-rest view."""

    cls: str
    display: str
    accuracy: stats.Proportion  # correct / images of this class: results.png's cells
    specificity: stats.Proportion
    ppv: stats.Proportion
    npv: stats.Proportion
    f1: stats.Estimate
    auc: stats.Estimate

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "display": self.display,
            "accuracy": self.accuracy.to_dict(),
            "sensitivity": self.accuracy.to_dict(),
            "specificity": self.specificity.to_dict(),
            "ppv": self.ppv.to_dict(),
            "npv": self.npv.to_dict(),
            "f1": self.f1.to_dict(),
            "auc": self.auc.to_dict(),
        }


@dataclass
class ModelEvaluation:
    model_id: str
    architecture: str
    augmented: bool
    image_size: int
    classes: list[str]  # the model's output order
    test_set: EvalImages
    accuracy: stats.Proportion
    per_class: list[ClassResult]
    confusion: np.ndarray  # rows true, columns predicted, in `classes` order
    balanced_accuracy: stats.Estimate
    macro_f1: stats.Estimate
    calibration: list[stats.CalibrationBin]
    ece: float
    # Per image, in test-set order (images that failed to decode are left out, see `failed`).
    paths: list[Path]
    y_true: np.ndarray
    probabilities: np.ndarray
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    created: str = field(default_factory=store.now_iso)
    subgroups: list[Subgroup] = field(default_factory=list)  # per class x collection/folder
    overlaps: list[Overlap] = field(default_factory=list)  # external images left out
    # Calibration, operating point and OOD guard (eval_decisions.py); `probabilities` above
    # are the calibrated ones when the model is calibrated.
    decisions: Decisions | None = None

    @property
    def n(self) -> int:
        return self.accuracy.n

    @property
    def y_pred(self) -> np.ndarray:
        return np.argmax(self.probabilities, axis=1) if len(self.probabilities) else self.y_true

    @property
    def correct(self) -> np.ndarray:
        return np.asarray(self.y_pred == self.y_true)

    def class_result(self, cls: str) -> ClassResult | None:
        return next((c for c in self.per_class if c.cls == cls), None)

    def label(self) -> str:
        return f"{self.model_id}"

    def to_dict(self, *, predictions: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "model": self.model_id,
            "architecture": self.architecture,
            "augmented": self.augmented,
            "image_size": self.image_size,
            "classes": self.classes,
            "split": self.test_set.split,
            "source": self.test_set.source,
            "cohort": self.test_set.name or None,
            "dataset": self.test_set.dataset,
            "split_sha256": self.test_set.split_sha256,
            "n": self.n,
            "accuracy": self.accuracy.to_dict(),
            "per_class": [c.to_dict() for c in self.per_class],
            "balanced_accuracy": self.balanced_accuracy.to_dict(),
            "macro_f1": self.macro_f1.to_dict(),
            "confusion_matrix": {
                "rows_true_columns_predicted": self.classes,
                "counts": self.confusion.tolist(),
            },
            "calibration": {
                "ece": _finite(self.ece),
                "bins": [
                    {
                        "low": b.low,
                        "high": b.high,
                        "count": b.count,
                        "mean_confidence": _finite(b.mean_confidence),
                        "accuracy": _finite(b.accuracy),
                    }
                    for b in self.calibration
                ],
            },
            "failed": [{"path": p, "error": e} for p, e in self.failed],
            "warnings": self.warnings,
            "created": self.created,
            "subgroups": [g.to_dict() for g in self.subgroups],
            "overlaps": [o.to_dict() for o in self.overlaps],
        }
        if self.decisions is not None:
            data.update(self.decisions.to_dict())
        if predictions:
            data["predictions"] = [
                {
                    "path": str(path),
                    "true": self.classes[int(t)],
                    "predicted": self.classes[int(p)],
                    "probabilities": [float(x) for x in probs],
                }
                for path, t, p, probs in zip(
                    self.paths, self.y_true, self.y_pred, self.probabilities, strict=True
                )
            ]
        return data

    def record_entry(self) -> SavedEvaluation:
        """What is appended to the model record's `evaluations` (read by `models show`)."""
        return SavedEvaluation.from_dict(
            {
                "split": self.test_set.split,
                "source": self.test_set.source,
                "dataset": self.test_set.dataset,
                "split_sha256": self.test_set.split_sha256,
                "accuracy": _finite(self.accuracy.value),
                "accuracy_ci": [_finite(self.accuracy.low), _finite(self.accuracy.high)],
                "correct": self.accuracy.successes,
                "n": self.n,
                "per_class": {
                    c.cls: {
                        "accuracy": _finite(c.accuracy.value),
                        "accuracy_ci": [_finite(c.accuracy.low), _finite(c.accuracy.high)],
                        "correct": c.accuracy.successes,
                        "n": c.accuracy.n,
                        "auc": _finite(c.auc.value),
                    }
                    for c in self.per_class
                },
                "balanced_accuracy": _finite(self.balanced_accuracy.value),
                "macro_f1": _finite(self.macro_f1.value),
                "confusion_matrix": self.confusion.tolist(),
                "failed": len(self.failed),
                "created": self.created,
                **(self.decisions.record_entry() if self.decisions is not None else {}),
            }
        )


@dataclass(frozen=True)
class PairComparison:
    model_a: str
    model_b: str
    accuracy_a: float
    accuracy_b: float
    test: stats.McNemar

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "accuracy_a": _finite(self.accuracy_a),
            "accuracy_b": _finite(self.accuracy_b),
            **self.test.to_dict(),
        }


@dataclass
class EvaluationReport:
    evaluations: list[ModelEvaluation]
    comparisons: list[PairComparison]
    notes: list[str]
    confidence: float
    bootstrap: int
    seed: int

    def columns(self) -> list[str]:
        """Class columns of the study table: every class any model knows, in study order."""
        found: list[str] = []
        for evaluation in self.evaluations:
            found.extend(c for c in evaluation.classes if c not in found)
        return classes.label_order(found)

    def to_dict(self, *, predictions: bool = False) -> dict[str, Any]:
        return {
            "confidence": self.confidence,
            "interval_methods": {
                "proportions": "Wilson score",
                "f1_balanced_accuracy_macro_f1_auc": (
                    f"percentile bootstrap, {self.bootstrap} resamples stratified by true "
                    f"class, seed {self.seed}"
                    if self.bootstrap > 0
                    else "none (bootstrap 0)"
                ),
            },
            "models": [e.to_dict(predictions=predictions) for e in self.evaluations],
            "mcnemar": [c.to_dict() for c in self.comparisons],
            "notes": self.notes,
        }


def _finite(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


# --- computing ------------------------------------------------------------------------------
