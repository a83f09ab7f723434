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

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import stats
from cxr_covid.data.overlap import Overlap, OverlapCheck, overlaps_for_model
from cxr_covid.errors import DataError, ModelError, UsageError
from cxr_covid.evaluation.metrics import compute_metrics
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation, PairComparison
from cxr_covid.evaluation.subgroups import compute_subgroups
from cxr_covid.evaluation.testsets import (
    EvalImages,
    check_split,
    dataset_caveats,
    dataset_test_set,
    external_test_sets,
)
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter


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
    from cxr_covid.inference.scoring import Scorer

    record = stored.record()
    model_classes = list(record.classes)
    missing = sorted(set(test_set.labels) - set(model_classes))
    if missing:
        raise DataError(
            f"model {record.id} was not trained on class(es) {', '.join(missing)} "
            f"(it knows {', '.join(model_classes)})"
        )
    model = stored.load()
    scorer = Scorer(model, record)
    predicted = _predict_all(model, scorer, record, test_set, batch_size, reporter)
    total = len(test_set.paths)
    kept_paths, kept_groups, failed = predicted.paths, predicted.groups, predicted.failed
    collected = predicted.collected
    notes = list(warnings)
    if failed:
        notes.append(f"{len(failed)} of {total} images could not be read and were left out")
    y_true, probs = predicted.y_true, predicted.probabilities
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


@dataclass
class _Predicted:
    """The images a model could read, their labels, groups and probabilities; the others."""

    paths: list[Path]
    y_true: np.ndarray
    groups: list[str]
    probabilities: np.ndarray
    failed: list[tuple[str, str]]
    collected: Any  # decisions.Collected: scores and OOD flags per image


def _predict_all(
    model: Any,
    scorer: Any,
    record: store.ModelRecord,
    test_set: EvalImages,
    batch_size: int,
    reporter: Reporter,
) -> _Predicted:
    """Predict every image of the test set (one progress task per model)."""
    from cxr_covid.evaluation import decisions as eval_decisions
    from cxr_covid.inference.batches import predict_paths

    model_classes = list(record.classes)
    index_of = {c: i for i, c in enumerate(model_classes)}
    collected = eval_decisions.Collected()
    kept_paths: list[Path] = []
    kept_true: list[int] = []
    kept_groups: list[str] = []
    probabilities: list[np.ndarray] = []
    failed: list[tuple[str, str]] = []
    reporter.start(record.id, total=len(test_set.paths), unit="images")
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
    probs = (
        np.stack(probabilities).astype(np.float64)
        if probabilities
        else np.zeros((0, len(model_classes)))
    )
    y_true = np.asarray(kept_true, dtype=np.int64)
    return _Predicted(kept_paths, y_true, kept_groups, probs, failed, collected)


