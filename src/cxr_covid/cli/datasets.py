"""`cxr-covid datasets list|show|rm`: the datasets in the home, beside `models`."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import out, print_json

HELP = "List, show and remove the datasets in the home."

app = typer.Typer(help=HELP, no_args_is_help=True)


def _counts(counts: dict[str, int]) -> str:
    from cxr_covid.classes import display_name

    return ", ".join(f"{display_name(c)} {n}" for c, n in counts.items()) or "-"


def datasets_table(datasets: list[Any]) -> Table:
    """The datasets as a table, in the style of `models list`."""
    broken = [d for d in datasets if getattr(d, "broken", None)]
    caption = "\n".join(escape(f"{d.name} is broken: {d.broken}") for d in broken) or None
    table = Table(title="Datasets", title_justify="left", caption=caption, caption_justify="left")
    for column in ("name", "source", "images", "classes", "train/val/test", "augmented", "created"):
        table.add_column(column)
    for d in datasets:
        if getattr(d, "broken", None):
            table.add_row(escape(d.name), "[red]broken[/]", *["-"] * 5)
            continue
        splits = "/".join(str(d.splits.get(s, 0)) for s in ("train", "val", "test"))
        table.add_row(
            escape(d.name),
            escape(d.source),
            str(d.images),
            _counts(d.classes),
            splits,
            str(d.augmented),
            d.created,
        )
    return table


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List the datasets in the home, oldest first."""
    from dataclasses import asdict

    from cxr_covid.system import summarize_datasets

    datasets = summarize_datasets()
    if as_json:
        print_json({"datasets": [asdict(d) for d in datasets]}, schema="datasets-list")
        return
    if not datasets:
        out.print("[dim]No datasets yet: `cxr-covid download`.[/]")
        return
    out.print(datasets_table(datasets))


@app.command("show")
def show_command(
    name: Annotated[str, typer.Argument(help="Dataset name (default: the newest).")] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole dataset record as JSON.")
    ] = False,
) -> None:
    """Show a dataset's record: source and archive hash, split, counts, hashes."""
    from cxr_covid.data.dataset import resolve_dataset

    dataset = resolve_dataset(name or None)
    info = dataset.info()
    if as_json:
        print_json({"path": str(dataset.root), **info}, schema="datasets-show")
        return
    table = Table(title=f"Dataset {escape(dataset.name)}", show_header=False, title_justify="left")
    table.add_row("path", escape(str(dataset.root)))
    for key, value in info.items():
        if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            for sub, inner in value.items():  # counts: split -> class -> n
                table.add_row(f"{key}.{sub}", _counts(inner))
        elif isinstance(value, dict):
            for sub, inner in value.items():
                table.add_row(f"{key}.{sub}", escape(str(inner)))
        else:
            table.add_row(key, escape(str(value)))
    out.print(table)


@app.command("rm")
def rm_command(
    name: Annotated[list[str], typer.Argument(help="Dataset name(s) to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print what was removed and kept as JSON (questions on stderr)."
        ),
    ] = False,
) -> None:
    """Delete datasets from the home (asks first unless --yes); models keep their records."""
    from cxr_covid.data.dataset import remove_dataset, resolve_dataset

    targets = [resolve_dataset(n) for n in name]  # every name checked before any removal
    removed: list[str] = []
    kept: list[str] = []
    for target in targets:
        # With --json, stdout carries the document only: the question goes to stderr.
        if not yes and not typer.confirm(
            f"Delete dataset {target.name}?", default=False, err=as_json
        ):
            kept.append(target.name)
            if not as_json:
                out.print(f"kept {escape(target.name)}")
            continue
        remove_dataset(target)
        removed.append(target.name)
        if not as_json:
            out.print(f"removed {escape(target.name)}")
    if as_json:
        print_json({"removed": removed, "kept": kept}, schema="datasets-rm")
