"""The spread across seeds on the terminal (`reproduce --seeds`, `train --seeds`,
`eval --group`): one renderer, so the view reads the same in every command."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import out

if TYPE_CHECKING:
    from pathlib import Path

    from cxr_covid.evaluation.results import EvaluationReport
    from cxr_covid.evaluation.seeds import SeedSummary


def render_seeds(summary: SeedSummary, title: str) -> None:
    """The spread across seeds: mean, sd, range and interval per cell; the study's figure
    with its verdict; the paired permutation tests; the per-seed table."""
    from cxr_covid.evaluation import seed_tables, seeds

    def table(caption: str, header: list[str], rows: list[list[str]]) -> Table:
        shown = Table(title=escape(caption), title_justify="left")
        for i, name in enumerate(header):
            shown.add_column(escape(name), min_width=14 if i == 0 else 10)
        for row in rows:
            shown.add_row(*(escape(c) for c in row))
        return shown

    out.print(
        table(
            f"{title}: mean, sd (points), min-max across seeds (95 % interval)",
            seed_tables.summary_header(summary),
            seed_tables.summary_rows(summary),
        )
    )
    published = seed_tables.published_rows(summary)
    if published:
        header = [
            "Recipe",
            *(f"study: {seed_tables.study_column_name(c)}" for c in summary.columns),
        ]
        coloured = [[row[0], *(_seed_verdict(c) for c in row[1:])] for row in published]
        shown = table("The study's figures beside our seeds", header, [])
        for row in coloured:
            shown.add_row(*row)
        out.print(shown)
        counts = summary.verdicts()
        out.print(
            f"{counts[seeds.INSIDE_RANGE]} inside our seed range, "
            f"{counts[seeds.INSIDE_INTERVAL]} inside only the 95 % interval, "
            f"{counts[seeds.OUTSIDE]} outside."
        )
    if summary.comparisons:
        out.print(
            table(
                "Are the recipes different? Paired permutation test over test images",
                seed_tables.comparison_header(),
                seed_tables.comparison_rows(summary),
            )
        )
    out.print(
        table("Per seed", seed_tables.per_seed_header(summary), seed_tables.per_seed_rows(summary))
    )
    out.print(f"[dim]{escape(seed_tables.methods_note(summary))}[/]", soft_wrap=True)
    for note in summary.notes:
        out.print(f"[dim]- {escape(note)}[/]", soft_wrap=True)


def _seed_verdict(text: str) -> str:
    colour = {"inside seed range": "green", "inside interval": "yellow", "outside": "red"}
    for verdict, name in colour.items():
        if text.endswith(verdict):
            return escape(text[: -len(verdict)]) + f"[{name}]{verdict}[/]"
    return escape(text)


def group_json(
    report: EvaluationReport, summary: SeedSummary, group: str, predictions: bool
) -> str:
    """`eval --group --json`: every model's evaluation, and the group's spread."""
    import json

    from cxr_covid.evaluation.report import to_json_document

    data = to_json_document(report, predictions=predictions)
    data["group"] = {"name": group, **summary.to_dict()}
    return json.dumps(data, indent=2) + "\n"


def write_group_json(
    path: Path, report: EvaluationReport, summary: SeedSummary, group: str, predictions: bool
) -> None:
    from cxr_covid import atomic

    text = group_json(report, summary, group, predictions)
    if str(path) == "-":
        out.file.write(text)
    else:
        atomic.write_text(path, text)


def write_group_markdown(
    path: Path, report: EvaluationReport, summary: SeedSummary, group: str
) -> None:
    from cxr_covid import atomic
    from cxr_covid.evaluation import report as eval_report
    from cxr_covid.evaluation import seed_tables

    title = f"Across {summary.seed_count} seeds (group {group})"
    text = (
        eval_report.to_markdown(report, "Evaluation")
        + "\n"
        + seed_tables.to_markdown(summary, title)
    )
    if str(path) == "-":
        out.file.write(text)
    else:
        atomic.write_text(path, text)


def train_seeds(config: Any, seeds: int, view: Any, as_json: bool) -> None:
    """`train --seeds N`: one model per seed, then the spread of their validation accuracy."""
    from dataclasses import replace

    import typer

    from cxr_covid.cli.console import err, print_json
    from cxr_covid.errors import EXIT_INTERRUPTED
    from cxr_covid.training import run as training
    from cxr_covid.training import seeds as seed_training

    config.validate()
    group = config.name or seed_training.default_group(config)
    config = replace(config, name=group)
    words = {"reuse": "already trained, kept", "resume": "continuing", "train": "training"}

    def on_model(seed: int, model_id: str, action: str) -> None:
        view.reporter.console.print(
            f"seed {seed}: {escape(model_id)} {words[action]}", soft_wrap=True
        )

    try:
        with view.reporter as reporter:
            result = seed_training.train_group(
                config,
                seeds,
                reporter=reporter,
                on_start=view.start,
                on_epoch=view.epoch,
                on_model=on_model,
            )
    except (training.TrainingInterrupted, KeyboardInterrupt):
        err.print(
            f"[yellow]Interrupted.[/] Finished seeds are kept; rerun the same command with "
            f"--name {escape(group)} to continue at the seed and epoch where it stopped.",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if as_json:
        print_json(result.to_dict(), schema="train-seeds")
        return
    print_group(result)


def print_group(result: Any) -> None:
    from cxr_covid.cli.console import accuracy_cell

    table = Table(title=escape(f"Group {result.group}"), title_justify="left")
    for column in ("seed", "model", "best epoch", "val acc", ""):
        table.add_column(column)
    for m in result.models:
        table.add_row(
            str(m.seed),
            escape(m.model),
            str(m.best_epoch),
            escape(accuracy_cell(m.best_val_accuracy, m.val_images)),
            "kept" if m.reused else "",
        )
    out.print(table)
    spread = result.val_spread()

    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}"

    out.print(
        f"Best validation accuracy across {len(result.models)} seeds: mean {pct(spread['mean'])}%"
        f", sd {pct(spread['sd'])} points, range {pct(spread['min'])}-{pct(spread['max'])}% "
        "(optimistic: each model's best epoch was chosen on it)."
    )
    out.print(
        f"[dim]Next: `cxr-covid eval --group {escape(result.group)}` for the mean, sd, range "
        "and 95 % interval on the test split.[/]",
        soft_wrap=True,
    )
