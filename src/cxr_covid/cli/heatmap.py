"""`cxr-covid heatmap`: Grad-CAM overlays and captioned panels, one pair per image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cxr_covid.cli.console import err, out

if TYPE_CHECKING:
    from cxr_covid.inference.gradcam import HeatmapSummary

HELP = "Grad-CAM heat maps: where the network looks, as overlays and panels."


def heatmap(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Images, folders (add -r to go into sub-folders) or glob patterns.",
            show_default=False,
        ),
    ],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Model id, model folder or pack file (default: the newest model)."
        ),
    ] = None,
    out_path: Annotated[
        str,
        typer.Option(
            "--out",
            "-o",
            help="Folder for <stem>.heatmap.png and <stem>.panel.png, or (one image) the "
            "overlay's .png file name.",
        ),
    ] = "heatmaps",
    class_name: Annotated[
        str | None,
        typer.Option(
            "--class",
            "-c",
            help="Explain this class (e.g. covid, normal, viral_pneumonia) instead of the "
            "predicted one.",
            show_default=False,
        ),
    ] = None,
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            help="Layer to explain (default: the model record's last convolution).",
            show_default=False,
        ),
    ] = None,
    colormap: Annotated[
        str,
        typer.Option(
            "--colormap", help="Any matplotlib colour map (inferno, turbo, viridis, jet...)."
        ),
    ] = "inferno",
    alpha: Annotated[
        float,
        typer.Option(
            "--alpha",
            min=0.0,
            max=1.0,
            help="Opacity of the heat map where it is hottest; it fades out with the heat, "
            "so cold regions show the image unchanged.",
        ),
    ] = 0.6,
    recursive: Annotated[
        bool, typer.Option("--recursive", "-r", help="Look inside sub-folders too.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one result per image as JSON.")
    ] = False,
) -> None:
    """Explain predictions with Grad-CAM: an overlay and a captioned panel per image."""
    from cxr_covid.api import load_model
    from cxr_covid.cli.console import print_json
    from cxr_covid.cli.model_line import announce_models
    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.errors import PartialFailure
    from cxr_covid.inference.files import expand_inputs
    from cxr_covid.inference.gradcam import heatmap_files

    files = expand_inputs(paths, recursive)
    # Through the Python API's loader (same core as `cxr_covid.load_model`): a store id, a
    # model folder or a pack file. `loaded` keeps an opened pack's folder alive meanwhile.
    loaded = load_model(model)
    stored = loaded.stored
    announce_models([loaded.id], given=model is not None)
    try:
        with RichReporter(transient=False) as reporter:
            summary = heatmap_files(
                files,
                stored,
                out_path,
                class_name=class_name,
                layer=layer,
                colormap=colormap,
                alpha=alpha,
                reporter=reporter,
            )
    except KeyboardInterrupt:
        err.print("[yellow]Interrupted[/]: the pictures written so far are complete.")
        raise typer.Exit(130) from None

    if as_json:
        print_json(summary.to_dict(), schema="heatmap")
    else:
        _render(summary)
    if summary.failed:
        raise PartialFailure(
            f"{len(summary.failed)} of {len(summary.results)} image(s) could not be explained"
        )


def _render(summary: HeatmapSummary) -> None:
    from rich.markup import escape

    from cxr_covid.about import DISCLAIMER
    from cxr_covid.classes import display_name

    for result in summary.results:
        if result.error:
            err.print(f"[red]x[/] {escape(result.error)}", soft_wrap=True)
            continue
        assert result.predicted is not None and result.explained is not None
        probability = 100 * result.probabilities[result.predicted]
        line = f"{result.path}: {display_name(result.predicted)} ({probability:.1f}%)"
        if result.explained != result.predicted:
            line += f", explaining {display_name(result.explained)}"
        if result.empty_map:
            line += (
                f", EMPTY MAP: no region raised {display_name(result.explained)} "
                "(the overlay is the image unchanged)"
            )
        elif result.inside_lungs is not None:
            line += f", {100 * result.inside_lungs:.0f}% inside the lungs"
        if result.ood:
            line += ", FLAGGED: does not look like the model's training X-rays"
        out.print(escape(f"{line} -> {result.heatmap}, {result.panel}"), soft_wrap=True)
    written = len(summary.results) - len(summary.failed)
    out.print(
        escape(f"{written} heat map(s) from model {summary.model_id}, layer {summary.layer}"),
        soft_wrap=True,
    )
    empty = sum(1 for r in summary.results if r.empty_map)
    if empty:
        out.print(
            f"[yellow]{empty} empty map(s)[/]: nothing in the image raised the explained "
            "class's score (see docs/commands/heatmap.md)"
        )
    out.print(f"[dim]{DISCLAIMER}[/]")
