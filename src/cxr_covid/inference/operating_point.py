"""Operating points: from probabilities to a decision at a threshold chosen on validation data.

A spec names one class and how to choose its threshold t:

    covid:sensitivity=0.95   the highest t whose validation sensitivity is >= 0.95
    covid:specificity=0.90   the lowest t whose validation specificity is >= 0.90
    covid:threshold=0.3      t = 0.3 as given

The decision rule with any number of classes: the class if p(class) >= t, otherwise the
argmax of the other classes. The threshold is chosen on the validation split and then judged
on the test images (sensitivity, specificity, PPV, NPV with Wilson intervals), so the test
figures are not flattered by choosing on the data they are measured on. Pure numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr_covid import classes, stats
from cxr_covid.errors import UsageError

CRITERIA = ("sensitivity", "specificity", "threshold")
ARGMAX_RULE = "argmax"


@dataclass(frozen=True)
class Spec:
    cls: str
    criterion: str
    value: float

    def __str__(self) -> str:
        return f"{self.cls}:{self.criterion}={self.value:g}"


def parse_spec(text: str, model_classes: Sequence[str]) -> Spec:
    """`CLASS:CRITERION=VALUE`, e.g. covid:sensitivity=0.95 (class names as `download` knows)."""
    cls_text, sep, rest = text.partition(":")
    criterion, eq, value_text = rest.partition("=")
    if not sep or not eq:
        raise UsageError(
            f"--operating-point {text!r}: expected CLASS:CRITERION=VALUE, e.g. "
            "covid:sensitivity=0.95 (criteria: sensitivity, specificity, threshold)"
        )
    cls = resolve_class(cls_text, model_classes, "--operating-point")
    criterion = criterion.strip().lower()
    if criterion not in CRITERIA:
        raise UsageError(
            f"--operating-point {text!r}: unknown criterion {criterion!r} "
            f"(choose from: {', '.join(CRITERIA)})"
        )
    value = _unit_value(value_text, f"--operating-point {text!r}")
    return Spec(cls, criterion, value)


def parse_threshold(text: str, model_classes: Sequence[str]) -> tuple[str, float]:
    """`CLASS=T` (predict's --threshold), e.g. covid=0.3."""
    cls_text, eq, value_text = text.partition("=")
    if not eq:
        raise UsageError(f"--threshold {text!r}: expected CLASS=VALUE, e.g. covid=0.3")
    cls = resolve_class(cls_text, model_classes, "--threshold")
    return cls, _unit_value(value_text, f"--threshold {text!r}")


def resolve_class(text: str, model_classes: Sequence[str], flag: str) -> str:
    cls = classes.canonical(text.strip())
    if cls is None or cls not in model_classes:
        raise UsageError(
            f"{flag}: unknown class {text.strip()!r} (this model knows: {', '.join(model_classes)})"
        )
    return cls


def _unit_value(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a number") from None
    if not (0.0 <= value <= 1.0) or math.isnan(value):
        raise UsageError(f"{where}: the value must be between 0 and 1 (got {text})")
    return value


def choose_threshold(scores: np.ndarray, positive: np.ndarray, spec: Spec) -> float:
    """The threshold the spec asks for, from validation scores p(class) and truth."""
    if spec.criterion == "threshold":
        return spec.value
    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    if spec.criterion == "sensitivity":
        ranked = np.sort(s[pos])[::-1]
        if len(ranked) == 0:
            raise UsageError(f"no validation image of class {spec.cls}: cannot aim a sensitivity")
        # At t = the k-th largest positive score, at least k positives are >= t.
        k = max(1, math.ceil(spec.value * len(ranked) - 1e-9))
        return float(ranked[k - 1])
    ranked = np.sort(s[~pos])
    if len(ranked) == 0:
        raise UsageError(f"no validation image outside {spec.cls}: cannot aim a specificity")
    m = math.ceil(spec.value * len(ranked) - 1e-9)
    if m == 0:
        return 0.0
    # The m smallest negative scores must fall strictly below t: t just above the m-th.
    return float(np.nextafter(ranked[m - 1], np.inf))


def decide(probabilities: np.ndarray, class_index: int, threshold: float) -> np.ndarray:
    """Class index per row: `class_index` if its probability >= threshold, else the argmax
    of the other classes."""
    p = np.asarray(probabilities, dtype=np.float64)
    others = p.copy()
    others[:, class_index] = -np.inf
    fallback = others.argmax(axis=1)
    out: np.ndarray = np.where(p[:, class_index] >= threshold, class_index, fallback)
    return out


def rule_text(cls: str | None, threshold: float | None) -> str:
    """How a decision was made, as the CSV header and JSON say it."""
    if cls is None or threshold is None:
        return ARGMAX_RULE
    return f"{cls}>={threshold:.6g}"


@dataclass(frozen=True)
class BinaryMetrics:
    sensitivity: stats.Proportion
    specificity: stats.Proportion
    ppv: stats.Proportion
    npv: stats.Proportion

    def to_dict(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity.to_dict(),
            "specificity": self.specificity.to_dict(),
            "ppv": self.ppv.to_dict(),
            "npv": self.npv.to_dict(),
        }


def binary_metrics(
    decided_positive: np.ndarray, positive: np.ndarray, confidence: float = stats.DEFAULT_CONFIDENCE
) -> BinaryMetrics:
    """Sensitivity, specificity, PPV and NPV of a yes/no decision (stats.one_vs_rest on the
    2x2 table, class 0 = positive)."""
    not_positive = (~np.asarray(positive, dtype=bool)).astype(np.int64)
    not_decided = (~np.asarray(decided_positive, dtype=bool)).astype(np.int64)
    yes = stats.one_vs_rest(stats.confusion_matrix(not_positive, not_decided, 2), confidence)[0]
    return BinaryMetrics(yes.sensitivity, yes.specificity, yes.ppv, yes.npv)


@dataclass(frozen=True)
class OperatingPoint:
    """A chosen threshold; what the record stores under `operating_point`."""

    cls: str
    criterion: str
    target: float
    threshold: float
    temperature: float  # the probabilities the threshold applies to: softmax(logits / T)
    chosen_on: str
    validation: BinaryMetrics | None
    created: str

    @property
    def rule(self) -> str:
        return rule_text(self.cls, self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "criterion": self.criterion,
            "target": self.target,
            "threshold": self.threshold,
            "rule": f"{self.cls} if p({self.cls}) >= {self.threshold:.6g}, "
            "else the argmax of the other classes",
            "temperature": self.temperature,
            "chosen_on": self.chosen_on,
            "validation": self.validation.to_dict() if self.validation else None,
            "created": self.created,
        }

    @classmethod
    def from_record(cls, data: dict[str, Any] | None) -> OperatingPoint | None:
        if not data or "threshold" not in data or "class" not in data:
            return None
        return cls(
            cls=str(data["class"]),
            criterion=str(data.get("criterion", "threshold")),
            target=float(data.get("target", data["threshold"])),
            threshold=float(data["threshold"]),
            temperature=float(data.get("temperature", 1.0)),
            chosen_on=str(data.get("chosen_on", "")),
            validation=None,
            created=str(data.get("created", "")),
        )


@dataclass(frozen=True)
class OperatingPointResult:
    """`eval --operating-point`: the point chosen on validation, judged on the test images."""

    point: OperatingPoint
    test: BinaryMetrics
    test_source: str

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.point.to_dict(),
            "test": self.test.to_dict(),
            "test_source": self.test_source,
        }
