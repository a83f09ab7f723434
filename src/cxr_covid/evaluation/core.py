"""Evaluate stored models: the study's per-class accuracy table, and what a careful reader asks.

`evaluate(models, split=... | data_dir=...)` returns an `EvaluationReport` made of dataclasses
(numbers, never text): per model the accuracy overall and per class with Wilson intervals
(the study's results.png, with counts), the confusion matrix, one-vs-rest sensitivity,
specificity, PPV, NPV and F1, balanced accuracy, macro-F1, per-class ROC AUC with seeded
bootstrap intervals, calibration bins; and McNemar's test for every pair of models that saw
exactly the same images. Rendering (rich, Markdown, CSV) lives elsewhere.

Probabilities come from `inference.predict_paths`, the same call `predict` makes, so a file's
probabilities are the same in both commands.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_covid import classes, stats
from cxr_covid.data.catalog import is_ignored_folder, is_xray
from cxr_covid.data.overlap import Overlap, OverlapCheck, overlaps_for_model
from cxr_covid.errors import DataError, ModelError, UsageError
from cxr_covid.evaluation.subgroups import Subgroup, compute_subgroups
from cxr_covid.models import store
from cxr_covid.models.records import SavedEvaluation
from cxr_covid.progress import NULL, Reporter

if TYPE_CHECKING:
    from cxr_covid.evaluation.decisions import Decisions

EXTERNAL = "external"
EVAL_SPLITS: tuple[str, ...] = ("test", "val", "train")


# --- what is evaluated ----------------------------------------------------------------------


@dataclass(frozen=True)
class EvalImages:
    """The labelled images a model is evaluated on, and where they came from."""

    paths: tuple[Path, ...]
    labels: tuple[str, ...]  # canonical class per image
    split: str  # test / val / train, or "external" for --data
    source: str  # dataset name or folder
    dataset: str | None = None
    split_sha256: str | None = None
    # Per image, where it comes from: its collection, or "folder NAME" for --data.
    groups: tuple[str, ...] = ()

    def group_of(self, index: int) -> str:
        return self.groups[index] if self.groups else "unknown"

    def without(self, left_out: set[Path]) -> EvalImages:
        """The same images less `left_out` (e.g. those the model was trained on)."""
        keep = [i for i, p in enumerate(self.paths) if p not in left_out]
        return EvalImages(
            paths=tuple(self.paths[i] for i in keep),
            labels=tuple(self.labels[i] for i in keep),
            split=self.split,
            source=self.source,
            dataset=self.dataset,
            split_sha256=self.split_sha256,
            groups=tuple(self.group_of(i) for i in keep) if self.groups else (),
        )

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for label in self.labels:
            found[label] = found.get(label, 0) + 1
        return found


def dataset_test_set(dataset_name: str, split: str) -> EvalImages:
    """The original (never augmented) images of one split of a stored dataset."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import select, split_hash

    if split not in EVAL_SPLITS:
        raise UsageError(f"unknown split {split!r} (choose from: {', '.join(EVAL_SPLITS)})")
    dataset = resolve_dataset(dataset_name)
    rows = dataset.rows()
    chosen = select(rows, split)
    if not chosen:
        raise DataError(f"dataset {dataset.name!r} has no {split} images (was it split?)")
    return EvalImages(
        paths=tuple(dataset.file(r) for r in chosen),
        labels=tuple(r.label for r in chosen),
        split=split,
        source=f"dataset {dataset.name}, {split} split",
        dataset=dataset.name,
        split_sha256=split_hash(rows),
        groups=tuple(r.collection for r in chosen),
    )


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_ignored_folder(p.name))
    # A zip extracted as-is wraps the class folders in one more folder
    # (COVID-19_Radiography_Dataset/...): step inside when that is all there is.
    if len(folders) == 1 and classes.canonical(folders[0].name) is None:
        inner = [p for p in folders[0].iterdir() if p.is_dir() and not is_ignored_folder(p.name)]
        if inner:
            return sorted(inner)
    return folders


