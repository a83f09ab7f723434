"""`cxr-covid audit MODEL`: how much of a model's accuracy is shortcut (issue 9).

    result = run_audit(AuditOptions(model="baseline-dev-..."))

Four checks, one report (report.md, audit.json, plots and panels in one run folder):

- views: the test split as the model saw it, with the lung field hidden, and with everything
  but the lung field hidden (`cxr_covid.data.lungs`: real masks when every image has one, else
  the fixed region; hidden parts take their own mean intensity, so images stay close to what
  the model knows). Accuracy with its Wilson interval beside chance, and the predicted-class
  distribution: a view in which the model calls everything one class says nothing.
- control: the same architecture and recipe trained on the training split with the lung
  field hidden (fixed region, `Preprocessing.input = "no-lungs"`), tested the same way: what
  the dataset alone gives a model that cannot see lungs. The verdict rests mainly on it. It
  is kept in `<home>/audit/controls/<key>/` per (model, dataset, epochs), so a second audit
  reuses it; an interrupted control training resumes.
- attention: per test image, the share of its Grad-CAM mass inside the lung field, per class,
  beside the share uniform attention would give (the field's area); panels of the images
  that look furthest outside.
- external: labelled folders from other hospitals or cohorts; every image whose sha256 is
  one of the model's training or validation images is left out and reported.

The run folder is built under a temporary name and renamed into place when complete, so an
interrupted audit leaves no report behind; only the cached control survives (on purpose).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic, classes, paths, stats
from cxr_covid.about import DISCLAIMER
from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.data.lungs import DEFAULT_FILL, FILLS, LungFieldSource, hide, lung_field_source
from cxr_covid.errors import EXIT_INTERRUPTED, CxrCovidError, DataError, ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter

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
            "created": self.created,
            "disclaimer": DISCLAIMER,
        }


# --- predictions of one view -----------------------------------------------------------------


def _view_result(
    view: str, y_true: np.ndarray, y_pred: np.ndarray, model_classes: Sequence[str]
) -> ViewResult:
    n = len(y_true)
    correct = int((y_true == y_pred).sum())
    per_class = {
        c: stats.proportion(int(((y_true == j) & (y_pred == j)).sum()), int((y_true == j).sum()))
        for j, c in enumerate(model_classes)
        if (y_true == j).any()
    }
    predicted = {c: int((y_pred == j).sum()) for j, c in enumerate(model_classes)}
    top = max(predicted.values()) if predicted else 0
    return ViewResult(
        view, stats.proportion(correct, n), per_class, predicted, n > 0 and top >= 0.9 * n
    )


def _decode_test(
    images: Sequence[Path], prep: Preprocessing, source: LungFieldSource
) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 pixels as the model's own preprocessing makes them, and each
    image's lung field at the model's size (N, S, S) bool."""
    from PIL import Image

    size = prep.image_size
    pixels = np.empty((len(images), size, size, 3), np.uint8)
    fields = np.empty((len(images), size, size), bool)
    for i, path in enumerate(images):
        pixels[i] = load_for_model(path, prep)
        if source.kind == "masks":
            with Image.open(path) as img:
                width, height = img.size
            # Read (and checked) at the image's own size, then drawn at the model's size.
            full = source.field(path, height, width).astype(np.uint8) * 255
            small = Image.fromarray(full).resize((size, size), Image.Resampling.NEAREST)
            fields[i] = np.asarray(small) > 127
        else:
            fields[i] = source.field(path, size, size)
    return pixels, fields


