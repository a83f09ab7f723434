"""`cxr-covid calibrate`: fit temperature scaling and the OOD guard for a stored model."""

from __future__ import annotations

from typing import Annotated

import typer

from cxr_covid.cli.console import err, out, print_json

HELP = (
    "Fit calibrated probabilities (temperature scaling) and the out-of-distribution guard "
    "for a stored model, e.g. one trained before they existed."
)


def calibrate(
    model: Annotated[
        str | None,
        typer.Argument(help="Model id or folder (default: the newest model).", show_default=False),
    ] = None,
    quantile: Annotated[
        float,
        typer.Option(
            "--quantile",
            min=0.5,
            max=0.999,
            help="OOD threshold: this quantile of the validation images' distances.",
        ),
    ] = 0.99,
    ignore_split_change: Annotated[
        bool,
        typer.Option(
            "--ignore-split-change",
            help="Fit even if the dataset was re-split after training (warns).",
        ),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images per model call.")
    ] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Fit temperature (on the validation split) and the OOD guard, and store them."""
    from rich.markup import escape

    from cxr_covid.evaluation.calibrate import fit_for_stored
    from cxr_covid.models import store

    stored = store.resolve(model)
    fitted, notes = fit_for_stored(
        stored,
        batch_size=batch_size,
        quantile=quantile,
        allow_split_change=ignore_split_change,
    )
    cal = fitted.calibration
    if as_json:
        print_json({"model": stored.id, **fitted.to_dict(), "notes": notes}, schema="calibrate")
    else:
        out.print(
            escape(
                f"{stored.id}: temperature {cal.temperature:.4g} (fitted on {cal.fitted_on}, "
                f"{cal.n} images; validation NLL {cal.nll_before:.4f} -> {cal.nll_after:.4f})"
            ),
            soft_wrap=True,
        )
        if fitted.guard is not None:
            out.print(
                escape(
                    f"out-of-distribution guard: {fitted.guard.n_fit} training images, "
                    f"threshold at the {fitted.guard.quantile:g} quantile of "
                    f"{fitted.guard.n_val} validation images"
                ),
                soft_wrap=True,
            )
        out.print("[dim]saved into the model record; predict, eval and heatmap use it now[/]")
    for note in notes:
        err.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)