def folder_test_set(
    root: Path, model_classes: Sequence[str], class_map: dict[str, str] | None = None
) -> EvalImages:
    """An external labelled folder: one sub-folder per class, named like download accepts."""
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    class_map = class_map or {}
    unknown: list[str] = []
    untrained: list[str] = []
    paths: list[Path] = []
    labels: list[str] = []
    for folder in _class_folders(root):
        # --class-map first (matched like aliases: case, spaces and punctuation ignored).
        target = classes.canonical(folder.name, class_map)
        if target == classes.SKIP:
            continue
        if target is None:
            unknown.append(folder.name)
            continue
        if target not in model_classes:
            untrained.append(f"{folder.name!r} ({target})")
            continue
        # The same rule as download's catalogue (masks/, __MACOSX/, hidden folders left out).
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and is_xray(p.relative_to(folder).as_posix())
        )
        paths.extend(files)
        labels.extend([target] * len(files))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise DataError(
            f"{root}: unknown class folder(s) {names}; expected folders named like "
            f"{', '.join(classes.STUDY_CLASSES)} (or COVID, Normal, Viral Pneumonia); map them "
            "with --class-map FOLDER=CLASS, or leave them out with --class-map FOLDER=skip"
        )
    if untrained:
        raise DataError(
            f"{root}: folder(s) {', '.join(untrained)} hold classes the model was not trained "
            f"on (it knows {', '.join(model_classes)}); leave them out with "
            "--class-map FOLDER=skip"
        )
    if not paths:
        raise DataError(f"{root}: no labelled images (expected one sub-folder per class)")
    return EvalImages(
        paths=tuple(paths),
        labels=tuple(labels),
        split=EXTERNAL,
        source=f"folder {root}",
        groups=(f"folder {root.name}",) * len(paths),
    )


# --- results --------------------------------------------------------------------------------


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


def evaluate_model(
    stored: store.StoredModel,
    test_set: EvalImages,
    *,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    bootstrap: int = stats.DEFAULT_BOOTSTRAP,
    seed: int = 42,
    batch_size: int = 32,
    warnings: Sequence[str] = (),
    reporter: Reporter = NULL,
    operating_point: str | None = None,
) -> ModelEvaluation:
    """Predict every image of `test_set` with one stored model and compute its metrics."""
    from cxr_covid.evaluation import decisions as eval_decisions
    from cxr_covid.inference.batches import predict_paths
    from cxr_covid.inference.scoring import Scorer

    record = stored.record()
    model_classes = list(record.classes)
    missing = sorted(set(test_set.labels) - set(model_classes))
    if missing:
        raise DataError(
            f"model {record.id} was not trained on class(es) {', '.join(missing)} "
            f"(it knows {', '.join(model_classes)})"
        )
    index_of = {c: i for i, c in enumerate(model_classes)}
    model = stored.load()
    scorer = Scorer(model, record)
    collected = eval_decisions.Collected()
    total = len(test_set.paths)
    kept_paths: list[Path] = []
    kept_true: list[int] = []
    kept_groups: list[str] = []
    probabilities: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    reporter.start(record.id, total=total, unit="images")
    for done, prediction in enumerate(
        predict_paths(model, list(test_set.paths), record.prep, batch_size, scorer=scorer),
        start=1,
    ):
        if prediction.probabilities is None:
            failed.append((str(prediction.path), prediction.error or "unreadable"))
        else:
            if prediction.probabilities.shape != (len(model_classes),):
                raise ModelError(
                    f"model {record.id} outputs {prediction.probabilities.shape} values per "
                    f"image but its record lists {len(model_classes)} classes"
                )
            kept_paths.append(prediction.path)
            kept_true.append(index_of[test_set.labels[prediction.index]])
            kept_groups.append(test_set.group_of(prediction.index))
            probabilities.append(prediction.probabilities)
            collected.add(prediction)
        reporter.advance(record.id, done)
    reporter.finish(record.id)
    notes = list(warnings)
    if failed:
        notes.append(f"{len(failed)} of {total} images could not be read and were left out")
    y_true = np.asarray(kept_true, dtype=np.int64)
    probs = (
        np.stack(probabilities).astype(np.float64)
        if probabilities
        else np.zeros((0, len(model_classes)))
    )
    metrics = compute_metrics(
        y_true, probs, model_classes, confidence=confidence, bootstrap=bootstrap, seed=seed
    )
    decisions = eval_decisions.compute(
        stored,
        scorer,
        test_set,
        y_true,
        probs,
        collected,
        operating_point=operating_point,
        confidence=confidence,
        bootstrap=bootstrap,
        seed=seed,
        batch_size=batch_size,
    )
    notes.extend(decisions.notes)
    return ModelEvaluation(
        decisions=decisions,
        model_id=record.id,
        architecture=record.architecture,
        augmented=bool(record.training.get("augment", False)),
        image_size=record.prep.image_size,
        classes=model_classes,
        test_set=test_set,
        **metrics.by_name(),
        paths=kept_paths,
        y_true=y_true,
        probabilities=probs,
        failed=failed,
        warnings=notes,
        subgroups=compute_subgroups(
            model_classes, y_true, np.argmax(probs, axis=1), kept_groups, confidence
        ),
    )