def evaluate(
    models: Sequence[str | store.StoredModel] | None = None,
    *,
    split: str = "test",
    data_dir: Path | Sequence[Path] | None = None,
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
    on the labelled folder `data_dir` (or each of several: every cohort of every folder is
    one test set). With `save`, each evaluation is appended to the model's
    record. McNemar's test is run for every pair of models that saw exactly the same images.
    """
    if bootstrap < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if not 0 < confidence < 1:
        raise UsageError("confidence must be between 0 and 1")
    if save_operating_point and not operating_point:
        raise UsageError("--save-operating-point needs --operating-point CLASS:CRITERION=VALUE")
    unique = _unique_models(models)

    if operating_point:  # a bad spec fails before any image is read
        from cxr_covid.inference.operating_point import parse_spec

        for m in unique:
            parse_spec(operating_point, m.record().classes)
    folders = [data_dir] if isinstance(data_dir, Path) else list(data_dir or [])
    chosen = _TestSets(split, folders, class_map, allow_split_change)
    evaluations: list[ModelEvaluation] = []
    for stored in unique:
        # A tree of cohorts (--external) gives one evaluation per cohort and model.
        for test_set, warnings, overlaps in chosen.for_model(stored.record()):
            evaluation = evaluate_model(
                stored,
                test_set,
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


def _unique_models(models: Sequence[str | store.StoredModel] | None) -> list[store.StoredModel]:
    """The models asked for (default: the newest), each once."""
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
    return unique


@dataclass
class _TestSets:
    """Each model's test set, built once per dataset split or labelled folder and shared by
    the models that can share it, with the warnings that go with it."""

    split: str
    data_dirs: list[Path]  # empty: the dataset's own split
    class_map: dict[str, str] | None
    allow_split_change: bool
    test_sets: dict[tuple[str, ...], EvalImages] = field(default_factory=dict)
    caveats: dict[tuple[str, ...], list[str]] = field(default_factory=dict)
    overlap_checks: dict[tuple[str, ...], OverlapCheck] = field(default_factory=dict)
    cohort_keys: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)

    def for_model(
        self, record: store.ModelRecord
    ) -> list[tuple[EvalImages, list[str], list[Overlap]]]:
        if self.data_dirs:
            return [self._folder(record, cohort) for cohort in self._cohorts(record)]
        name = record.dataset.get("name")
        if not name:
            raise DataError(
                f"model {record.id} does not record which dataset it was trained on; "
                "evaluate it on a labelled folder with --external DIR"
            )
        key = (str(name), self.split)
        if key not in self.test_sets:
            self.test_sets[key] = dataset_test_set(str(name), self.split)
            self.caveats[key] = dataset_caveats(str(name))
        warnings = check_split(record, self.test_sets[key], self.allow_split_change)
        return [(self.test_sets[key], warnings + self.caveats[key], [])]

    def _cohorts(self, record: store.ModelRecord) -> list[tuple[str, ...]]:
        """The keys of the folders' cohorts for this model's classes, read once. With several
        folders, a folder that is itself one set is named by its folder name."""
        classes_key = ",".join(record.classes)
        if classes_key not in self.cohort_keys:
            keys = []
            for folder in self.data_dirs:
                for images in external_test_sets(folder, record.classes, self.class_map):
                    if not images.name and len(self.data_dirs) > 1:
                        images = dataclasses.replace(images, name=folder.expanduser().name)
                    key: tuple[str, ...] = (images.source, images.name, classes_key)
                    if key not in self.test_sets:  # a folder given twice is one set
                        self.test_sets[key] = images
                        keys.append(key)
            self.cohort_keys[classes_key] = keys
        return self.cohort_keys[classes_key]

    def _folder(
        self, record: store.ModelRecord, key: tuple[str, ...]
    ) -> tuple[EvalImages, list[str], list[Overlap]]:
        data_dir = self.test_sets[key].source.removeprefix("folder ")
        # External images the model was trained on measure memory: leave them out.
        # Models trained on the same split share one check.
        trained_on = (
            *key,
            str(record.dataset.get("name")),
            str(record.dataset.get("split_sha256")),
        )
        if trained_on not in self.overlap_checks:
            self.overlap_checks[trained_on] = overlaps_for_model(
                self.test_sets[key].paths, record.dataset
            )
        check = self.overlap_checks[trained_on]
        warnings = list(check.warnings)
        if not check.overlaps:
            return self.test_sets[key], warnings, []
        warnings.append(check.summary())
        own = (*key, record.id)
        self.test_sets[own] = self.test_sets[key].without(check.paths)
        if not self.test_sets[own].paths:
            raise DataError(
                f"every image of {data_dir} is one of model {record.id}'s training "
                "images: nothing external is left to evaluate"
            )
        return self.test_sets[own], warnings, check.overlaps


def compare(evaluations: Sequence[ModelEvaluation]) -> tuple[list[PairComparison], list[str]]:
    """McNemar's test for every pair of models evaluated on exactly the same images."""
    comparisons: list[PairComparison] = []
    notes: list[str] = []
    for i, a in enumerate(evaluations):
        for b in evaluations[i + 1 :]:
            if (a.test_set.source, a.test_set.name) != (b.test_set.source, b.test_set.name):
                continue  # other cohorts of one tree: nothing to pair
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
    record = stored.reload_record()  # keep anything written meanwhile
    record.evaluations.append(evaluation.record_entry())
    stored.write_record(record)
