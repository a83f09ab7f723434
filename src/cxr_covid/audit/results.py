"""What an audit takes and gives: its options and each check's result as dataclasses
(numbers, never text; `cxr_covid.audit.report` renders them)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_covid import stats
from cxr_covid.about import DISCLAIMER
from cxr_covid.data.lungs import DEFAULT_FILL, FILLS
from cxr_covid.data.overlap import CHECKED_TRANSFORMATIONS
from cxr_covid.errors import DataError, UsageError
from cxr_covid.models import store

DEFAULT_CONTROL_EPOCHS = 3
DEFAULT_PANELS = 4
VIEWS: tuple[str, ...] = ("full", "lungs hidden", "lungs only")
ORIGIN_VIEW = "image origin only (no pixels)"
AUDIT_FORMAT = 1

# Progress tasks (cxr_covid.progress).
VIEWS_TASK = "test split, four ways"
ATTENTION_TASK = "Grad-CAM per test image"
CONTROL_TASK = "lung-blind control, epochs"
EXTERNAL_TASK = "external sets"

if TYPE_CHECKING:
    from cxr_covid.audit.source_probe import SourceProbeResult


@dataclass
class AuditOptions:
    model: str | None = None
    external: list[Path] = field(default_factory=list)
    class_map: dict[str, str] = field(default_factory=dict)
    control: bool = True
    control_epochs: int = DEFAULT_CONTROL_EPOCHS
    fill: str = DEFAULT_FILL
    attention: bool = True
    panels: int = DEFAULT_PANELS
    out: Path | None = None
    batch_size: int = 32
    mask_dir: Path | None = None
    source_probe: bool = True  # issue 19: collection read back from the features (source_probe.py)

    def validate(self) -> None:
        if self.control_epochs < 1:
            raise UsageError(f"--control-epochs must be at least 1 (got {self.control_epochs})")
        if self.fill not in FILLS:
            raise UsageError(f"unknown --fill {self.fill!r} (choose from: {', '.join(FILLS)})")
        if self.panels < 0:
            raise UsageError(f"--panels must be 0 or more (got {self.panels})")
        if self.batch_size < 1:
            raise UsageError("--batch-size must be at least 1")
        for folder in self.external:
            if not folder.expanduser().is_dir():
                raise DataError(f"--external {folder}: not a folder")
        if self.mask_dir is not None and not self.mask_dir.expanduser().is_dir():
            raise DataError(f"--masks {self.mask_dir}: not a folder")


# --- results --------------------------------------------------------------------------------


def _p(prop: stats.Proportion) -> dict[str, Any]:
    return prop.to_dict()


@dataclass
class ViewResult:
    """One way of showing the test images to one model."""

    view: str
    accuracy: stats.Proportion
    per_class: dict[str, stats.Proportion]  # recall per true class
    predicted: dict[str, int]  # predicted class -> images
    collapsed: bool  # >= 90 % of the images called one class

    def to_dict(self) -> dict[str, Any]:
        return {
            "view": self.view,
            "accuracy": _p(self.accuracy),
            "recall": {c: _p(p) for c, p in self.per_class.items()},
            "predicted": self.predicted,
            "collapsed": self.collapsed,
        }


@dataclass
class ControlResult:
    model_id: str
    path: str
    epochs: int
    reused: bool
    view: ViewResult

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "path": self.path,
            "epochs": self.epochs,
            "reused": self.reused,
            **self.view.to_dict(),
        }


@dataclass(frozen=True)
class Panels:
    """What the audit's Grad-CAM panels are drawn from: the test images as the model saw them,
    the lung field each was measured against (`masks` or `fixed`), their maps, how many."""

    pixels: np.ndarray  # (N, S, S, 3) uint8
    fields: np.ndarray  # (N, S, S) bool
    field_kind: str
    cams: Sequence[Any]
    count: int


@dataclass
class AttentionResult:
    layer: str
    field_area: float  # mean share of the image the lung field covers (uniform attention)
    per_image: list[tuple[str, str, float]]  # (path, true class, share inside)
    panels: list[str] = field(default_factory=list)
    # Images whose Grad-CAM map is all zero (no region raised the predicted class's score):
    # they have no share to report.
    no_evidence: int = 0

    def per_class(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for cls in sorted({c for _, c, _ in self.per_image}):
            values = np.array([s for _, c, s in self.per_image if c == cls])
            out[cls] = {
                "n": int(values.size),
                "median": float(np.median(values)),
                "q1": float(np.percentile(values, 25)),
                "q3": float(np.percentile(values, 75)),
                "min": float(values.min()),
            }
        return out

    def median(self) -> float:
        return float(np.median([s for _, _, s in self.per_image])) if self.per_image else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "field_area": self.field_area,
            "median_share_inside": self.median(),
            "images_without_positive_evidence": self.no_evidence,
            "per_class": self.per_class(),
            "per_image": [{"path": p, "class": c, "share_inside": s} for p, c, s in self.per_image],
            "panels": self.panels,
        }


@dataclass
class ExternalResult:
    folder: str
    images: int
    overlaps: list[str]  # left out: the same file as a training/validation image
    accuracy: stats.Proportion
    per_class: dict[str, stats.Proportion]
    # class -> (external - internal recall, low, high): Newcombe's interval for a difference
    difference: dict[str, tuple[float, float, float]]
    predicted: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "images": self.images,
            "overlaps_left_out": self.overlaps,
            "overlap_checks": CHECKED_TRANSFORMATIONS,  # which copies count (data/overlap.py)
            "accuracy": _p(self.accuracy),
            "recall": {c: _p(p) for c, p in self.per_class.items()},
            "difference_from_internal": {
                c: {"difference": d, "low": lo, "high": hi}
                for c, (d, lo, hi) in self.difference.items()
            },
            "predicted": self.predicted,
        }


@dataclass
class AuditResult:
    model_id: str
    dataset: str
    classes: list[str]
    lung_field: dict[str, Any]
    fill: str
    chance: float
    majority: float
    views: list[ViewResult]
    control: ControlResult | None
    attention: AttentionResult | None
    external: list[ExternalResult]
    origin_only: ViewResult | None  # a rule that knows only where each image comes from
    verdict: str
    verdict_basis: str
    level: str  # strong / moderate / weak / none / unknown
    folder: Path | None = None
    notes: list[str] = field(default_factory=list)
    created: str = field(default_factory=store.now_iso)
    source_probe: SourceProbeResult | None = None  # None with --no-source-probe

    def view(self, name: str) -> ViewResult:
        return next(v for v in self.views if v.view == name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": AUDIT_FORMAT,
            "model": self.model_id,
            "dataset": self.dataset,
            "classes": self.classes,
            "lung_field": self.lung_field,
            "fill": self.fill,
            "chance": self.chance,
            "majority_share": self.majority,
            "views": [v.to_dict() for v in self.views],
            "control": self.control.to_dict() if self.control else None,
            "origin_only": self.origin_only.to_dict() if self.origin_only else None,
            "attention": self.attention.to_dict() if self.attention else None,
            "external": [e.to_dict() for e in self.external],
            "verdict": self.verdict,
            "verdict_basis": self.verdict_basis,
            "shortcut_level": self.level,
            "folder": str(self.folder) if self.folder else None,
            "notes": self.notes,
            "source_probe": self.source_probe.to_dict() if self.source_probe else None,
            "created": self.created,
            "disclaimer": DISCLAIMER,
        }


# --- predictions of one view -----------------------------------------------------------------
