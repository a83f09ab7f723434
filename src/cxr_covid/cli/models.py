"""`cxr-covid models list|show|rm`: the model store's face (export, pack, import and card
live in cli/model_sharing.py)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import accuracy_cell, out, print_json

HELP = "List, show, remove, export, pack, import and describe the models in the store."

app = typer.Typer(help=HELP, no_args_is_help=True)


def models_table(models: list[Any]) -> Table:
    """The model store as a table (shared by `models list` and `info`).

    Ids never shrink: their column is as wide as the longest id and never wraps (other
    columns fold instead). A broken model is a row saying so, its reason under the table.
    """
    broken = [m for m in models if getattr(m, "broken", None)]
    caption = "\n".join(escape(f"{m.id} is broken: {m.broken}") for m in broken) or None
    table = Table(title="Models", title_justify="left", caption=caption, caption_justify="left")
    table.add_column("id", no_wrap=True, min_width=max((len(m.id) for m in models), default=2))
    for column in (
        "arch",
        "dataset",
        "size",
        "aug",
        "val acc [95% CI]",
        "test acc [95% CI]",
        "created",
    ):
        table.add_column(column, overflow="fold")
    for m in models:
        if getattr(m, "broken", None):
            table.add_row(m.id, "[red]broken[/]", *["-"] * 6)
            continue
        table.add_row(
            m.id,
            m.architecture,
            m.dataset,
            str(m.image_size),
            "yes" if m.augmented else "no",
            accuracy_cell(m.val_accuracy, m.val_images),
            accuracy_cell(m.test_accuracy, m.test_images),
            m.created,
        )
    return table


@app.command("list")
def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON.")] = False,
) -> None:
    """List stored models, oldest first."""
    from dataclasses import asdict

    from cxr_covid.system import summarize_models

    models = summarize_models()
    if as_json:
        print_json({"models": [asdict(m) for m in models]}, schema="models-list")
        return
    if not models:
        out.print("[dim]No models yet: `cxr-covid train`.[/]")
        return
    out.print(models_table(models))


@app.command("show")
def show_command(
    model: Annotated[str, typer.Argument(help="Model id (default: the newest).")] = "",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the whole record as JSON.")
    ] = False,
) -> None:
    """Show a model's record: architecture, data, training settings, history, evaluations."""
    from cxr_covid.classes import display_name
    from cxr_covid.models import store

    stored = store.resolve(model or None)
    record = stored.record()
    if as_json:
        print_json(record.to_dict(), schema="models-show")
        return
    table = Table(title=f"Model {record.id}", show_header=False, title_justify="left")
    table.add_row("path", str(stored.root))
    table.add_row("architecture", record.architecture)
    table.add_row("classes", ", ".join(record.classes))
    table.add_row("preprocessing", ", ".join(f"{k}={v}" for k, v in record.preprocessing.items()))
    table.add_row("Grad-CAM layer", record.last_conv_layer)
    for i, member in enumerate(record.members):  # an ensemble (`models ensemble`)
        seed = member.get("seed")
        table.add_row(
            f"member {i}", f"{member.get('id')}" + (f" (seed {seed})" if seed is not None else "")
        )
    from cxr_covid.inference.scoring import describe

    for label, text in describe(record):
        table.add_row(label, text)
    table.add_row("created", record.created)
    for key, value in record.dataset.items():
        table.add_row(f"dataset.{key}", str(value))
    for key, value in record.training.items():
        table.add_row(f"training.{key}", str(value))
    val_images = int(record.dataset.get("val_images", 0))
    for key, value in record.metrics.items():
        shown = (
            accuracy_cell(float(value), val_images)
            if key == "best_val_accuracy" and value is not None
            else str(value)
        )
        table.add_row(f"metrics.{key}", shown)
    epochs = record.history.epochs
    metrics = ", ".join(record.history.columns())
    table.add_row("history", f"{epochs} epochs ({metrics})" if epochs else "-")
    for key, value in record.versions.items():
        table.add_row(f"version.{key}", value)
    out.print(table)
    for evaluation in record.evaluations:
        line = (
            f"eval on {evaluation.source or evaluation.split or '?'} "
            f"({evaluation.created or ''}): accuracy "
            f"{accuracy_cell(evaluation.accuracy, evaluation.n or 0)}"
        )
        for cls, figures in evaluation.per_class.items():
            line += f"; {display_name(cls)} {accuracy_cell(figures.accuracy, figures.n)}"
        out.print(line, soft_wrap=True, markup=False)


@app.command("rm")
def rm_command(
    model: Annotated[list[str], typer.Argument(help="Model id(s) to delete.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="Print what was removed and kept as JSON (questions on stderr)."
        ),
    ] = False,
) -> None:
    """Delete models from the store (asks first unless --yes)."""
    from cxr_covid.models import store

    targets = [store.resolve(name) for name in model]
    removed: list[str] = []
    kept: list[str] = []
    for target in targets:
        # With --json, stdout carries the document only: the question goes to stderr.
        if not yes and not typer.confirm(f"Delete model {target.id}?", default=False, err=as_json):
            kept.append(target.id)
            if not as_json:
                out.print(f"kept {target.id}")
            continue
        store.remove(target)
        removed.append(target.id)
        if not as_json:
            out.print(f"removed {target.id}")
    if as_json:
        print_json({"removed": removed, "kept": kept}, schema="models-rm")
