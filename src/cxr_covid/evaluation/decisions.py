"""What `eval` adds about decisions: calibration before and after, an operating point chosen
on the validation split and judged on the evaluated images, and how many images the OOD
guard flagged.

Kept apart from core.py so that the accuracy table's code does not change with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_covid import stats
from cxr_covid.errors import DataError
from cxr_covid.evaluation.testsets import EvalImages, dataset_test_set
from cxr_covid.inference import calibration
from cxr_covid.inference.batches import Prediction
from cxr_covid.inference.calibration import CalibrationQuality
from cxr_covid.inference.ood import FLAG_ABOVE
from cxr_covid.inference.operating_point import (
    OperatingPoint,
    OperatingPointResult,
    binary_metrics,
    choose_threshold,
    decide,
    parse_spec,
)
from cxr_covid.inference.scoring import Scorer
from cxr_covid.models import store


@dataclass
class Collected:
    """Per image, beside the (calibrated) probabilities: raw probabilities and OOD scores."""

    raw: list[np.ndarray] = field(default_factory=list)
    ood_scores: list[float] = field(default_factory=list)

    def add(self, prediction: Prediction) -> None:
        if prediction.raw_probabilities is not None:
            self.raw.append(prediction.raw_probabilities)
        if prediction.ood_score is not None:
            self.ood_scores.append(prediction.ood_score)


@dataclass
class Decisions:
    probabilities: str  # "uncalibrated" or "calibrated (temperature T)"
    temperature: float | None
    quality: dict[str, CalibrationQuality]  # "uncalibrated" and, when calibrated, "calibrated"
    raw_probabilities: np.ndarray
    raw_bins: list[stats.CalibrationBin]
    ood_checked: bool
    ood_flagged: int
    ood_n: int
    operating_point: OperatingPointResult | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "probabilities": self.probabilities,
            "temperature": self.temperature,
            "calibration_quality": {k: v.to_dict() for k, v in self.quality.items()},
            "ood": {
                "checked": self.ood_checked,
                "flagged": self.ood_flagged if self.ood_checked else None,
                "n": self.ood_n,
                "rate": stats.proportion(self.ood_flagged, self.ood_n).to_dict()
                if self.ood_checked
                else None,
            },
            "operating_point": self.operating_point.to_dict() if self.operating_point else None,
        }

    def record_entry(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "probabilities": self.probabilities,
            "ece": {k: v.ece.to_dict() for k, v in self.quality.items()},
            "brier": {k: v.brier.to_dict() for k, v in self.quality.items()},
            "ood_flagged": self.ood_flagged if self.ood_checked else None,
        }
        if self.operating_point is not None:
            entry["operating_point"] = self.operating_point.to_dict()
        return entry


def compute(
    stored: store.StoredModel,
    scorer: Scorer,
    test_set: EvalImages,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    collected: Collected,
    *,
    operating_point: str | None,
    confidence: float,
    bootstrap: int,
    seed: int,
    batch_size: int,
) -> Decisions:
    record = stored.record()
    k = len(record.classes)
    raw = np.stack(collected.raw).astype(np.float64) if collected.raw else np.zeros((0, k))
    samples = stats.stratified_bootstrap_indices(y_true, bootstrap, seed) if len(y_true) else []
    quality = {calibration.UNCALIBRATED: calibration.quality(raw, y_true, samples, confidence)}
    if scorer.calibration is not None:
        quality[calibration.CALIBRATED] = calibration.quality(
            probabilities, y_true, samples, confidence
        )
    raw_bins, _ = stats.calibration_bins(
        raw.max(axis=1) if len(raw) else np.zeros(0),
        raw.argmax(axis=1) == y_true if len(raw) else np.zeros(0, bool),
    )
    flagged = int(np.sum(np.asarray(collected.ood_scores) > FLAG_ABOVE))
    decisions = Decisions(
        probabilities=scorer.label,
        temperature=scorer.calibration.temperature if scorer.calibration else None,
        quality=quality,
        raw_probabilities=raw,
        raw_bins=raw_bins,
        ood_checked=scorer.guard is not None,
        ood_flagged=flagged,
        ood_n=len(collected.ood_scores),
    )
    if scorer.guard is None:
        decisions.notes.append(
            f"model {record.id} has no out-of-distribution guard and is "
            f"{scorer.label}: run `cxr-covid calibrate {record.id}` to add both"
        )
    elif flagged:
        decisions.notes.append(
            f"{flagged} of {len(collected.ood_scores)} image(s) were flagged as not looking like "
            f"model {record.id}'s training X-rays (their figures are included above)"
        )
    if operating_point:
        decisions.operating_point = _operating_point(
            record, scorer, test_set, y_true, probabilities, operating_point, confidence, batch_size
        )
        if test_set.split == "val":
            decisions.notes.append(
                "the operating point was chosen and judged on the same validation images: "
                "its figures are optimistic (judge it on --split test or --external)"
            )
    return decisions


def _operating_point(
    record: store.ModelRecord,
    scorer: Scorer,
    test_set: EvalImages,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    text: str,
    confidence: float,
    batch_size: int,
) -> OperatingPointResult:
    from cxr_covid.inference.batches import predict_paths

    spec = parse_spec(text, record.classes)
    index = record.classes.index(spec.cls)
    name = record.dataset.get("name")
    val_probs = np.zeros((0, len(record.classes)))
    val_true = np.zeros(0, np.int64)
    chosen_on = f"threshold given ({spec})"
    validation = None
    if spec.criterion != "threshold" or name:
        if not name:
            raise DataError(
                f"model {record.id} does not record its dataset, so there is no validation "
                "split to choose the threshold on (give covid:threshold=T instead)"
            )
        if test_set.split == "val" and test_set.dataset == name:
            # `eval --split val`: the images just scored are the validation split.
            val_probs, val_true = probabilities, y_true
        else:
            val = dataset_test_set(str(name), "val")
            kept, labels = [], []
            for p in predict_paths(None, list(val.paths), record.prep, batch_size, scorer=scorer):
                if p.probabilities is not None:
                    kept.append(p.probabilities)
                    labels.append(record.classes.index(val.labels[p.index]))
            val_probs = np.stack(kept) if kept else val_probs
            val_true = np.asarray(labels, dtype=np.int64)
        if spec.criterion != "threshold":
            chosen_on = f"dataset {name}, val split ({len(val_true)} images)"
    threshold = choose_threshold(val_probs[:, index], val_true == index, spec)
    if len(val_true):
        validation = binary_metrics(
            decide(val_probs, index, threshold) == index, val_true == index, confidence
        )
    point = OperatingPoint(
        cls=spec.cls,
        criterion=spec.criterion,
        target=spec.value,
        threshold=threshold,
        temperature=scorer.temperature,
        chosen_on=chosen_on,
        validation=validation,
        created=store.now_iso(),
    )
    decided = decide(probabilities, index, threshold) if len(y_true) else np.zeros(0, np.int64)
    test = binary_metrics(decided == index, y_true == index, confidence)
    return OperatingPointResult(point, test, test_set.source)


def save_operating_point(stored: store.StoredModel, decisions: Decisions | None) -> None:
    """`eval --save-operating-point`: store the chosen point in the model record."""
    if decisions is None or decisions.operating_point is None:
        return
    record = stored.reload_record()  # keep anything written meanwhile
    record.operating_point = decisions.operating_point.point.to_dict()
    stored.write_record(record)


# --- tables as data (rendered by the CLI with rich, and by eval_report as Markdown) ---------


def _estimate_cell(e: stats.Estimate) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    if not math.isfinite(e.low):
        return f"{e.value:.4f}"
    return f"{e.value:.4f} [{e.low:.4f}-{e.high:.4f}]"


def _proportion_cell(p: stats.Proportion) -> str:
    if not p.n:
        return "n/a (0 images)"
    return f"{100 * p.value:.1f}% ({p.successes}/{p.n}) [{100 * p.low:.1f}-{100 * p.high:.1f}%]"


Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def tables(model_id: str, decisions: Decisions) -> tuple[list[Table], list[str]]:
    """The calibration table, the operating-point table (if any), and lines of text."""
    found: list[Table] = [
        (
            f"{model_id}: calibration (probabilities: {decisions.probabilities})",
            ["probabilities", "ECE [95% CI]", "Brier score [95% CI]"],
            [
                [label, _estimate_cell(q.ece), _estimate_cell(q.brier)]
                for label, q in decisions.quality.items()
            ],
        )
    ]
    lines = []
    if decisions.ood_checked:
        lines.append(
            f"out-of-distribution guard: {decisions.ood_flagged} of {decisions.ood_n} "
            "image(s) flagged"
        )
    result = decisions.operating_point
    if result is not None:
        point = result.point
        rows = []
        for label, metrics in (
            ("validation (chosen on)", point.validation),
            (result.test_source, result.test),
        ):
            if metrics is not None:
                rows.append(
                    [
                        label,
                        _proportion_cell(metrics.sensitivity),
                        _proportion_cell(metrics.specificity),
                        _proportion_cell(metrics.ppv),
                        _proportion_cell(metrics.npv),
                    ]
                )
        found.append(
            (
                f"{model_id}: operating point {point.cls} >= {point.threshold:.4g} "
                f"({point.criterion} {point.target:g}, chosen on {point.chosen_on}); else the "
                "argmax of the other classes",
                ["measured on", "sensitivity", "specificity", "PPV", "NPV"],
                rows,
            )
        )
    return found, lines
