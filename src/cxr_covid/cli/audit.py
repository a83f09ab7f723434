"""`cxr-covid audit`: how much of a model's accuracy is shortcut (lungs hidden / only, a
lung-blind control, attention, external sets, and a verdict in words)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.choices import Fill
from cxr_covid.cli.console import err, out, print_json
from cxr_covid.cli.options import ExternalClassMap, ExternalFolders
from cxr_covid.text import percent

if TYPE_CHECKING:
    from cxr_covid.audit.results import AuditResult
    from cxr_covid.audit.source_probe import SourceProbeResult

HELP = (
    "Shortcut audit: accuracy with the lungs hidden and with only the lungs, a lung-blind "
    "control model, Grad-CAM mass inside the lungs, external sets, and a verdict."
)


def audit(
    model: Annotated[
        str | None,
        typer.Argument(help="Model id or folder (default: the newest model).", show_default=False),
    ] = None,
    external: ExternalFolders = None,
    class_map: ExternalClassMap = None,
    control: Annotated[
        bool,
        typer.Option(
            "--control/--no-control",
            help="Train (or reuse) the lung-blind control model the verdict rests on.",
        ),
    ] = True,
    control_epochs: Annotated[
        int, typer.Option("--control-epochs", help="Epochs of the lung-blind control.")
    ] = 3,
    fill: Annotated[
        Fill,
        typer.Option("--fill", help="How a hidden region is filled: mean, blur or black."),
    ] = "mean",
    masks: Annotated[
        Path | None,
        typer.Option(
            "--masks",
            help="Folder of lung masks named like the images (default: <Class>/masks/ beside "
            "them); used only when every test image has one.",
            file_okay=False,
        ),
    ] = None,
    attention: Annotated[
        bool, typer.Option("--attention/--no-attention", help="Grad-CAM mass inside the lungs.")
    ] = True,
    panels: Annotated[
        int, typer.Option("--panels", min=0, help="Grad-CAM panels of the most outside-looking.")
    ] = 4,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder for report.md, audit.json and plots "
            "(default: <home>/audits/<model>-<time>).",
            file_okay=False,
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the audit as JSON on stdout.")
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images per prediction batch.")
    ] = 32,
    source_probe: Annotated[
        bool,
        typer.Option(
            "--source-probe/--no-source-probe",
            help="How well the model's penultimate features tell each image's collection "
            "within its class (cross-validated logistic regression).",
        ),
    ] = True,
) -> None:
    from cxr_covid.audit.results import AuditOptions
    from cxr_covid.classes import parse_class_map
    from cxr_covid.errors import UsageError

    if class_map and not external:
        raise UsageError("--class-map only applies with --external DIR")
    options = AuditOptions(
        model=model,
        external=list(external or []),
        class_map=parse_class_map(class_map),
        control=control,
        control_epochs=control_epochs,
        fill=fill,
        attention=attention,
        panels=panels,
        out=out_dir,
        batch_size=batch_size,
        mask_dir=masks,
        source_probe=source_probe,
    )
    options.validate()
    from cxr_covid.cli.model_line import announce_models
    from cxr_covid.models import store

    announce_models([store.resolve(model or None).id], given=bool(model))
    result = _run(options)
    if as_json:
        print_json(result.to_dict(), schema="audit")
    render(result, to_stderr=as_json)


def _run(options: object) -> AuditResult:

    from cxr_covid.audit.results import AuditOptions
    from cxr_covid.audit.run import run_audit
    from cxr_covid.cli.progress_view import RichReporter

    assert isinstance(options, AuditOptions)
    with RichReporter(transient=False) as reporter:
        return run_audit(options, reporter)


def render(result: AuditResult, *, to_stderr: bool = False) -> None:
    from cxr_covid import classes
    from cxr_covid.audit import report as audit_report
    from cxr_covid.text import percent

    console = err if to_stderr else out
    table = Table(title=f"Shortcut audit: {escape(result.model_id)} (test split)")
    table.add_column("view")
    table.add_column("accuracy [95% CI]")
    table.add_column("predicted as")
    for label, view in audit_report.view_rows(result):
        table.add_row(
            label,
            audit_report.cell(view.accuracy),
            escape(audit_report.distribution(view)) + (" [yellow]!" if view.collapsed else ""),
        )
    table.caption = f"chance {percent(result.chance, 0)}; {escape(result.lung_field['reason'])}"
    console.print(table)
    if result.attention is not None and result.attention.per_image:
        att = Table(title="Grad-CAM mass inside the lung field")
        att.add_column("class")
        att.add_column("median")
        att.add_column("quartiles")
        for cls, spread in result.attention.per_class().items():
            att.add_row(
                classes.display_name(cls),
                percent(spread["median"], 0),
                f"{100 * spread['q1']:.0f}-{percent(spread['q3'], 0)}",
            )
        att.caption = f"uniform attention: {percent(result.attention.field_area, 0)}"
        console.print(att)
    for ext in result.external:
        ext_table = Table(title=f"External: {escape(ext.folder)} ({ext.images} images)")
        ext_table.add_column("class")
        ext_table.add_column("recall [95% CI]")
        ext_table.add_column("vs internal (points)")
        for cls, prop in ext.per_class.items():
            d, lo, hi = ext.difference.get(cls, (float("nan"),) * 3)
            ext_table.add_row(
                classes.display_name(cls),
                audit_report.cell(prop),
                f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}]",
            )
        from cxr_covid.data.overlap import CHECKED_TRANSFORMATIONS

        left_out = f"{len(ext.overlaps)} training/validation image(s) left out; " * bool(
            ext.overlaps
        )
        ext_table.caption = escape(f"{left_out}checked for {CHECKED_TRANSFORMATIONS}")
        console.print(ext_table)
    if result.source_probe is not None:
        _render_probe(console, result.source_probe)
    for note in result.notes:
        err.print(f"[yellow]{escape(note)}[/]" if note.startswith("warning") else escape(note))
    console.print(f"[bold]Verdict:[/] {escape(result.verdict)}")
    console.print(f"[dim]Rests on: {escape(result.verdict_basis)}.[/]")
    console.print(f"Report: {escape(str(result.folder))}/report.md")


def _render_probe(console: Any, probe: SourceProbeResult) -> None:
    """The source probe's table (audit.source_probe), or why it was skipped."""
    from cxr_covid import classes
    from cxr_covid.audit import report as audit_report

    if probe.skipped:
        console.print(f"[dim]Source probe skipped: {escape(probe.skipped)}.[/]")
        return
    table = Table(title="Source probe: collection read from the features, within class")
    table.add_column("class")
    table.add_column("collections (test images)")
    table.add_column("balanced accuracy [95% CI]")
    table.add_column("chance")
    rows = [(classes.display_name(p.label), p) for p in probe.per_class]
    for name, p in rows:
        table.add_row(
            name,
            escape(", ".join(f"{c} {n}" for c, n in p.collections.items())),
            audit_report.estimate_cell(p.balanced_accuracy),
            percent(p.chance, 0),
        )
    table.add_row(
        "overall",
        "",
        audit_report.estimate_cell(probe.overall),
        percent(probe.overall_chance or 0, 0),
    )
    console.print(table)
