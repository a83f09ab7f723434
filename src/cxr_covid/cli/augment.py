"""`cxr-covid augment`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import MAX_SEED, err, out, print_json
from cxr_covid.text import split_list
from cxr_covid.training.limits import MAX_AUGMENT_FACTOR

if TYPE_CHECKING:
    from cxr_covid.data.augment import AugmentResult

HELP = "Augment the training split offline (flips, rotations) as the study did."


def augment(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Dataset name (default: the only or newest one)."),
    ] = None,
    factor: Annotated[
        int,
        typer.Option(
            "--factor",
            help="Grow each augmented class's training images to this many times their "
            "number (the study: 5).",
            min=1,
            max=MAX_AUGMENT_FACTOR,
        ),
    ] = 5,
    balance: Annotated[
        bool,
        typer.Option(
            "--balance",
            help="Instead of --factor, raise each class to the largest class's training count.",
        ),
    ] = False,
    classes: Annotated[
        str, typer.Option("--classes", help="Comma-separated classes to augment.")
    ] = "covid",
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Random seed (deterministic).")
    ] = 42,
    force: Annotated[
        bool, typer.Option("--force", help="Redo an augmentation that already exists.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts as JSON on stdout.")
    ] = False,
) -> None:
    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.data.augment import augment_dataset
    from cxr_covid.data.dataset import resolve_dataset

    target = resolve_dataset(dataset)
    wanted = split_list(classes)
    with RichReporter(transient=False) as reporter:
        result = augment_dataset(
            target,
            factor=None if balance else factor,
            balance=balance,
            classes=wanted,
            seed=seed,
            force=force,
            reporter=reporter,
        )
    if as_json:
        print_json(to_json(result), schema="augment")
        for warning in result.warnings:  # stdout carries the JSON; the warning goes to stderr
            err.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
        return
    render(result)


def to_json(result: AugmentResult) -> dict[str, Any]:
    return result.to_dict()


def render(result: AugmentResult) -> None:
    from cxr_covid.classes import display_name

    labels = list(result.before)
    table = Table(
        title=f"Training images of {result.dataset.name}, before and after augmentation",
        title_justify="left",
    )
    table.add_column("")
    for label in labels:
        table.add_column(display_name(label), justify="right")
    table.add_column("Total", justify="right", style="bold")
    table.add_row(
        "Original data",
        *(str(result.before[c]) for c in labels),
        str(sum(result.before.values())),
    )
    table.add_row(
        "Data augmentation",
        *(str(result.after[c]) for c in labels),
        str(sum(result.after.values())),
        style="bold",
    )
    out.print(table)
    if result.created:
        out.print(f"Created {result.created} augmented image(s); validation and test untouched.")
    if result.skipped:
        out.print(
            f"Already augmented with these settings: {', '.join(result.skipped)} "
            "(--force redoes it)."
        )
    for warning in result.warnings:
        err.print(f"[yellow]Warning:[/] {escape(warning)}", soft_wrap=True)
