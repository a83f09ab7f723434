"""Our table beside the study's, the caveats, and the files a run writes (JSON, Markdown,
CSV, plots, report.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cxr_covid import atomic, classes, stats, study
from cxr_covid.about import DISCLAIMER
from cxr_covid.evaluation.results import ModelEvaluation
from cxr_covid.reproduce import seeds as reproduce_seeds
from cxr_covid.reproduce.estimate import train_counts
from cxr_covid.reproduce.results import Cell, ReproduceResult, Row


def with_interval(accuracy: float, val_images: list[int]) -> str:
    """`87.04% (47/54) [75.6-93.6]`: an accuracy is never shown without its interval."""
    from cxr_covid.evaluation.report import accuracy_cell

    return accuracy_cell(accuracy, val_images[0] if val_images else 0)


def compare_with_study(
    evaluations: dict[str, ModelEvaluation], trained: dict[str, str]
) -> list[Row]:
    rows = []
    for spec in study.STUDY_MODELS:
        evaluation = evaluations[trained[spec.key]]
        cells = []
        for column in study.TABLE_COLUMNS:
            if column == study.TOTAL:
                ours = evaluation.accuracy
            else:
                result = evaluation.class_result(column)
                ours = result.accuracy if result else stats.proportion(0, 0)
            published = spec.published[column]
            cells.append(
                Cell(column, ours, published, study.verdict(published, ours.low, ours.high))
            )
        rows.append(Row(spec, trained[spec.key], cells))
    return rows


def comparison_header() -> list[str]:
    ours = [classes.display_name(c) if c != study.TOTAL else "Total" for c in study.TABLE_COLUMNS]
    theirs = [
        classes.study_heading(c) if c != study.TOTAL else "Total" for c in study.TABLE_COLUMNS
    ]
    return ["Model", *(f"ours: {n}" for n in ours), *(f"study: {n}" for n in theirs)]


def comparison_rows(result: ReproduceResult) -> list[list[str]]:
    from cxr_covid.evaluation.report import cell

    rows = []
    for row in result.rows:
        ours = [cell(c.ours) for c in row.cells]
        published = [f"{c.published:.2f}% {c.verdict}" for c in row.cells]
        rows.append([row.study_model.label, *ours, *published])
    return rows


def caveats(result: ReproduceResult) -> list[str]:
    notes = []
    if not result.settings["study_protocol"]:
        notes.append(
            f"This run used preset {result.preset.name!r} "
            f"({result.settings['image_size']} px, {result.settings['epochs']} epochs): NOT "
            "the study's protocol, so a figure outside our interval says little about the "
            "study."
        )
    source = result.data_source
    if source.get("kind") != "kaggle" or str(source.get("release")) != str(study.STUDY_RELEASE):
        notes.append(
            "The data is not the Kaggle release the study used (release 1: 219 COVID-19, "
            "1341 normal, 1345 viral pneumonia), so its test set differs from the study's."
        )
    notes += [
        f"The study's COVID-19 test set holds {study.PUBLISHED_COVID_TEST_IMAGES} images: the "
        "95 % Wilson interval around 29/33 spans 72.7-95.2 %, so its three rows are not "
        "statistically distinguishable; McNemar's test asks the same of ours.",
        "Our split follows the notebook (70/15/15, stratified, seed 42) but the images in "
        "each split need not be the study's own; "
        + (
            "each model is one training run, so run-to-run variation is not measured "
            "(`--seeds 5` measures it)."
            if result.seeds is None
            else f"each model was trained with {result.seeds.seed_count} seeds: the first "
            "table shows the first seed only, the seeds section pools them all."
        ),
        "The viral-pneumonia and many normal images come from a paediatric collection, while "
        "the COVID-19 images come from adults: a network can learn age or the hospital's "
        "equipment rather than disease. High accuracy here is not evidence of clinical use.",
        DISCLAIMER,
    ]
    return notes


def _protocol_changes(settings: dict[str, Any]) -> list[str]:
    """How a run's settings differ from the study's (the paper preset)."""
    paper = study.PRESETS["paper"]
    changes = []
    for key, unit in (("image_size", " px"), ("epochs", " epochs"), ("batch_size", "")):
        if settings[key] != getattr(paper, key):
            label = "batch " if key == "batch_size" else ""
            changes.append(f"{label}{settings[key]}{unit} instead of {getattr(paper, key)}")
    return changes


def describe_source(source: dict[str, Any]) -> str:
    """dataset.json's source record in words: "zip /path", "Kaggle release 1", ..."""
    kind = source.get("kind")
    if kind == "kaggle":
        return f"Kaggle release {source.get('release', 'current')}"
    where = source.get("path") or source.get("url")
    if kind and where:
        return f"{'folder' if kind == 'dir' else kind} {where}"
    return json.dumps(source) if source else "unknown"


