"""The metrics of one model on one set of images: accuracy with Wilson intervals, confusion
matrix, one-vs-rest rates, F1, ROC AUC with seeded bootstrap intervals, calibration bins."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any

import numpy as np

from cxr_covid import classes, stats
from cxr_covid.evaluation.results import ClassResult


@dataclass(frozen=True)
class Metrics:
    """Every number of one model's evaluation that follows from labels and probabilities."""

    accuracy: stats.Proportion
    per_class: list[ClassResult]
    confusion: np.ndarray  # rows: true class, columns: predicted class
    balanced_accuracy: stats.Estimate
    macro_f1: stats.Estimate
    calibration: list[stats.CalibrationBin]
    ece: float  # expected calibration error of the top class's probability

    def by_name(self) -> dict[str, Any]:
        """The figures by name, unconverted: `ModelEvaluation(..., **metrics.by_name())`
        (ModelEvaluation carries the same fields, under the same names)."""
        return {f.name: getattr(self, f.name) for f in dataclass_fields(self)}


def compute_metrics(
    y_true: np.ndarray,
    probabilities: np.ndarray,
    model_classes: Sequence[str],
    *,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    bootstrap: int = stats.DEFAULT_BOOTSTRAP,
    seed: int = 42,
) -> Metrics:
    """Every number of one model's evaluation, from true labels and probabilities."""
    k = len(model_classes)
    y_true = np.asarray(y_true, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64).reshape(len(y_true), k)
    y_pred = np.argmax(probabilities, axis=1)
    cm = stats.confusion_matrix(y_true, y_pred, k)
    overall = stats.proportion(int(np.trace(cm)), int(cm.sum()), confidence)
    ovr = stats.one_vs_rest(cm, confidence)

    def statistics(idx: np.ndarray) -> list[float]:
        sub = stats.confusion_matrix(y_true[idx], y_pred[idx], k)
        values = [stats.balanced_accuracy(sub), stats.macro_f1(sub)]
        tp = np.diag(sub)
        for j in range(k):
            denominator = 2 * tp[j] + (sub[:, j].sum() - tp[j]) + (sub[j, :].sum() - tp[j])
            values.append(2 * tp[j] / denominator if denominator else math.nan)
        for j in range(k):
            values.append(stats.roc_auc(y_true[idx] == j, probabilities[idx, j]))
        return values

    samples = stats.stratified_bootstrap_indices(y_true, bootstrap, seed) if len(y_true) else []
    estimates = stats.bootstrap_estimates(statistics, len(y_true), samples, confidence)
    balanced, macro = estimates[0], estimates[1]
    f1s, aucs = estimates[2 : 2 + k], estimates[2 + k : 2 + 2 * k]
    per_class = [
        ClassResult(
            cls=cls,
            display=classes.display_name(cls),
            accuracy=ovr[j].sensitivity,
            specificity=ovr[j].specificity,
            ppv=ovr[j].ppv,
            npv=ovr[j].npv,
            f1=f1s[j],
            auc=aucs[j],
        )
        for j, cls in enumerate(model_classes)
    ]
    confidence_top = probabilities.max(axis=1) if len(y_true) else np.zeros(0)
    bins, ece = stats.calibration_bins(confidence_top, y_pred == y_true)
    return Metrics(
        accuracy=overall,
        per_class=per_class,
        confusion=cm,
        balanced_accuracy=balanced,
        macro_f1=macro,
        calibration=bins,
        ece=ece,
    )
