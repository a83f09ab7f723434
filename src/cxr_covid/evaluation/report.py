"""An evaluation as text: table cells, Markdown, CSV and JSON, written atomically.

The CLI's rich table and the Markdown export use the same cell text, so a figure reads the
same everywhere: `87.88% (29/33) [72.7-95.2]` is 29 of 33 images right, 95 % Wilson interval.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxr_covid import atomic, classes, csv_safe, stats, text
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation
from cxr_covid.evaluation.subgroups import SMALL_SUBGROUP


def percent(x: float, digits: int = 2) -> str:
    return text.percent(x, digits)


def cell(p: stats.Proportion) -> str:
    """`87.88% (29/33) [72.7-95.2]`; a class with no images reads `n/a (0/0)`."""
    if p.n == 0:
        return "n/a (0/0)"
    return f"{100 * p.value:.2f}% ({p.successes}/{p.n}) [{100 * p.low:.1f}-{100 * p.high:.1f}]"


def accuracy_cell(rate: float | None, n: int) -> str:
    """An accuracy reported as a rate over n images (Keras' correct/n as a float), as a cell;
    `-` when there is none, the bare rate when n is unknown."""
    if rate is None:
        return "-"
    if n <= 0:
        return f"{100 * rate:.2f}%"
    return cell(stats.proportion_of(rate, n))


def estimate(e: stats.Estimate, digits: int = 3) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    if not (math.isfinite(e.low) and math.isfinite(e.high)):
        return f"{e.value:.{digits}f}"
    return f"{e.value:.{digits}f} [{e.low:.{digits}f}-{e.high:.{digits}f}]"


def p_value(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def model_label(evaluation: ModelEvaluation) -> str:
    """The model's id, and the cohort when `--external` was a tree of cohorts."""
    cohort = evaluation.test_set.name
    return f"{evaluation.model_id} on {cohort}" if cohort else evaluation.model_id


def study_header(report: EvaluationReport) -> list[str]:
    return ["Model", "Total", *(classes.display_name(c) for c in report.columns())]


def study_rows(report: EvaluationReport) -> list[list[str]]:
    """results.png as rows: model, Total, then one cell per class (count and interval)."""
    rows = []
    for evaluation in report.evaluations:
        row = [model_label(evaluation), cell(evaluation.accuracy)]
        for cls in report.columns():
            result = evaluation.class_result(cls)
            row.append(cell(result.accuracy) if result else "-")
        rows.append(row)
    return rows


def class_metric_header() -> list[str]:
    return ["Class", "Sensitivity", "Specificity", "PPV", "NPV", "F1", "ROC AUC"]


def class_metric_rows(evaluation: ModelEvaluation) -> list[list[str]]:
    return [
        [
            c.display,
            cell(c.accuracy),
            cell(c.specificity),
            cell(c.ppv),
            cell(c.npv),
            # No image of the class: F1 is 0 by convention, not a measurement (as sensitivity).
            estimate(c.f1) if c.accuracy.n else "n/a",
            estimate(c.auc),
        ]
        for c in evaluation.per_class
    ]


def confusion_header(evaluation: ModelEvaluation) -> list[str]:
    return ["true \\ predicted", *(classes.display_name(c) for c in evaluation.classes)]


def confusion_rows(evaluation: ModelEvaluation) -> list[list[str]]:
    return [
        [classes.display_name(cls), *(str(int(v)) for v in evaluation.confusion[i])]
        for i, cls in enumerate(evaluation.classes)
    ]


def subgroup_header() -> list[str]:
    return ["Class", "Source", "Accuracy", "Note"]


def subgroup_rows(evaluation: ModelEvaluation) -> list[list[str]]:
    """Per class x collection (or --external folder): accuracy (count) [interval], small flag."""
    return [
        [
            g.display,
            g.group,
            cell(g.accuracy),
            f"small (under {SMALL_SUBGROUP} images)" if g.small else "",
        ]
        for g in evaluation.subgroups
    ]


def comparison_header() -> list[str]:
    return ["Model A", "Model B", "A right, B wrong", "B right, A wrong", "exact p", "mid-p"]


def comparison_rows(report: EvaluationReport) -> list[list[str]]:
    return [
        [
            c.model_a,
            c.model_b,
            str(c.test.a_only),
            str(c.test.b_only),
            p_value(c.test.p_exact),
            p_value(c.test.p_mid),
        ]
        for c in report.comparisons
    ]


def summary_line(evaluation: ModelEvaluation) -> str:
    return (
        f"balanced accuracy {estimate(evaluation.balanced_accuracy)}, "
        f"macro-F1 {estimate(evaluation.macro_f1)}, "
        f"expected calibration error {evaluation.ece:.3f}"
        if math.isfinite(evaluation.ece)
        else f"balanced accuracy {estimate(evaluation.balanced_accuracy)}, "
        f"macro-F1 {estimate(evaluation.macro_f1)}"
    )


def accuracy_title(report: EvaluationReport) -> str:
    """ "Test accuracy", unless the images are a validation or training split."""
    splits = {e.test_set.split for e in report.evaluations}
    if splits <= {"test", "external"}:
        return "Test accuracy"
    if splits == {"val"}:
        return "Validation accuracy"
    if splits == {"train"}:
        return "Training accuracy"
    return "Accuracy"


def methods_note(report: EvaluationReport) -> str:
    level = f"{100 * report.confidence:g}%"
    bootstrap = (
        f"[{level} percentile bootstrap, {report.bootstrap} resamples stratified by class, "
        f"seed {report.seed}]"
        if report.bootstrap > 0
        else "no interval (--bootstrap 0)"
    )
    note = (
        f"Cells: accuracy (correct/images) [{level} Wilson interval]. F1, balanced accuracy, "
        f"macro-F1 and ROC AUC: {bootstrap}."
    )
    if report.comparisons:  # the legend of the McNemar table, only where there is one
        note += (
            " McNemar: two-sided exact and mid-p tests on the images where exactly one of "
            "the two models is right."
        )
    return note


# --- Markdown -------------------------------------------------------------------------------


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *(line(r) for r in rows)])


