"""`cxr-covid eval`: the study's per-class accuracy table, with counts and 95% intervals."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.choices import EvalSplit
from cxr_covid.cli.console import MAX_SEED, err, out
from cxr_covid.cli.options import BootstrapResamples, DataClassMap
from cxr_covid.training.limits import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from collections.abc import Callable

    from cxr_covid.evaluation.core import EvaluationReport
    from cxr_covid.progress import Reporter

HELP = "Evaluate stored models: the study's per-class accuracy table with 95% intervals, and more."


def evaluate(
    models: Annotated[
        list[str] | None,
        typer.Argument(
            help="Model ids or folders (default: the newest model).", show_default=False
        ),
    ] = None,
    split: Annotated[
        EvalSplit | None,
        typer.Option(
            "--split",
            help="Which split of the model's own dataset: test (default), val or train.",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help="Evaluate on a labelled folder instead (one sub-folder per class).",
            file_okay=False,
        ),
    ] = None,
    class_map: DataClassMap = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print every figure as JSON on stdout (the same as --json-out -)."
        ),
    ] = False,
    json_path: Annotated[
        Path | None,
        typer.Option(
            "--json-out",
            help="Write every figure as JSON to PATH ('-' for stdout).",
            dir_okay=False,
        ),
    ] = None,
    csv_path: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            help="Write every figure as CSV, one figure per row ('-' for stdout).",
            dir_okay=False,
        ),
    ] = None,
    markdown_path: Annotated[
        Path | None,
        typer.Option(
            "--markdown", help="Write the tables as Markdown ('-' for stdout).", dir_okay=False
        ),
    ] = None,
    plots: Annotated[
        Path | None,
        typer.Option(
            "--plots",
            help="Write PNG figures (confusion matrix, ROC curves, reliability) to this folder.",
            file_okay=False,
        ),
    ] = None,
    predictions: Annotated[
        bool, typer.Option("--predictions", help="Include per-image probabilities in the JSON.")
    ] = False,
    save: Annotated[
        bool,
        typer.Option("--save/--no-save", help="Append the result to each model's record."),
    ] = True,
    ignore_split_change: Annotated[
        bool,
        typer.Option(
            "--ignore-split-change",
            help="Evaluate even if the dataset was re-split after training (warns).",
        ),
    ] = False,
    bootstrap: BootstrapResamples = 1000,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the bootstrap.")
    ] = 42,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", min=1, max=MAX_BATCH_SIZE, help="Images per prediction batch."
        ),
    ] = 32,
    group: Annotated[
        str | None,
        typer.Option(
            "--group",
            help="Evaluate every model of a group (made by `train --seeds` or `reproduce`) "
            "and report the mean, sd and range across its seeds.",
        ),
    ] = None,
    operating_point: Annotated[
        str | None,
        typer.Option(
            "--operating-point",
            help="CLASS:CRITERION=VALUE, e.g. covid:sensitivity=0.95 (or specificity=, "
            "threshold=): choose the threshold on the validation split and report "
            "sensitivity, specificity, PPV and NPV at it on the evaluated images.",
            show_default=False,
        ),
    ] = None,
    save_operating_point: Annotated[
        bool,
        typer.Option(
            "--save-operating-point",
            help="Store the --operating-point in the model record (predict then decides by it).",
        ),
    ] = False,
) -> None:
    from cxr_covid.classes import parse_class_map
    from cxr_covid.errors import PartialFailure, UsageError
    from cxr_covid.evaluation import report as eval_report
    from cxr_covid.evaluation.core import evaluate as run_evaluation

    if data is not None and split is not None:
        raise UsageError("--split and --data exclude each other (--data is its own test set)")
    if class_map and data is None:
        raise UsageError("--class-map only applies with --data DIR")
    if as_json:
        if json_path is not None:
            raise UsageError("--json prints the JSON on stdout; give it or --json-out PATH")
        json_path = Path("-")
    # '-' means stdout, for one of the three (it is then the only thing on stdout).
    on_stdout = [
        flag
        for flag, path in (
            ("--json" if as_json else "--json-out", json_path),
            ("--csv", csv_path),
            ("--markdown", markdown_path),
        )
        if path is not None and str(path) == "-"
    ]
    if len(on_stdout) > 1:
        raise UsageError(f"only one of {' and '.join(on_stdout)} can be '-' (stdout)")
    to_stdout = bool(on_stdout)
    group_records = None
    if group is not None:
        from cxr_covid.evaluation.seeds import group_models

        if models:
            raise UsageError("give model ids or --group NAME, not both")
        members = group_models(group)
        models = [str(m.root) for m in members]
        group_records = [m.record() for m in members]
    from cxr_covid.cli.model_line import announce_models
    from cxr_covid.models import store

    announce_models([store.resolve(m).id for m in models or [""]], given=bool(models))
    _check_outputs_writable(
        [p for p in (json_path, csv_path, markdown_path) if p is not None and str(p) != "-"],
        plots,
        (models or [""]) if save else None,
    )

    report = _run_with_progress(
        lambda reporter: run_evaluation(
            models or None,
            split=split or "test",
            data_dir=data,
            class_map=parse_class_map(class_map),
            allow_split_change=ignore_split_change,
            bootstrap=bootstrap,
            seed=seed,
            batch_size=batch_size,
            save=save,
            reporter=reporter,
            operating_point=operating_point,
            save_operating_point=save_operating_point,
        ),
        quiet=to_stdout,
    )
    spread = None
    if group is not None and group_records is not None:
        from cxr_covid.evaluation.seeds import summarize_group

        spread = summarize_group(report, group_records, bootstrap=bootstrap, seed=seed)

    if json_path is not None and spread is not None:
        from cxr_covid.cli.seeds_view import write_group_json

        write_group_json(json_path, report, spread, str(group), predictions)
    elif json_path is not None:
        if str(json_path) == "-":
            out.file.write(eval_report.to_json_text(report, predictions=predictions))
        else:
            eval_report.write_json(json_path, report, predictions=predictions)
    if csv_path is not None:
        if str(csv_path) == "-":
            out.file.write(eval_report.to_csv(report))
        else:
            eval_report.write_csv(csv_path, report)
    if markdown_path is not None and spread is not None:
        from cxr_covid.cli.seeds_view import write_group_markdown

        write_group_markdown(markdown_path, report, spread, str(group))
    elif markdown_path is not None:
        if str(markdown_path) == "-":
            out.file.write(eval_report.to_markdown(report, "Evaluation"))
        else:
            eval_report.write_markdown(markdown_path, report)
    written_plots = []
    if plots is not None:
        from cxr_covid.evaluation.plots import write_plots

        written_plots = write_plots(report, plots)

    if not to_stdout:
        render(report)
        if spread is not None:
            from cxr_covid.cli.seeds_view import render_seeds

            render_seeds(spread, f"Across {spread.seed_count} seeds (group {group})")
        for path in (json_path, csv_path, markdown_path):
            if path is not None and str(path) != "-":
                err.print(f"[dim]wrote {escape(str(path))}[/]", soft_wrap=True)
        if written_plots:
            err.print(f"[dim]wrote {len(written_plots)} figures to {plots}[/]")
        if save:
            err.print("[dim]saved into each model's record (see `cxr-covid models show`)[/]")
        if save_operating_point:
            err.print("[dim]operating point stored in each model's record (used by predict)[/]")
    for evaluation in report.evaluations:
        for warning in evaluation.warnings:
            err.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    failed = sum(len(e.failed) for e in report.evaluations)
    if failed:
        for evaluation in report.evaluations:
            for _path, message in evaluation.failed[:20]:
                err.print(f"[red]unreadable:[/] {escape(message)}", soft_wrap=True)
        raise PartialFailure(f"{failed} image(s) could not be read and were left out")


def _check_outputs_writable(
    files: list[Path], plots: Path | None, saved_models: list[str] | None
) -> None:
    """Evaluation can take minutes: learn now, not after it, that an output cannot be
    written (a full disk, a read-only folder, a model store without permission)."""
    from cxr_covid import atomic
    from cxr_covid.errors import CxrCovidError
    from cxr_covid.models import store

    for path in files:
        atomic.check_file_writable(path)
    if plots is not None:
        atomic.check_writable(plots)
    if saved_models is not None:
        for name in saved_models:
            try:
                stored = store.resolve(name or None)
            except CxrCovidError:
                continue  # the evaluation itself says why, in its words
            atomic.check_writable(stored.root)


def _run_with_progress(
    work: Callable[[Reporter], EvaluationReport], quiet: bool
) -> EvaluationReport:
    """Run `work(reporter)` with the progress bars on stderr (one per model), or silently."""
    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.progress import NULL

    if quiet:
        return work(NULL)
    with RichReporter() as reporter:
        return work(reporter)


def render(report: EvaluationReport, title: str | None = None) -> None:
    """The study's table, then per model the one-vs-rest metrics and confusion matrix."""
    from cxr_covid.evaluation import report as eval_report

    title = title or eval_report.accuracy_title(report)
    sources = "; ".join(sorted({e.test_set.source for e in report.evaluations}))
    table = Table(title=escape(f"{title} ({sources})"), title_justify="left")
    # Cells wrap at their spaces on narrow terminals ("87.88% (29/33)" over its interval)
    # rather than being cut, and the model column never shrinks to nothing.
    for i, name in enumerate(eval_report.study_header(report)):
        if i == 0:
            # Piped (not a terminal), the width is not limited: keep each id on one line.
            narrow = 14 if out.is_terminal else None
            table.add_column(name, overflow="fold", min_width=8, max_width=narrow)
        else:
            table.add_column(name, min_width=12, overflow="fold")
    for row in eval_report.study_rows(report):
        table.add_row(*map(escape, row))
    out.print(table)
    out.print(f"[dim]{escape(eval_report.methods_note(report))}[/]")
    for evaluation in report.evaluations:
        details = Table(
            title=escape(f"{evaluation.model_id}: one class vs the rest"), title_justify="left"
        )
        for name in eval_report.class_metric_header():
            details.add_column(name, overflow="fold")  # wrap a figure, never cut it
        for row in eval_report.class_metric_rows(evaluation):
            details.add_row(*map(escape, row))
        out.print(details)
        confusion = Table(title="confusion matrix", title_justify="left")
        for name in eval_report.confusion_header(evaluation):
            confusion.add_column(name, justify="right")
        for row in eval_report.confusion_rows(evaluation):
            confusion.add_row(*row)
        out.print(confusion)
        if evaluation.subgroups:
            groups = Table(title="per class and source", title_justify="left")
            for name in eval_report.subgroup_header():
                groups.add_column(name)
            for row in eval_report.subgroup_rows(evaluation):
                groups.add_row(*map(escape, row), style="dim" if row[-1] else None)
            out.print(groups)
        out.print(escape(eval_report.summary_line(evaluation)))
        if evaluation.decisions is not None:
            from cxr_covid.cli.decisions import render_decisions

            render_decisions(evaluation)
    if report.comparisons:
        mcnemar = Table(title="McNemar's test: are the models different?", title_justify="left")
        for name in eval_report.comparison_header():
            mcnemar.add_column(name)
        for row in eval_report.comparison_rows(report):
            mcnemar.add_row(*map(escape, row))
        out.print(mcnemar)
    for note in report.notes:
        out.print(f"[dim]{escape(note)}[/]")
