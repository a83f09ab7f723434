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

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic, paths
from cxr_covid.audit.checks import (
    decode_test,
    external_sets,
    mask_warnings,
    measure_attention,
    newcombe_difference,
    origin_only_view,
    predict_pixels,
    view_result,
)
from cxr_covid.audit.control import ensure_control
from cxr_covid.audit.results import (
    EXTERNAL_TASK,
    VIEWS,
    VIEWS_TASK,
    AuditOptions,
    AuditResult,
    ControlResult,
    ExternalResult,
    Panels,
    ViewResult,
)
from cxr_covid.audit.verdict import verdict
from cxr_covid.data.images import load_for_model
from cxr_covid.data.lungs import hide, lung_field_source
from cxr_covid.errors import CxrCovidError, DataError, ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter


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
    from cxr_covid.evaluation.testsets import check_split, dataset_test_set

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
    notes += mask_warnings(str(name), test.paths, options.mask_dir)
    model_classes = list(record.classes)
    index = {c: i for i, c in enumerate(model_classes)}
    y_true = np.array([index[label] for label in test.labels])
    k = len(model_classes)
    chance = 1.0 / k
    majority = float(np.bincount(y_true, minlength=k).max() / len(y_true))

    reporter.start(VIEWS_TASK, total=len(VIEWS), unit="views")  # decoding is part of it
    pixels, fields = decode_test(test.paths, record.prep, source)
    model = stored.load()
    views = _views(model, pixels, fields, y_true, model_classes, options, reporter)
    probe = None
    if options.source_probe:  # within-class collection probe on the penultimate features
        from cxr_covid.audit import source_probe

        features = source_probe.penultimate(model, pixels, options.batch_size)
        probe = source_probe.probe(features, test.labels, test.groups)

    attention = None
    cams: list[Any] = []
    if options.attention:
        attention, cams = measure_attention(
            model, record, test.paths, test.labels, pixels, fields, reporter
        )

    control = None
    if options.control:
        control = _control(record, test.paths, y_true, options, reporter)

    external = _external(model, record, views[0], options, reporter)
    origin_only = origin_only_view(str(name), y_true, index, model_classes)
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
        source_probe=probe,
    )
    target = (options.out or default_folder(record.id)).expanduser()
    panels = Panels(pixels, fields, source.kind, cams, options.panels)
    _write_folder(result, target, test.paths, model_classes, panels)
    result.folder = target
    from cxr_covid.models.audit_log import append_audit  # a card can then show it

    append_audit(stored, result.to_dict())
    return result


def _views(
    model: Any,
    pixels: np.ndarray,
    fields: np.ndarray,
    y_true: np.ndarray,
    model_classes: list[str],
    options: AuditOptions,
    reporter: Reporter,
) -> list[ViewResult]:
    """The test split as the model saw it, lungs hidden, and lungs only (VIEWS_TASK)."""
    views: list[ViewResult] = []
    for view in VIEWS:
        if view == "full":
            shown = pixels
        else:
            region = fields if view == "lungs hidden" else ~fields
            shown = np.stack([hide(pixels[i], region[i], options.fill) for i in range(len(pixels))])
        y_pred = np.argmax(predict_pixels(model, shown, options.batch_size), axis=1)
        views.append(view_result(view, y_true, y_pred, model_classes))
        reporter.advance(VIEWS_TASK, len(views))
    reporter.finish(VIEWS_TASK)
    return views


def _control(
    record: store.ModelRecord,
    test_paths: Any,
    y_true: np.ndarray,
    options: AuditOptions,
    reporter: Reporter,
) -> ControlResult:
    """The lung-blind control (trained or reused) tested on the same images."""
    control_model, reused = ensure_control(record, options.control_epochs, reporter)
    c_record = control_model.record()
    c_pixels = np.stack(
        [load_for_model(p, c_record.prep) for p in test_paths]
    )  # its own input: lung field hidden
    c_pred = np.argmax(predict_pixels(control_model.load(), c_pixels, options.batch_size), axis=1)
    return ControlResult(
        control_model.id,
        str(control_model.root),
        options.control_epochs,
        reused,
        view_result("lung-blind control", y_true, c_pred, list(record.classes)),
    )


def _external(
    model: Any,
    record: store.ModelRecord,
    full: ViewResult,
    options: AuditOptions,
    reporter: Reporter,
) -> list[ExternalResult]:
    external: list[ExternalResult] = []
    if not options.external:
        return external
    reporter.start(EXTERNAL_TASK, total=len(options.external), unit="sets")
    for done, folder in enumerate(options.external):
        reporter.advance(EXTERNAL_TASK, done)
        external.extend(
            external_sets(
                folder.expanduser(), model, record, options.class_map, full, options.batch_size
            )
        )
    reporter.finish(EXTERNAL_TASK)
    return external


def _write_folder(
    result: AuditResult,
    target: Path,
    images: Sequence[Path],
    model_classes: Sequence[str],
    panels: Panels,
) -> None:
    from cxr_covid.audit import report as audit_report

    if target.exists() and any(target.iterdir()):
        raise UsageError(f"--out {target} exists and is not empty; choose another folder")
    with atomic.building_dir(target, replace=target.exists()) as tmp:
        if result.attention is not None and panels.count and panels.cams:
            result.attention.panels = audit_report.write_panels(
                tmp, result.attention, images, model_classes, panels
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