def to_markdown(report: EvaluationReport, title: str = "Evaluation") -> str:
    parts = [f"# {title}", ""]
    sources = sorted({e.test_set.source for e in report.evaluations})
    parts += [f"Evaluated on: {'; '.join(sources)}.", ""]
    parts += [f"## {accuracy_title(report)} (the study's table)", ""]
    parts += [markdown_table(study_header(report), study_rows(report)), ""]
    parts += [methods_note(report), ""]
    for evaluation in report.evaluations:
        parts += [f"## {model_label(evaluation)}", ""]
        parts += [
            f"{evaluation.architecture}, {evaluation.image_size} px, "
            f"{'with' if evaluation.augmented else 'without'} augmentation; "
            f"{evaluation.n} images; {summary_line(evaluation)}.",
            "",
        ]
        parts += [markdown_table(class_metric_header(), class_metric_rows(evaluation)), ""]
        parts += [markdown_table(confusion_header(evaluation), confusion_rows(evaluation)), ""]
        if evaluation.subgroups:
            parts += ["### Per class and source", ""]
            parts += [markdown_table(subgroup_header(), subgroup_rows(evaluation)), ""]
        if evaluation.decisions is not None:
            from cxr_covid.evaluation.decisions import tables

            found, lines = tables(evaluation.model_id, evaluation.decisions)
            for title, header, rows in found:
                parts += [f"### {title}", "", markdown_table(header, rows), ""]
            parts += [*lines, ""] if lines else []
        for warning in evaluation.warnings:
            parts += [f"> Warning: {warning}", ""]
    if report.comparisons:
        parts += ["## Are the models different? McNemar's test", ""]
        parts += [markdown_table(comparison_header(), comparison_rows(report)), ""]
        parts += [
            "A small p (say below 0.05) says the two models' accuracies differ by more than "
            "chance on these images; a large p says the data cannot tell them apart.",
            "",
        ]
    for note in report.notes:
        parts += [f"- {note}"]
    return "\n".join(parts).rstrip() + "\n"


# --- CSV ------------------------------------------------------------------------------------

CSV_COLUMNS = (
    "model",
    "split",
    "source",
    "metric",
    "class",
    "value",
    "low",
    "high",
    "successes",
    "n",
    "flag",  # "small" for a subgroup under SMALL_SUBGROUP images
)


def _num(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.6g}"


def _proportion_row(base: list[Any], metric: str, cls: str, p: stats.Proportion) -> list[Any]:
    return [*base, metric, cls, _num(p.value), _num(p.low), _num(p.high), p.successes, p.n]


def _estimate_row(base: list[Any], metric: str, cls: str, est: stats.Estimate, n: int) -> list[Any]:
    return [*base, metric, cls, _num(est.value), _num(est.low), _num(est.high), "", n]


