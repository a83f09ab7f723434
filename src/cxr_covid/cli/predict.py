"""`cxr-covid predict`: one CSV/JSONL row per image, streamed, with a progress bar."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cxr_covid.cli.choices import PredictFormat
from cxr_covid.cli.console import err, out
from cxr_covid.training.limits import MAX_BATCH_SIZE

if TYPE_CHECKING:
    from cxr_covid.inference.predict import PredictSummary

HELP = "Predict the class of chest X-ray images and write one CSV/JSONL row per image."


def predict(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Images, folders (add -r to go into sub-folders) or glob patterns.",
            show_default=False,
        ),
    ],
    out_file: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="Results file (.csv or .jsonl), or - for stdout. Rows appear as they are made "
            "(required unless --json).",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model id, model folder or pack file (default: the newest model)."
        ),
    ] = None,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Look inside sub-folders too.")
    ] = False,
    fmt: Annotated[
        PredictFormat | None,
        typer.Option(
            "--format",
            help="csv or jsonl (default: from the --out suffix, else csv).",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Keep the rows already in --out and skip their inputs."),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an existing --out file.")
    ] = False,
    batch_size: Annotated[
        int,
        typer.Option(
            "--batch-size", "-b", min=1, max=MAX_BATCH_SIZE, help="Images per model call."
        ),
    ] = 32,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            metavar="CLASS=T",
            help="Decision rule CLASS=T, e.g. covid=0.3: that class when its probability "
            ">= T, else the argmax of the others (default: the model's stored operating "
            "point, else the argmax).",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="JSON lines (one object per image, the CSV's columns) on stdout; with --out "
            "FILE, JSON lines into that file.",
        ),
    ] = False,
) -> None:
    """Predict COVID-19 / healthy / viral pneumonia for each image, one row per image."""
    from rich.markup import escape

    from cxr_covid.api import load_model
    from cxr_covid.cli.model_line import announce_models
    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.errors import PartialFailure, UsageError
    from cxr_covid.inference.files import expand_inputs
    from cxr_covid.inference.predict import STDOUT, predict_to_file

    if out_file is None and not as_json:
        raise UsageError("give --out FILE (or --out - for stdout), or --json for JSON lines")
    if as_json:
        if fmt is not None and fmt != "jsonl":
            raise UsageError(f"--json writes JSON lines; it cannot be combined with --format {fmt}")
        fmt = "jsonl"
        out_file = out_file or STDOUT
    assert out_file is not None  # one of the two branches above set it
    if threshold is not None and len(threshold) > 1:
        # Typer would keep the last silently; one rule is all predict applies.
        raise UsageError(
            f"--threshold given {len(threshold)} times ({', '.join(threshold)}): give one "
            "rule, CLASS=T"
        )
    files = expand_inputs(paths, recursive)
    # Through the Python API's loader (same core as `cxr_covid.load_model`): a store id, a
    # model folder or a pack file. `loaded` keeps an opened pack's folder alive meanwhile.
    loaded = load_model(model)
    stored = loaded.stored
    announce_models([loaded.id], given=model is not None)

    try:
        with RichReporter(transient=False) as reporter:
            summary = predict_to_file(
                files,
                stored,
                out_file,
                fmt=fmt,
                resume=resume,
                overwrite=overwrite,
                batch_size=batch_size,
                reporter=reporter,
                threshold=threshold[0] if threshold else None,
            )
    except KeyboardInterrupt:
        where = "" if out_file == STDOUT else f"; every finished row is in {escape(out_file)}"
        err.print(f"[yellow]Interrupted[/]{where} (add --resume to continue).")
        raise typer.Exit(130) from None

    _print_summary(summary, to_stderr=out_file == STDOUT)
    if summary.failed:
        raise PartialFailure(
            f"{summary.failed} of {summary.written} input(s) could not be read; "
            f"their rows in {'stdout' if out_file == STDOUT else out_file} give the reason"
        )


def _print_summary(summary: PredictSummary, *, to_stderr: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from cxr_covid.about import DISCLAIMER
    from cxr_covid.classes import display_name

    console = err if to_stderr else out
    table = Table(title=f"Predictions ({escape(summary.model_id)})", title_justify="left")
    table.add_column("predicted class")
    table.add_column("images", justify="right")
    table.add_column("share", justify="right")
    for cls, count in summary.counts.items():
        share = f"{100 * count / summary.predicted:.1f}%" if summary.predicted else "-"
        table.add_row(display_name(cls), str(count), share)
    if summary.failed:
        table.add_row("[red]unreadable[/]", f"[red]{summary.failed}[/]", "")
    console.print(table)
    if summary.decision_rule != "argmax":
        decided = ", ".join(
            f"{display_name(c)} {n}" for c, n in summary.decisions.items() if summary.predicted
        )
        console.print(escape(f"decision rule {summary.decision_rule}: {decided}"), soft_wrap=True)
    console.print(escape(f"probabilities: {summary.calibration}"), soft_wrap=True)
    if summary.ood_checked:
        style = "yellow" if summary.ood_flagged else "dim"
        console.print(
            f"[{style}]{summary.ood_flagged} of {summary.predicted} image(s) flagged as not "
            "looking like the model's training X-rays (column ood): do not trust their "
            "predictions[/]"
        )
    else:
        console.print(
            "[dim]no out-of-distribution check: this model has no guard "
            "(add one with `cxr-covid calibrate`)[/]"
        )
    parts = [f"{summary.written} row(s) written to {summary.out}"]
    if summary.skipped:
        parts.append(f"{summary.skipped} skipped (already there)")
    if summary.written:
        parts.append(f"{summary.images_per_second:.1f} images/s")
    console.print(escape(", ".join(parts)), soft_wrap=True)
    for message in summary.first_errors:
        console.print(f"[red]x[/] {escape(message)}", soft_wrap=True)
    if summary.failed > len(summary.first_errors):
        console.print(f"  ... and {summary.failed - len(summary.first_errors)} more")
    console.print(f"[dim]{DISCLAIMER}[/]")