def _predict(model: Any, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    from cxr_covid.inference.batches import compiled_predict

    run = compiled_predict(model)
    out = [run(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0))


# --- the lung-blind control ------------------------------------------------------------------


class AuditInterrupted(CxrCovidError):
    """Ctrl-C during an audit: no report is written; a control in training resumes."""

    exit_code = EXIT_INTERRUPTED


def controls_dir() -> Path:
    return paths.home() / "audit" / "controls"


def control_key(record: store.ModelRecord, epochs: int) -> str:
    text = json.dumps(
        {
            "model": record.id,
            "created": record.created,  # a new model under an old id gets a new control
            "manifest": record.dataset.get("manifest_sha256"),
            "epochs": epochs,
            "input": "no-lungs",
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def ensure_control(
    record: store.ModelRecord,
    epochs: int,
    reporter: Reporter = NULL,
) -> tuple[store.StoredModel, bool]:
    """The cached lung-blind control of this (model, dataset), trained if missing.

    Returns (control, reused). Training goes through `training.train` (so it resumes after
    an interrupt) and the finished model is moved out of the store into the audit cache, so
    it never becomes the "newest model" other commands default to.
    """
    from cxr_covid.training import run as training

    key = control_key(record, epochs)
    target = controls_dir() / key
    if (target / store.RECORD_FILE).is_file() and (target / store.MODEL_FILE).is_file():
        return store.StoredModel(target), True
    name = f"lungblind-{key}"
    if not (store.model_dir(name) / store.RECORD_FILE).is_file():
        config = replace(
            training.TrainConfig.from_dict(record.training),
            dataset=str(record.dataset.get("name") or ""),
            epochs=epochs,
            early_stopping=None,
            name=name,
            group=None,  # never one of the audited model's seeds (eval --group)
            input="no-lungs",
            strategy="auto",
            precision="float32",
        )
        if not config.dataset:
            raise DataError(f"model {record.id} does not record its dataset: no control possible")

        def report(epoch: training.EpochReport) -> None:
            reporter.advance(CONTROL_TASK, epoch.epoch, epoch.epochs)

        reporter.start(CONTROL_TASK, total=epochs, unit="epochs")
        try:
            if training.run_dir(name).exists():
                training.resume(name, reporter, on_epoch=report)
            else:
                training.train(config, reporter, on_epoch=report)
        except training.TrainingInterrupted as exc:
            raise AuditInterrupted(
                f"audit interrupted while training the lung-blind control (after "
                f"{exc.epochs_done} epoch(s)); rerun the same audit to continue it"
            ) from None
        finally:
            reporter.finish(CONTROL_TASK)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(store.model_dir(name), target)
    return store.StoredModel(target), False


# --- external sets ---------------------------------------------------------------------------


def newcombe_difference(a: stats.Proportion, b: stats.Proportion) -> tuple[float, float, float]:
    """a - b with Newcombe's hybrid score interval (method 10), from the Wilson intervals."""
    if not a.n or not b.n:
        return (math.nan, math.nan, math.nan)
    pa, pb = a.value, b.value
    d = pa - pb
    low = d - math.sqrt((pa - a.low) ** 2 + (b.high - pb) ** 2)
    high = d + math.sqrt((a.high - pa) ** 2 + (pb - b.low) ** 2)
    return (d, max(-1.0, low), min(1.0, high))


def _external(
    folder: Path,
    model: Any,
    record: store.ModelRecord,
    class_map: dict[str, str],
    internal: ViewResult,
    batch_size: int,
) -> ExternalResult:
    from cxr_covid.data.overlap import overlaps_for_model
    from cxr_covid.evaluation.core import folder_test_set
    from cxr_covid.inference.batches import predict_paths

    test_set = folder_test_set(folder, record.classes, class_map)
    labels = dict(zip(test_set.paths, test_set.labels, strict=True))
    # Identical files and near-duplicates of the model's training and validation images
    # are left out: they would measure memory, not generalisation (the same check as eval).
    check = overlaps_for_model(test_set.paths, record.dataset)
    dropped = [p for p in test_set.paths if p in check.paths]
    kept = [p for p in test_set.paths if p not in check.paths]
    index = {c: i for i, c in enumerate(record.classes)}
    y_true: list[int] = []
    y_pred: list[int] = []
    for prediction in predict_paths(model, kept, record.prep, batch_size):
        if prediction.probabilities is None:
            continue
        y_true.append(index[labels[prediction.path]])
        y_pred.append(int(np.argmax(prediction.probabilities)))
    view = _view_result("external", np.array(y_true), np.array(y_pred), record.classes)
    difference = {
        c: newcombe_difference(p, internal.per_class[c])
        for c, p in view.per_class.items()
        if c in internal.per_class
    }
    return ExternalResult(
        folder=str(folder),
        images=len(y_true),
        overlaps=[str(p) for p in dropped],
        accuracy=view.accuracy,
        per_class=view.per_class,
        difference=difference,
        predicted=view.predicted,
    )


# --- attention -------------------------------------------------------------------------------


def _attention(
    model: Any,
    record: store.ModelRecord,
    images: Sequence[Path],
    labels: Sequence[str],
    pixels: np.ndarray,
    fields: np.ndarray,
    reporter: Reporter,
) -> tuple[AttentionResult, list[Any]]:
    from cxr_covid.inference.gradcam import GradCamExplainer, choose_layer, upsample

    layer = choose_layer(model, None, record.last_conv_layer)
    explainer = GradCamExplainer(model, layer)
    size = record.prep.image_size
    shares: list[tuple[str, str, float]] = []
    cams: list[Any] = []
    reporter.start(ATTENTION_TASK, total=len(images), unit="images")
    for i, path in enumerate(images):
        cam = explainer(pixels[i])
        heat = upsample(cam.cam, size, size)
        total = float(heat.sum())
        share = float(heat[fields[i]].sum() / total) if total > 0 else math.nan
        shares.append((str(path), labels[i], share))
        cams.append(cam)
        reporter.advance(ATTENTION_TASK, i + 1)
    reporter.finish(ATTENTION_TASK)
    area = float(fields.mean()) if len(fields) else math.nan
    kept = [(p, c, s) for p, c, s in shares if math.isfinite(s)]
    return AttentionResult(layer, area, kept, no_evidence=len(shares) - len(kept)), cams


# --- verdict ---------------------------------------------------------------------------------


def _pct(x: float) -> str:
    from cxr_covid.text import percent

    return percent(x, 0)


def _ci(p: stats.Proportion) -> str:
    return f"{_pct(p.value)} [{_pct(p.low)}-{_pct(p.high)}]"


def verdict(
    full: ViewResult,
    hidden: ViewResult,
    only: ViewResult,
    control: ControlResult | None,
    attention: AttentionResult | None,
    external: Sequence[ExternalResult],
    chance: float,
    origin_only: ViewResult | None = None,
) -> tuple[str, str, str]:
    """(verdict in plain words with the numbers, what it rests on, shortcut level)."""
    sentences: list[str] = []
    level = "unknown"
    base = full.accuracy.value
    if control is not None:
        acc = control.view.accuracy
        above = (acc.value - chance) / (base - chance) if base > chance else math.nan
        if acc.low <= chance:
            level = "none"
            words = "its accuracy is not distinguishable from chance: no shortcut was found"
        elif math.isfinite(above) and above >= 0.75:
            level = "strong"
            words = "the dataset carries strong shortcuts"
        elif math.isfinite(above) and above >= 0.4:
            level = "moderate"
            words = "the dataset carries substantial shortcuts"
        else:
            level = "weak"
            words = "the dataset carries some shortcut signal"
        sentences.append(
            f"The model reaches {_ci(full.accuracy)} test accuracy; a lung-blind model of the "
            f"same recipe ({control.epochs} epoch{'s' if control.epochs > 1 else ''}, lung field "
            "hidden in training and test) "
            f"reaches {_ci(acc)} against {_pct(chance)} chance: {words}."
        )
        basis = (
            "the lung-blind control (accuracy of a model that never saw the lung field), "
            "with the masked views, attention and external sets as supporting evidence"
        )
    else:
        basis = (
            "the control was skipped (--no-control): this verdict rests only on the masked "
            "views, attention and external sets, which cannot separate a shortcut from a "
            "model confused by an unfamiliar image; run the audit with the control"
        )
        sentences.append(f"The model reaches {_ci(full.accuracy)} test accuracy.")
    if origin_only is not None:
        sentences.append(_origin_sentence(origin_only, control, chance))
    for view in (hidden, only):
        if view.collapsed:
            top = max(view.predicted, key=lambda c: view.predicted[c])
            sentences.append(
                f"With {view.view} it calls {view.predicted[top]} of {view.accuracy.n} images "
                f"{classes.display_name(top)} ({_ci(view.accuracy)}): that view is outside what "
                "it knows and says little either way."
            )
        else:
            sentences.append(f"With {view.view} it keeps {_ci(view.accuracy)} accuracy.")
    if control is None and not hidden.collapsed and hidden.accuracy.low > chance:
        level = "likely"
        sentences.append(
            "Accuracy above chance with the lungs hidden suggests the model uses "
            "something outside the lungs."
        )
    if attention is not None and attention.per_image:
        sentences.append(
            f"A median {_pct(attention.median())} of its Grad-CAM mass lies inside the lung "
            f"field (uniform attention would give {_pct(attention.field_area)})."
        )
    for ext in external:
        worst = min(ext.difference.items(), key=lambda kv: kv[1][0], default=None)
        if worst is None:
            continue
        cls, (d, lo, hi) = worst
        sentences.append(
            f"On {Path(ext.folder).name} ({ext.images} images) it recognises "
            f"{_ci(ext.per_class[cls])} of {classes.display_name(cls)}, "
            f"{100 * abs(d):.0f} points {'below' if d < 0 else 'above'} its internal recall "
            f"(95 % interval of the difference {100 * lo:+.0f} to {100 * hi:+.0f} points)."
        )
    return " ".join(sentences), basis, level


def _origin_sentence(origin: ViewResult, control: ControlResult | None, chance: float) -> str:
    words = (
        f"A rule that sees no pixel, only where each image comes from (its collection and age "
        f"group, class by majority in the training split), scores {_ci(origin.accuracy)}"
    )
    if origin.accuracy.low <= chance:
        return words + ": the images' origins alone do not give the classes away."
    words += f" against {_pct(chance)} chance: the images' origins alone give much away"
    if control is not None and control.view.accuracy.high >= origin.accuracy.value:
        words += (
            ", and the lung-blind model's accuracy is within reach of it: it may have learnt "
            "little beyond where each image comes from"
        )
    return words + "."


# --- the audit -------------------------------------------------------------------------------


def _mask_warnings(dataset: str, images: Sequence[Path], mask_dir: Path | None) -> list[str]:
    """A warning for masks whose name matches no image (they are ignored)."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.lungs import orphan_masks, unmatched_masks

    if mask_dir is not None:
        every = resolve_dataset(dataset)
        names = [every.file(r) for r in every.rows()]
        stray = [str(mask_dir / n) for n in unmatched_masks(names, mask_dir.expanduser())]
    else:
        stray = [str(p) for p in orphan_masks(images)]
    if not stray:
        return []
    return [
        f"warning: {len(stray)} lung mask(s) match no image by name and were ignored "
        f"(first: {stray[0]})"
    ]


def _origin_only(
    dataset: str, y_true: np.ndarray, index: dict[str, int], model_classes: Sequence[str]
) -> ViewResult | None:
    """The test split as a rule that knows only each image's origin would call it."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import select
    from cxr_covid.data.provenance import origin_only_predictions

    rows = resolve_dataset(dataset).rows()
    calls = origin_only_predictions(select(rows, "train"), select(rows, "test"))
    if calls is None or len(calls) != len(y_true) or any(c not in index for c in calls):
        return None
    y_pred = np.array([index[c] for c in calls])
    return _view_result(ORIGIN_VIEW, y_true, y_pred, model_classes)


def default_folder(model_id: str) -> Path:
    stamp = store.now_iso().replace(":", "").replace("+0000", "Z")
    base = paths.home() / "audits" / f"{model_id}-{stamp}"[:120]
    candidate, n = base, 2
    while candidate.exists():  # two audits within one second
        candidate = base.with_name(f"{base.name}-{n}")
        n += 1
    return candidate


def run_audit(options: AuditOptions, reporter: Reporter = NULL) -> AuditResult:
    """Run every check for one stored model and write the run folder; see the module doc."""
    from cxr_covid.evaluation.core import check_split, dataset_test_set

    options.validate()
    stored = store.resolve(options.model)
    record = stored.record()
    name = record.dataset.get("name")
    if not name:
        raise DataError(f"model {record.id} does not record its dataset; it cannot be audited")
    test = dataset_test_set(str(name), "test")
    notes = check_split(record, test, allow_change=False)
    source = lung_field_source(list(test.paths), options.mask_dir)
    notes.append(f"lung field: {source.reason}")
    notes += _mask_warnings(str(name), test.paths, options.mask_dir)
    model_classes = list(record.classes)
    index = {c: i for i, c in enumerate(model_classes)}
    y_true = np.array([index[label] for label in test.labels])
    k = len(model_classes)
    chance = 1.0 / k
    majority = float(np.bincount(y_true, minlength=k).max() / len(y_true))

    reporter.start(VIEWS_TASK, total=len(VIEWS), unit="views")
    pixels, fields = _decode_test(test.paths, record.prep, source)
    model = stored.load()
    views: list[ViewResult] = []
    for view in VIEWS:
        if view == "full":
            shown = pixels
        else:
            region = fields if view == "lungs hidden" else ~fields
            shown = np.stack([hide(pixels[i], region[i], options.fill) for i in range(len(pixels))])
        y_pred = np.argmax(_predict(model, shown, options.batch_size), axis=1)
        views.append(_view_result(view, y_true, y_pred, model_classes))
        reporter.advance(VIEWS_TASK, len(views))
    reporter.finish(VIEWS_TASK)

    attention = None
    cams: list[Any] = []
    if options.attention:
        attention, cams = _attention(
            model, record, test.paths, test.labels, pixels, fields, reporter
        )

    control = None
    if options.control:
        control_model, reused = ensure_control(record, options.control_epochs, reporter)
        c_record = control_model.record()
        c_pixels = np.stack(
            [load_for_model(p, c_record.prep) for p in test.paths]
        )  # its own input: lung field hidden
        c_pred = np.argmax(_predict(control_model.load(), c_pixels, options.batch_size), axis=1)
        control = ControlResult(
            control_model.id,
            str(control_model.root),
            options.control_epochs,
            reused,
            _view_result("lung-blind control", y_true, c_pred, model_classes),
        )

    external: list[ExternalResult] = []
    if options.external:
        reporter.start(EXTERNAL_TASK, total=len(options.external), unit="sets")
        for folder in options.external:
            reporter.advance(EXTERNAL_TASK, len(external))
            external.append(
                _external(
                    folder.expanduser(),
                    model,
                    record,
                    options.class_map,
                    views[0],
                    options.batch_size,
                )
            )
        reporter.finish(EXTERNAL_TASK)
    origin_only = _origin_only(str(name), y_true, index, model_classes)
    text, basis, level = verdict(
        views[0], views[1], views[2], control, attention, external, chance, origin_only
    )
    result = AuditResult(
        model_id=record.id,
        dataset=str(name),
        classes=model_classes,
        lung_field={**source.to_dict(), "fixed_region": "cxr_covid.data.lungs.FIXED_ELLIPSES"},
        fill=options.fill,
        chance=chance,
        majority=majority,
        views=views,
        control=control,
        attention=attention,
        external=external,
        origin_only=origin_only,
        verdict=text,
        verdict_basis=basis,
        level=level,
        notes=notes,
    )
    target = (options.out or default_folder(record.id)).expanduser()
    _write_folder(result, target, test.paths, pixels, cams, model_classes, options.panels)
    result.folder = target
    from cxr_covid.models.audit_log import append_audit  # a card can then show it

    append_audit(stored, result.to_dict())
    return result


def _write_folder(
    result: AuditResult,
    target: Path,
    images: Sequence[Path],
    pixels: np.ndarray,
    cams: Sequence[Any],
    model_classes: Sequence[str],
    panels: int,
) -> None:
    from cxr_covid.audit import report as audit_report

    if target.exists() and any(target.iterdir()):
        raise UsageError(f"--out {target} exists and is not empty; choose another folder")
    with atomic.building_dir(target, replace=target.exists()) as tmp:
        if result.attention is not None and panels and cams:
            result.attention.panels = audit_report.write_panels(
                tmp, result.attention, images, pixels, cams, model_classes, panels
            )
        audit_report.write_plots(tmp, result)
        result.folder = target
        atomic.write_json(tmp / "audit.json", result.to_dict())
        atomic.write_text(tmp / "report.md", audit_report.to_markdown(result))


__all__ = [
    "AuditOptions",
    "AuditResult",
    "CxrCovidError",
    "ModelError",
    "ensure_control",
    "newcombe_difference",
    "run_audit",
    "verdict",
]