class _PaddedWriter:
    """Every row as wide as the header (the trailing `flag` is empty on most rows), so a
    reader never meets short rows; through csv_safe, as model ids may look like formulas."""

    def __init__(self, writer: csv_safe.SafeWriter, width: int) -> None:
        self._writer, self._width = writer, width

    def writerow(self, row: Sequence[Any]) -> None:
        self._writer.writerow([*row, *[""] * (self._width - len(row))])


def to_csv(report: EvaluationReport) -> str:
    """Long format, one figure per row: easy to filter in a spreadsheet or pandas."""
    buffer = io.StringIO()
    writer = _PaddedWriter(csv_safe.SafeWriter(buffer), len(CSV_COLUMNS))
    writer.writerow(CSV_COLUMNS)
    for e in report.evaluations:
        base: list[Any] = [e.model_id, e.test_set.split, e.test_set.source]
        writer.writerow(_proportion_row(base, "accuracy", "", e.accuracy))
        writer.writerow(_estimate_row(base, "balanced_accuracy", "", e.balanced_accuracy, e.n))
        writer.writerow(_estimate_row(base, "macro_f1", "", e.macro_f1, e.n))
        writer.writerow([*base, "ece", "", _num(e.ece), "", "", "", e.n])
        for c in e.per_class:
            writer.writerow(_proportion_row(base, "accuracy", c.cls, c.accuracy))
            writer.writerow(_proportion_row(base, "specificity", c.cls, c.specificity))
            writer.writerow(_proportion_row(base, "ppv", c.cls, c.ppv))
            writer.writerow(_proportion_row(base, "npv", c.cls, c.npv))
            writer.writerow(_estimate_row(base, "f1", c.cls, c.f1, e.n))
            writer.writerow(_estimate_row(base, "auc", c.cls, c.auc, e.n))
        for i, true_cls in enumerate(e.classes):
            for j, pred_cls in enumerate(e.classes):
                count = int(e.confusion[i, j])
                writer.writerow([*base, f"confusion:{pred_cls}", true_cls, count, "", "", "", e.n])
        for g in e.subgroups:
            row = _proportion_row(base, f"subgroup_accuracy:{g.group}", g.cls, g.accuracy)
            writer.writerow([*row, "small" if g.small else ""])
        _decision_rows(writer, base, e)
    for comparison in report.comparisons:
        pair = f"{comparison.model_a} vs {comparison.model_b}"
        for metric, value in (
            ("mcnemar_exact_p", comparison.test.p_exact),
            ("mcnemar_mid_p", comparison.test.p_mid),
        ):
            writer.writerow([pair, "", "", metric, "", _num(value), "", "", "", comparison.test.n])
    return buffer.getvalue()


def _decision_rows(writer: _PaddedWriter, base: list[Any], e: ModelEvaluation) -> None:
    """Calibration before/after, the operating point's figures, the OOD count."""
    d = e.decisions
    if d is None:
        return
    for label, quality in d.quality.items():
        writer.writerow(_estimate_row(base, f"ece:{label}", "", quality.ece, e.n))
        writer.writerow(_estimate_row(base, f"brier:{label}", "", quality.brier, e.n))
    if d.ood_checked:
        writer.writerow(
            _proportion_row(base, "ood_flagged", "", stats.proportion(d.ood_flagged, d.ood_n))
        )
    if d.operating_point is not None:
        point = d.operating_point.point
        writer.writerow(
            [*base, "operating_point:threshold", point.cls, _num(point.threshold), "", "", "", ""]
        )
        for name in ("sensitivity", "specificity", "ppv", "npv"):
            value = getattr(d.operating_point.test, name)
            writer.writerow(_proportion_row(base, f"operating_point:{name}", point.cls, value))


# --- files ----------------------------------------------------------------------------------


def to_json_text(report: EvaluationReport, *, predictions: bool = False) -> str:
    return json.dumps(to_json_document(report, predictions=predictions), indent=2) + "\n"


def to_json_document(report: EvaluationReport, *, predictions: bool = False) -> dict[str, Any]:
    """`eval --json`'s document: the report with its schema (docs/json.md) first."""
    from cxr_covid.schemas import with_schema

    return with_schema("eval", report.to_dict(predictions=predictions))


def write_json(path: Path, report: EvaluationReport, *, predictions: bool = False) -> None:
    atomic.write_text(path, to_json_text(report, predictions=predictions))


def write_csv(path: Path, report: EvaluationReport) -> None:
    atomic.write_text(path, to_csv(report))


def write_markdown(path: Path, report: EvaluationReport, title: str = "Evaluation") -> None:
    atomic.write_text(path, to_markdown(report, title))
