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

from collections.abc import Sequence
from pathlib import Path

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
    folder_test_set,
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