def provenance_lines(dataset: Any) -> list[str]:
    """The download's confounding warnings, repeated where the results are read."""
    from cxr_covid.data.confounding import confounding_warnings

    try:
        rows = dataset.rows()
    except Exception:  # the section is a courtesy; never fail the report on it
        return []
    warnings = confounding_warnings(rows)
    if warnings:
        body = [f"- **Warning:** {w}" for w in warnings]
    elif all(r.collection == "unknown" for r in rows):
        body = [
            "Not recorded for this dataset, so confounding could not be checked: attach it "
            "with `cxr-covid download --sources FILE.csv --dataset NAME`."
        ]
    else:
        body = ["No class is confounded with a collection or an age group (docs/provenance.md)."]
    return ["## Where the images come from", "", *body, ""]


def to_markdown(result: ReproduceResult, dataset: Any) -> str:
    from cxr_covid.evaluation import report as eval_report

    inside, judged = result.inside()
    s = result.settings
    protocol = (
        "the study's protocol"
        if s["study_protocol"]
        else f"**NOT the study's protocol** ({', '.join(_protocol_changes(s)) or 'changed'})"
    )
    lines = [
        "# Reproducing the study",
        "",
        f"Preset `{result.preset.name}`: {protocol}. Dataset `{s['dataset']}` "
        f"(source: {describe_source(result.data_source)}), {s['image_size']} px, "
        f"{s['epochs']} epochs, "
        f"batch {s['batch_size']}, Adam {s['learning_rate']}, seed {s['seed']}, COVID-19 "
        f"training images augmented x{s['augment_factor']}.",
        "",
    ]
    try:
        original, augmented, val = train_counts(dataset)
        test = result.report.evaluations[0].n if result.report.evaluations else 0
        lines += [
            f"Images: {original} training (+{augmented} augmented COVID-19 copies for the "
            f"augmented models), {val} validation, {test} test.",
            "",
        ]
    except Exception:  # the counts are a courtesy; never fail the report on them
        pass
    lines += [
        "## Our results beside the study's"
        + ("" if result.seeds is None else f": first seed only (seed {s['seed']})"),
        "",
        "Each of our cells: test accuracy (correct/images) [95 % Wilson interval]. Each study "
        "cell: the published figure, and whether it lies **inside** or **outside** our "
        "interval.",
        "",
        eval_report.markdown_table(comparison_header(), comparison_rows(result)),
        "",
        f"{inside} of {judged} published figures lie inside our 95 % intervals.",
        "",
    ]
    if result.audit is not None:
        from cxr_covid.reproduce.audit import markdown as audit_markdown

        lines += audit_markdown(result.audit)
    if result.report.comparisons:
        lines += [
            "## Are our three models different? McNemar's test",
            "",
            eval_report.markdown_table(
                eval_report.comparison_header(), eval_report.comparison_rows(result.report)
            ),
            "",
        ]
    lines += reproduce_seeds.markdown(result)
    lines += provenance_lines(dataset)
    lines += ["## Caveats", ""] + [f"- {c}" for c in caveats(result)] + [""]
    lines += [
        "## Files",
        "",
        "- `results.json`, `results.md`: this table, and every figure of the evaluation",
        "- `evaluation.csv`: every figure, one per row",
        "- `plots/`: confusion matrices, ROC curves, reliability diagrams",
        *(
            ["- `seeds.csv`, `plots/seeds.png`: every seed's accuracy per cell, and their plot"]
            if result.seeds is not None
            else []
        ),
        "- `state.json`: the run's settings and finished steps (rerun to resume)",
        "",
    ]
    return "\n".join(lines)


def write_outputs(result: ReproduceResult, dataset: Any) -> list[Path]:
    from cxr_covid.evaluation import report as eval_report
    from cxr_covid.evaluation.plots import write_plots

    root = result.run_dir
    files = []
    atomic.write_json(root / "results.json", result.to_dict())
    files.append(root / "results.json")
    markdown = to_markdown(result, dataset)
    details = eval_report.to_markdown(result.report, title="Evaluation details")
    atomic.write_text(root / "results.md", markdown + "\n" + details.replace("# ", "## ", 1))
    files.append(root / "results.md")
    atomic.write_text(root / "report.md", markdown)
    files.append(root / "report.md")
    eval_report.write_csv(root / "evaluation.csv", result.report)
    files.append(root / "evaluation.csv")
    files.extend(write_plots(result.report, root / "plots"))
    files.extend(reproduce_seeds.write_outputs(result))
    return files
