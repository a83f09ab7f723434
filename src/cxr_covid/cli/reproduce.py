"""`cxr-covid reproduce`: the whole study, end to end, our table beside the published one."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.choices import Preset
from cxr_covid.cli.console import MAX_SEED, out, print_json
from cxr_covid.cli.options import BootstrapResamples, ExternalClassMap, ExternalFolders
from cxr_covid.study import PRESETS
from cxr_covid.training.flags import options_to_flags
from cxr_covid.training.limits import (
    MAX_BATCH_SIZE,
    MAX_EPOCHS,
    MAX_IMAGE_SIZE,
    MIN_IMAGE_SIZE,
)

if TYPE_CHECKING:
    from cxr_covid.reproduce.results import ReproduceResult

HELP = "Run the whole study end to end and compare our table with the published one."

_ROBUST_FLAGS = options_to_flags(PRESETS["robust"].recipe) or "nothing added"


def reproduce(
    preset: Annotated[
        Preset,
        typer.Option(
            "--preset",
            help="paper: the study's protocol (224 px, 30 epochs; hours on a CPU). "
            "quick: 64 px, 5 epochs, minutes; NOT the study's protocol. robust: the study's "
            f"settings with the recipe compare ranked best ({_ROBUST_FLAGS}; "
            "docs/shortcut-audit.md, round 5).",
        ),
    ] = "paper",
    from_zip: Annotated[
        Path | None,
        typer.Option(
            "--from-zip",
            help="Use a local copy of the Kaggle zip instead of downloading.",
            dir_okay=False,
        ),
    ] = None,
    data: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="Dataset name: reuse it if it exists in the home, else download into it.",
        ),
    ] = None,
    data_old_name: Annotated[
        str | None,
        # The option's name before 0.x (every command now says --dataset): kept working.
        typer.Option("--data", hidden=True),
    ] = None,
    sources: Annotated[
        Path | None,
        typer.Option(
            "--sources",
            help="CSV 'path,source[,age_group]' saying where each image comes from, as for "
            "download (default: a sources.csv inside or beside --from-zip).",
            dir_okay=False,
        ),
    ] = None,
    no_sources: Annotated[
        bool,
        typer.Option("--no-sources", help="Do not use a sources.csv found with --from-zip."),
    ] = False,
    url: Annotated[
        str | None, typer.Option("--url", help="Download the zip from this URL (a mirror).")
    ] = None,
    release: Annotated[
        int | None,
        typer.Option("--release", help="Kaggle release to download (default 1, the study's)."),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder (default: <home>/reproduce/<preset>-<dataset>). Rerun to resume.",
            file_okay=False,
        ),
    ] = None,
    image_size: Annotated[
        int | None,
        typer.Option(
            "--image-size",
            min=MIN_IMAGE_SIZE,
            max=MAX_IMAGE_SIZE,
            help="Override the preset's image size.",
        ),
    ] = None,
    epochs: Annotated[
        int | None,
        typer.Option("--epochs", min=1, max=MAX_EPOCHS, help="Override the preset's epochs."),
    ] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            "--batch-size", min=1, max=MAX_BATCH_SIZE, help="Override the preset's batch size."
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(
            "--seed", min=0, max=MAX_SEED, help="Training and bootstrap seed (default 42)."
        ),
    ] = None,
    bootstrap: BootstrapResamples = 1000,
    estimate: Annotated[
        bool,
        typer.Option("--estimate/--no-estimate", help="Time a few training steps first."),
    ] = True,
    restart: Annotated[
        bool, typer.Option("--restart", help="Forget the run folder's progress and start over.")
    ] = False,
    seeds: Annotated[
        int,
        typer.Option(
            "--seeds",
            min=1,
            help="Train every model N times (seeds --seed + i) and report the mean, sd and "
            "range across seeds. Rerun with a larger N to add seeds.",
        ),
    ] = 1,
    deterministic: Annotated[
        bool,
        typer.Option(
            "--deterministic",
            help="Deterministic TensorFlow ops: same seed, same weights (slower on GPU).",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the results as JSON instead of tables.")
    ] = False,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit/--no-audit", help="Run the shortcut audit and put its verdict in the report."
        ),
    ] = True,
    external: ExternalFolders = None,
    class_map: ExternalClassMap = None,
    control_epochs: Annotated[
        int | None,
        typer.Option("--control-epochs", min=1, help="Epochs of the audit's lung-blind control."),
    ] = None,
) -> None:
    from cxr_covid.classes import parse_class_map
    from cxr_covid.errors import UsageError
    from cxr_covid.reproduce.run import ReproduceOptions, run

    if sources is not None and no_sources:
        raise UsageError("--sources FILE and --no-sources exclude each other")
    if (external or class_map or control_epochs) and not audit:
        raise UsageError("--external, --class-map and --control-epochs need the audit")

    options = ReproduceOptions(
        preset=preset,
        data=_one_dataset(data, data_old_name),
        from_zip=from_zip,
        sources=sources,
        find_sources=not no_sources,
        url=url,
        release=release,
        out=out_dir,
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        bootstrap=bootstrap,
        estimate=estimate,
        restart=restart,
        seeds=seeds,
        deterministic=deterministic,
        audit=audit,
        external=list(external or []),
        class_map=parse_class_map(class_map),
        control_epochs=control_epochs,
    )
    from cxr_covid.cli.progress_view import RichReporter

    with RichReporter() as reporter:
        result = run(options, reporter)
    if as_json:
        print_json(result.to_dict(), schema="reproduce")
        return
    render(result)


def _verdict_cell(published: float, verdict: str) -> str:
    colour = {"inside": "green", "outside": "red"}.get(verdict)
    return f"{published:.2f}% " + (f"[{colour}]{verdict}[/]" if colour else verdict)


def render(result: ReproduceResult) -> None:
    from cxr_covid.evaluation import report as eval_report
    from cxr_covid.reproduce.report import caveats, comparison_header

    protocol = (
        "the study's protocol" if result.settings["study_protocol"] else "NOT the study's protocol"
    )
    title = f"Test accuracy: ours beside the study's (preset {result.preset.name}, {protocol})"
    if result.seeds is not None:
        title += f"; first seed ({result.settings['seed']}) only"
    ours_cells = [[escape(eval_report.cell(c.ours)) for c in row.cells] for row in result.rows]
    study_cells = [
        [_verdict_cell(c.published, c.verdict) for c in row.cells] for row in result.rows
    ]
    labels = [escape(row.study_model.label) for row in result.rows]
    header = comparison_header()
    n = len(result.rows[0].cells) if result.rows else 0
    if out.width >= 170:
        # Wide enough: one table, our column group beside the study's.
        table = Table(title=escape(title), title_justify="left")
        for i, name in enumerate(header):
            table.add_column(name, min_width=14 if i == 0 else 12)
        for label, ours, published in zip(labels, ours_cells, study_cells, strict=True):
            table.add_row(label, *ours, *published)
        out.print(table)
    else:
        # Narrow terminal: the two column groups as two tables, rows in the same order.
        for group, cells, caption in (
            (header[1 : 1 + n], ours_cells, escape(title)),
            (
                header[1 + n :],
                study_cells,
                "The study's published figures: inside or outside our 95 % interval",
            ),
        ):
            table = Table(title=caption, title_justify="left")
            table.add_column("Model", max_width=14)
            for name in group:
                table.add_column(name, min_width=12)
            for label, row_cells in zip(labels, cells, strict=True):
                table.add_row(label, *row_cells)
            out.print(table)
    inside, judged = result.inside()
    out.print(
        f"{inside} of {judged} published figures lie inside our 95 % Wilson intervals "
        "(ours: correct/images \\[interval])."
    )
    if result.report.comparisons:
        mcnemar = Table(title="McNemar's test between our models", title_justify="left")
        for name in eval_report.comparison_header():
            mcnemar.add_column(name)
        for row_text in eval_report.comparison_rows(result.report):
            mcnemar.add_row(*map(escape, row_text))
        out.print(mcnemar)
    if result.seeds is not None:
        from cxr_covid.cli.seeds_view import render_seeds

        render_seeds(result.seeds, f"Across {result.seeds.seed_count} seeds")
    if result.audit is not None:
        out.print(
            f"[bold]Shortcut audit:[/] {escape(str(result.audit['verdict']))}", soft_wrap=True
        )
    for note in caveats(result):
        out.print(f"[dim]- {escape(note)}[/]", soft_wrap=True)
    out.print(f"Report, tables and plots: {escape(str(result.run_dir))}", soft_wrap=True)


def _one_dataset(dataset: str | None, old_name: str | None) -> str | None:
    """`--dataset`, or its old name `--data`; both at once only when they agree."""
    if dataset is not None and old_name is not None and dataset != old_name:
        from cxr_covid.errors import UsageError

        raise UsageError("--data is the old name of --dataset: give one of them")
    return dataset if dataset is not None else old_name
