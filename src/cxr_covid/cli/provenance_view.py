"""How `download` shows where the images come from, and `download --sources --dataset`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.table import Table

from cxr_covid.cli.console import err, out, print_json

if TYPE_CHECKING:
    from cxr_covid.data.confounding import ProvenanceSummary
    from cxr_covid.data.provenance import ProvenanceReport


def attach(name: str, sources: Path | None, as_json: bool, other: tuple[object, ...]) -> None:
    """`download --sources FILE --dataset NAME`: provenance for a dataset already here."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.provenance import attach_sources
    from cxr_covid.errors import UsageError

    if sources is None:
        raise UsageError("--dataset attaches --sources FILE.csv to a dataset: give --sources")
    if any(x is not None for x in other):
        raise UsageError(
            "--dataset attaches sources to an existing dataset: leave out --release, --url, "
            "--from-zip, --from-dir and --name"
        )
    result = attach_sources(resolve_dataset(name), sources)
    if as_json:
        print_json(
            {
                "dataset": result.dataset.name,
                "path": str(result.dataset.root),
                "provenance": {**result.report.to_dict(), **result.summary.to_dict()},
            },
            schema="download-sources",
        )
        return
    render_provenance(result.summary, result.report)
    out.print(f"Sources recorded in {result.dataset.manifest_path}")


def summarize(rows: Any) -> ProvenanceSummary:
    from cxr_covid.data.confounding import summarize as summarize_rows

    return summarize_rows(rows)


def render_provenance(summary: ProvenanceSummary, report: ProvenanceReport) -> None:
    """Class x collection counts (and age groups), then the confounding warnings in words."""
    from rich.markup import escape

    from cxr_covid.classes import display_name

    labels = list(summary.collections)
    table = Table(title="Where the images come from", title_justify="left")
    table.add_column("collection")
    for label in labels:
        table.add_column(display_name(label), justify="right")
    names = sorted({c for by in summary.collections.values() for c in by}, key=_unknown_last)
    for collection in names:
        table.add_row(
            escape(collection), *(str(summary.collections[c].get(collection, 0)) for c in labels)
        )
    table.add_section()
    ages = sorted({a for by in summary.age_groups.values() for a in by}, key=_unknown_last)
    for age in ages:
        table.add_row(
            f"age: {age}", *(str(summary.age_groups[c].get(age, 0)) for c in labels), style="dim"
        )
    out.print(table)
    for warning in report.warnings:
        err.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
    for warning in summary.confounding:
        err.print(f"[bold yellow]Confounded:[/] {escape(warning)}", soft_wrap=True)


def _unknown_last(name: str) -> tuple[bool, str]:
    return (name == "unknown", name)
