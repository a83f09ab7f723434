"""`cxr-covid compare`: train recipes x seeds and judge them on the internal test split and on
external sets (core: cxr_covid/compare/)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import MAX_SEED, err, out, print_json
from cxr_covid.training.limits import MAX_BATCH_SIZE, MAX_EPOCHS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE

if TYPE_CHECKING:
    from cxr_covid.compare.report import CompareResult

HELP = (
    "Train several recipes x seeds on one dataset and judge each model, and each recipe's "
    "seed ensemble, on the internal test split and on external sets: which recipe holds up? "
    "Ends with a ranking by external recall (recipes more than 3 points below plain inside "
    "their split are not eligible)."
)


def compare(
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", "-d", help="Dataset name (default: the newest downloaded)."),
    ] = None,
    recipe: Annotated[
        list[str] | None,
        typer.Option(
            "--recipe",
            "-r",
            help="A named recipe (see --list), or a custom one from train's options: "
            "'NAME=--normalize clahe --augment-markers'. Repeatable (default: plain, robust).",
            show_default=False,
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, max=20, help="Trainings per recipe (seeds --seed + i).")
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", min=0, max=MAX_SEED, help="First seed.")] = 42,
    external: Annotated[
        list[Path] | None,
        typer.Option(
            "--external",
            help="A labelled external folder: class folders, or a tree of cohorts each holding "
            "class folders (each cohort is one set). Repeatable.",
            file_okay=False,
            show_default=False,
        ),
    ] = None,
    class_map: Annotated[
        list[str] | None,
        typer.Option("--class-map", help="With --external: FOLDER=CLASS,...", show_default=False),
    ] = None,
    image_size: Annotated[
        int,
        typer.Option("--image-size", min=MIN_IMAGE_SIZE, max=MAX_IMAGE_SIZE, help="Pixels."),
    ] = 128,
    epochs: Annotated[int, typer.Option("--epochs", "-e", min=1, max=MAX_EPOCHS)] = 20,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=MAX_BATCH_SIZE)] = 32,
    audit: Annotated[
        bool,
        typer.Option(
            "--audit",
            help="Also audit each recipe's first seed (lung-blind control, source probe): "
            "costs one more training per recipe.",
        ),
    ] = False,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run folder (default: <home>/compare/<dataset>-<hash>); rerun to continue.",
            file_okay=False,
        ),
    ] = None,
    list_recipes: Annotated[
        bool, typer.Option("--list", help="List the named recipes and their options.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    from cxr_covid.classes import parse_class_map
    from cxr_covid.compare.grid_jobs import CompareOptions
    from cxr_covid.compare.recipes import parse_recipes

    if list_recipes:
        _list(as_json)
        return
    options = CompareOptions(
        dataset=dataset,
        recipes=parse_recipes(recipe or []),
        seeds=seeds,
        first_seed=seed,
        external=list(external or []),
        image_size=image_size,
        epochs=epochs,
        batch_size=batch_size,
        audit=audit,
        out=out_dir,
        class_map=parse_class_map(class_map),
    )
    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.compare.run import run_compare

    with RichReporter() as reporter:
        result = run_compare(options, reporter)
    if as_json:
        print_json(result.to_dict(), schema="compare")
        return
    render(result)


def _list(as_json: bool) -> None:
    from cxr_covid.compare.recipes import RECIPES

    if as_json:
        print_json({"recipes": [r.to_dict() for r in RECIPES.values()]}, schema="compare-list")
        return
    table = Table(title="compare recipes", title_justify="left")
    for name in ("recipe", "train options", "what it does"):
        table.add_column(name)
    for r in RECIPES.values():
        table.add_row(escape(r.name), escape(r.flags()), escape(r.description))
    out.print(table)


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=escape(title), title_justify="left", show_lines=True)
    for name in header:
        table.add_column(escape(name), overflow="fold")
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def render(result: CompareResult) -> None:
    from cxr_covid.compare import judging, ranking, report

    rows = [["\n".join(cell) for cell in row] for row in report.table_rows(result)]
    out.print(_table(f"Recipes on {result.dataset}", report.table_header(result), rows))
    out.print(
        "[dim]recall per class: mean over seeds (min-max); ensemble: recall [Wilson 95 % CI]; "
        "gap: internal minus external recall (points)[/]"
    )
    if result.against_plain:
        title = "Against plain"
        out.print(_table(title, report.against_header(), report.against_rows(result)))
        out.print(f"[dim]seeds: {escape(judging.SEED_TEST)}; {escape(judging.ENSEMBLE_TEST)}[/]")
    if result.ranking():
        out.print(_table("Ranking", report.ranking_header(), report.ranking_rows(result)))
        out.print(f"[dim]{escape(ranking.RULE)}[/]", soft_wrap=True)
    if any(r.audit for r in result.recipes):
        audits = report.audit_rows(result)
        out.print(_table("Audit, first seed", report.audit_header(), audits))
    for line in [*result.caveats, *result.notes]:
        out.print(f"[dim]- {escape(line)}[/]", soft_wrap=True)
    out.print(f"[dim]{escape(report.DECISIONS)}. {escape(report.RESEARCH)}[/]", soft_wrap=True)
    err.print(
        f"{result.trained} trained, {result.reused} reused; compare.json and compare.md in "
        f"{escape(str(result.folder))}",
        soft_wrap=True,
    )
