"""`cxr-covid download`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.table import Table

from cxr_covid.cli.console import MAX_SEED, err, out, print_json
from cxr_covid.text import split_list

if TYPE_CHECKING:
    from cxr_covid.data.ingest import DownloadResult

HELP = (
    "Download the COVID-19 Radiography Database (or use a local zip/folder), "
    "catalogue, verify and split it."
)


def download(
    release: Annotated[
        int | None,
        typer.Option(
            "--release",
            help="Kaggle release number (the study used 1). Default: the current release.",
            min=1,
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option("--url", help="Download the zip from this URL (a mirror) instead."),
    ] = None,
    from_zip: Annotated[
        Path | None,
        typer.Option("--from-zip", help="Use a zip archive you already have.", dir_okay=False),
    ] = None,
    from_dir: Annotated[
        Path | None,
        typer.Option("--from-dir", help="Use your own images in class folders.", file_okay=False),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Dataset name in the home (default from the source: kaggle-current, "
            "kaggle-r1, the zip's or folder's name).",
        ),
    ] = None,
    classes: Annotated[
        str,
        typer.Option(
            "--classes",
            help="Comma-separated classes to keep; add lung_opacity to opt it in.",
        ),
    ] = "covid,normal,viral_pneumonia",
    class_map: Annotated[
        list[str] | None,
        typer.Option(
            "--class-map",
            help="Map a folder to a class, FOLDER=CLASS (or FOLDER=skip); repeatable or "
            "comma-separated: 'Folder A=covid,Folder B=normal'.",
            show_default=False,
        ),
    ] = None,
    split: Annotated[
        str,
        typer.Option("--split", help="Train,val,test fractions (the study: 0.7,0.15,0.15)."),
    ] = "0.7,0.15,0.15",
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the split (the study: 42).")
    ] = 42,
    dedupe: Annotated[
        bool,
        typer.Option(
            "--dedupe",
            help="Drop near-duplicate images (keep one per group; drop groups whose labels "
            "disagree) before splitting.",
        ),
    ] = False,
    near_distance: Annotated[
        int,
        typer.Option(
            "--near-distance",
            help="Near-duplicate threshold in bits of the 256-bit perceptual hash.",
            min=0,
            max=256,
        ),
    ] = 10,
    sha256: Annotated[
        str | None,
        typer.Option("--sha256", help="Expected sha256 of the zip (downloaded or --from-zip)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing dataset of the same name.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts and findings as JSON on stdout.")
    ] = False,
    sources: Annotated[
        Path | None,
        typer.Option(
            "--sources",
            help="CSV 'path,source[,age_group]' saying where each image comes from "
            "(see docs/provenance.md).",
            dir_okay=False,
        ),
    ] = None,
    no_sources: Annotated[
        bool,
        typer.Option(
            "--no-sources",
            help="Do not use a sources.csv found inside or beside --from-dir/--from-zip.",
        ),
    ] = False,
    dataset: Annotated[
        str | None,
        typer.Option(
            "--dataset",
            "-d",
            help="With --sources: attach them to this existing dataset instead of "
            "downloading (same split, same images).",
        ),
    ] = None,
) -> None:
    from cxr_covid.classes import parse_class_map
    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.data.ingest import download_dataset
    from cxr_covid.data.splits import parse_fractions

    if dataset is not None:
        from cxr_covid.cli.provenance_view import attach

        attach(dataset, sources, as_json, other=(release, url, from_zip, from_dir, name))
        return

    fractions = parse_fractions(split)
    mapping = parse_class_map(class_map)
    wanted = split_list(classes)
    try:
        with RichReporter(transient=False) as reporter:
            result = download_dataset(
                release=release,
                url=url,
                from_zip=from_zip,
                from_dir=from_dir,
                name=name,
                classes=wanted,
                split=fractions,
                seed=seed,
                dedupe=dedupe,
                force=force,
                class_map=mapping or None,
                reporter=reporter,
                sha256=sha256,
                near_distance=near_distance,
                sources=sources,
                find_sources=not no_sources,
            )
    except KeyboardInterrupt:
        _interrupted(release, url, from_zip, from_dir)
    if as_json:
        print_json(to_json(result), schema="download")
        return
    render(result)


def _interrupted(
    release: int | None, url: str | None, from_zip: Path | None, from_dir: Path | None
) -> NoReturn:
    """Ctrl-C: say what was kept. The partial download stays on purpose, to be resumed."""
    from rich.markup import escape

    from cxr_covid.data.ingest import partial_download

    part = partial_download(release=release, url=url, from_zip=from_zip, from_dir=from_dir)
    if part is None:
        err.print(
            "[yellow]Interrupted[/]; no dataset was written and nothing half-written was kept."
        )
    else:
        err.print(
            f"[yellow]Interrupted[/]; no dataset was written. The partial download is kept in "
            f"{escape(str(part))} ({part.stat().st_size:,} bytes): run the same command again "
            "to resume it from there (delete that file to start over).",
            soft_wrap=True,
        )
    raise typer.Exit(130)


def to_json(result: DownloadResult) -> dict[str, Any]:
    return result.to_dict()


def render(result: DownloadResult) -> None:
    from cxr_covid.classes import display_name, label_order

    labels = label_order(sorted({c for by in result.counts.values() for c in by}))
    table = Table(
        title=f"Dataset {result.dataset.name} ({result.layout})",
        title_justify="left",
    )
    table.add_column("split")
    for label in labels:
        table.add_column(display_name(label), justify="right")
    table.add_column("Total", justify="right", style="bold")
    totals = dict.fromkeys(labels, 0)
    for split in ("train", "val", "test"):
        by = result.counts.get(split, {})
        for label in labels:
            totals[label] += by.get(label, 0)
        table.add_row(split, *(str(by.get(c, 0)) for c in labels), str(sum(by.values())))
    table.add_section()
    table.add_row("all", *(str(totals[c]) for c in labels), str(sum(totals.values())), style="bold")
    out.print(table)
    out.print(f"Saved to {result.dataset.root}")
    if result.excluded:
        err.print(f"[yellow]Excluded {len(result.excluded)} file(s), not in the dataset:[/]")
        for path, reason in result.excluded[:10]:
            err.print(f"  {path}: {reason}", markup=False)
        if len(result.excluded) > 10:
            err.print(f"  ... and {len(result.excluded) - 10} more (see report.json)")
    if result.duplicates:
        extra = sum(len(g) - 1 for g in result.duplicates)
        err.print(
            f"[yellow]{len(result.duplicates)} group(s) of byte-identical images "
            f"({extra} extra copies)[/]; --dedupe drops them"
        )
    near = result.near_duplicates
    if near:
        across_c = sum(n.across_classes for n in near)
        across_s = sum(n.across_splits for n in near)
        err.print(
            f"[yellow]{len(near)} near-duplicate pair(s): {across_c} across classes, "
            f"{across_s} across splits[/] (listed in report.json)"
            + ("" if result.dropped else "; --dedupe drops them")
        )
    if result.dropped:
        err.print(f"Dropped {len(result.dropped)} duplicate image(s) before splitting.")
    if result.skipped:
        skipped = ", ".join(f"{c} {n}" for c, n in result.skipped.items())
        err.print(f"Not selected (add with --classes): {skipped}")
    if result.unmatched:
        folders = ", ".join(f"{f} ({n})" for f, n in list(result.unmatched.items())[:5])
        err.print(f"[yellow]Images in folders with no class (map with --class-map):[/] {folders}")
    from cxr_covid.cli.provenance_view import render_provenance, summarize

    render_provenance(summarize(result.dataset.rows()), result.provenance)
