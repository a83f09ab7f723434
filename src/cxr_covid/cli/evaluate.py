"""`cxr-covid eval`: the study's per-class accuracy table, with counts and 95% intervals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.choices import EvalSplit
from cxr_covid.cli.console import MAX_SEED, err, out
from cxr_covid.cli.options import BootstrapResamples, DataClassMap
from cxr_covid.training.limits import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from collections.abc import Callable

    from cxr_covid.evaluation.results import EvaluationReport
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
        list[Path] | None,
        typer.Option(
            "--external",
            help="Evaluate on labelled images from elsewhere instead: a folder of class "
            "folders, or a tree of cohorts holding class folders (one row per cohort). "
            "Repeatable.",
            file_okay=False,
        ),
    ] = None,
    data_old_name: Annotated[
        list[Path] | None,
        # Its name before issue 21 (audit, reproduce and compare say --external): kept working.
        typer.Option("--data", hidden=True, file_okay=False),
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
    from cxr_covid.errors import UsageError
    from cxr_covid.evaluation.evaluate import evaluate as run_evaluation

    data = [*(data or []), *(data_old_name or [])] or None
    if data is not None and split is not None:
        raise UsageError(
            "--split and --external exclude each other (--external is its own test set)"
        )
    if class_map and data is None:
        raise UsageError("--class-map only applies with --external DIR")
    if as_json:
        if json_path is not None:
            raise UsageError("--json prints the JSON on stdout; give it or --json-out PATH")
        json_path = Path("-")
    outputs = _Outputs(json_path, csv_path, markdown_path, plots, as_json)
    to_stdout = outputs.check_stdout()
    group_records = None
    if group is not None:
        models, group_records = _group_members(group, models)
    from cxr_covid.cli.model_line import announce_models
    from cxr_covid.models import store

    announce_models([store.resolve(m).id for m in models or [""]], given=bool(models))
    _check_outputs_writable(outputs.files(), plots, (models or [""]) if save else None)

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
        from cxr_covid.evaluation.seed_groups import summarize_group

        spread = summarize_group(report, group_records, bootstrap=bootstrap, seed=seed)
    written_plots = outputs.write(report, spread, str(group), predictions)
    if not to_stdout:
        render(report)
        if spread is not None:
            from cxr_covid.cli.seeds_view import render_seeds

            render_seeds(spread, f"Across {spread.seed_count} seeds (group {group})")
        outputs.say_written(written_plots)
        if save:
            err.print("[dim]saved into each model's record (see `cxr-covid models show`)[/]")
        if save_operating_point:
            err.print("[dim]operating point stored in each model's record (used by predict)[/]")
    _warn_and_fail(report)


def _group_members(group: str, models: list[str] | None) -> tuple[list[str], list[Any]]:
    """The folders and records of a group's models (`--group`)."""
    from cxr_covid.errors import UsageError
    from cxr_covid.evaluation.seed_groups import group_models

    if models:
        raise UsageError("give model ids or --group NAME, not both")
    members = group_models(group)
    return [str(m.root) for m in members], [m.record() for m in members]


@dataclass
class _Outputs:
    """The files `eval` writes besides its tables: JSON, CSV, Markdown ('-': stdout), plots."""

    json_path: Path | None
    csv_path: Path | None
    markdown_path: Path | None
    plots: Path | None
    as_json: bool

    def check_stdout(self) -> bool:
        """Whether one output goes to stdout (then the only thing there); refuse two."""
        from cxr_covid.errors import UsageError

        on_stdout = [
            flag
            for flag, path in (
                ("--json" if self.as_json else "--json-out", self.json_path),
                ("--csv", self.csv_path),
                ("--markdown", self.markdown_path),
            )
            if path is not None and str(path) == "-"
        ]
        if len(on_stdout) > 1:
            raise UsageError(f"only one of {' and '.join(on_stdout)} can be '-' (stdout)")
        return bool(on_stdout)

    def files(self) -> list[Path]:
        paths = (self.json_path, self.csv_path, self.markdown_path)
        return [p for p in paths if p is not None and str(p) != "-"]

    def write(
        self, report: EvaluationReport, spread: Any, group: str, predictions: bool
    ) -> list[Path]:
        """Write every output asked for; the plots written."""
        from cxr_covid.evaluation import report as eval_report

        json_path, csv_path, markdown_path = self.json_path, self.csv_path, self.markdown_path
        if json_path is not None and spread is not None:
            from cxr_covid.cli.seeds_view import write_group_json

            write_group_json(json_path, report, spread, group, predictions)
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

            write_group_markdown(markdown_path, report, spread, group)
        elif markdown_path is not None:
            if str(markdown_path) == "-":
                out.file.write(eval_report.to_markdown(report, "Evaluation"))
            else:
                eval_report.write_markdown(markdown_path, report)
        if self.plots is None:
            return []
        from cxr_covid.evaluation.plots import write_plots

        return list(write_plots(report, self.plots))

    def say_written(self, written_plots: list[Path]) -> None:
        for path in self.files():
            err.print(f"[dim]wrote {escape(str(path))}[/]", soft_wrap=True)
        if written_plots:
            err.print(f"[dim]wrote {len(written_plots)} figures to {self.plots}[/]")


def _warn_and_fail(report: EvaluationReport) -> None:
    """Each evaluation's warnings; unreadable images make the command fail (partly)."""
    from cxr_covid.errors import PartialFailure

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
            title=escape(f"{eval_report.model_label(evaluation)}: one class vs the rest"),
            title_justify="left",
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