def dataset_caveats(dataset_name: str) -> list[str]:
    """The dataset's provenance caveats (data/provenance.py): what its accuracy may measure."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.provenance import accuracy_caveats

    return accuracy_caveats(resolve_dataset(dataset_name).rows(), dataset_name)


def check_split(record: store.ModelRecord, test_set: EvalImages, allow_change: bool) -> list[str]:
    """Refuse (or, when allowed, warn) when the dataset was re-split after training: its
    test images may then include the model's own training images."""
    recorded = record.dataset.get("split_sha256")
    if not recorded:
        return [
            f"model {record.id} does not record its dataset's split, so cxr-covid cannot "
            "check that these images were held out from its training"
        ]
    if recorded == test_set.split_sha256:
        return []
    message = (
        f"dataset {test_set.dataset!r} has been re-split since model {record.id} was "
        "trained, so its current test images may include the model's training images"
    )
    if not allow_change:
        raise DataError(message + "; pass --ignore-split-change to evaluate anyway")
    return [message + " (evaluated anyway: --ignore-split-change)"]


def evaluate(
    models: Sequence[str | store.StoredModel] | None = None,
    *,
    split: str = "test",
    data_dir: Path | None = None,
    class_map: dict[str, str] | None = None,
    allow_split_change: bool = False,
    confidence: float = stats.DEFAULT_CONFIDENCE,
    bootstrap: int = stats.DEFAULT_BOOTSTRAP,
    seed: int = 42,
    batch_size: int = 32,
    save: bool = True,
    reporter: Reporter = NULL,
    operating_point: str | None = None,
    save_operating_point: bool = False,
) -> EvaluationReport:
    """Evaluate one or more stored models (default: the newest) and compare them.

    Each model is tested on `split` of the dataset recorded in it (original images only), or
    on the labelled folder `data_dir`. With `save`, each evaluation is appended to the model's
    record. McNemar's test is run for every pair of models that saw exactly the same images.
    """
    if bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if not 0 < confidence < 1:
        raise UsageError("confidence must be between 0 and 1")
    if save_operating_point and not operating_point:
        raise UsageError("--save-operating-point needs --operating-point CLASS:CRITERION=VALUE")
    if models:
        stored_models = [
            m if isinstance(m, store.StoredModel) else store.resolve(m) for m in models
        ]
    else:
        stored_models = [store.resolve(None)]
    seen: set[Path] = set()
    unique = []
    for m in stored_models:
        if m.root.resolve() not in seen:
            seen.add(m.root.resolve())
            unique.append(m)

    if operating_point:  # a bad spec fails before any image is read
        from cxr_covid.inference.operating_point import parse_spec

        for m in unique:
            parse_spec(operating_point, m.record().classes)
    test_sets: dict[tuple[str, ...], EvalImages] = {}
    caveats: dict[tuple[str, ...], list[str]] = {}  # what a dataset's accuracy may measure
    overlap_checks: dict[tuple[str, ...], OverlapCheck] = {}
    evaluations: list[ModelEvaluation] = []
    for stored in unique:
        record = stored.record()
        warnings: list[str] = []
        overlaps: list[Overlap] = []
        if data_dir is not None:
            key: tuple[str, ...] = (str(data_dir), ",".join(record.classes))
            if key not in test_sets:
                test_sets[key] = folder_test_set(data_dir, record.classes, class_map)
            # External images the model was trained on measure memory: leave them out.
            # Models trained on the same split share one check.
            trained_on = (
                *key,
                str(record.dataset.get("name")),
                str(record.dataset.get("split_sha256")),
            )
            if trained_on not in overlap_checks:
                overlap_checks[trained_on] = overlaps_for_model(
                    test_sets[key].paths, record.dataset
                )
            check = overlap_checks[trained_on]
            warnings += check.warnings
            if check.overlaps:
                overlaps = check.overlaps
                warnings.append(check.summary())
                key = (*key, record.id)
                test_sets[key] = test_sets[key[:2]].without(check.paths)
                if not test_sets[key].paths:
                    raise DataError(
                        f"every image of {data_dir} is one of model {record.id}'s training "
                        "images: nothing external is left to evaluate"
                    )
        else:
            name = record.dataset.get("name")
            if not name:
                raise DataError(
                    f"model {record.id} does not record which dataset it was trained on; "
                    "evaluate it on a labelled folder with --data DIR"
                )
            key = (str(name), split)
            if key not in test_sets:
                test_sets[key] = dataset_test_set(str(name), split)
                caveats[key] = dataset_caveats(str(name))
            warnings = check_split(record, test_sets[key], allow_split_change) + caveats[key]
        evaluation = evaluate_model(
            stored,
            test_sets[key],
            confidence=confidence,
            bootstrap=bootstrap,
            seed=seed,
            batch_size=batch_size,
            warnings=warnings,
            reporter=reporter,
            operating_point=operating_point,
        )
        evaluation.overlaps = overlaps
        evaluations.append(evaluation)
        if save:
            save_to_record(stored, evaluation)
        if save_operating_point:
            from cxr_covid.evaluation.decisions import save_operating_point as store_point

            store_point(stored, evaluation.decisions)

    comparisons, notes = compare(evaluations)
    return EvaluationReport(evaluations, comparisons, notes, confidence, bootstrap, seed)


def compare(evaluations: Sequence[ModelEvaluation]) -> tuple[list[PairComparison], list[str]]:
    """McNemar's test for every pair of models evaluated on exactly the same images."""
    comparisons: list[PairComparison] = []
    notes: list[str] = []
    for i, a in enumerate(evaluations):
        for b in evaluations[i + 1 :]:
            if (
                a.paths != b.paths
                or not np.array_equal(a.y_true, b.y_true)
                or a.classes != b.classes
            ):
                notes.append(
                    f"McNemar's test skipped for {a.model_id} vs {b.model_id}: "
                    "they were not evaluated on the same images"
                )
                continue
            comparisons.append(
                PairComparison(
                    a.model_id,
                    b.model_id,
                    a.accuracy.value,
                    b.accuracy.value,
                    stats.mcnemar(a.correct, b.correct),
                )
            )
    return comparisons, notes


def save_to_record(stored: store.StoredModel, evaluation: ModelEvaluation) -> None:
    """Append the evaluation to the model's record (atomic rewrite of model.json)."""
    record = stored.record()
    record.evaluations.append(evaluation.record_entry())
    stored.write_record(record)
