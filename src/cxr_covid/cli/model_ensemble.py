"""`cxr-covid models ensemble`: a `train --seeds` group (or chosen models) as one stored model.

Registered on the `models` group by cli/app.py; the work is done by training/ensemble.py.
"""

from __future__ import annotations

from typing import Annotated

import typer

from cxr_covid.cli.console import err, out, print_json


def ensemble(
    group: Annotated[
        str | None,
        typer.Argument(
            help="A `train --seeds` group: every stored model trained with --name GROUP.",
            show_default=False,
        ),
    ] = None,
    member: Annotated[
        list[str] | None,
        typer.Option(
            "--member",
            help="A member model id or folder, instead of GROUP (repeat: at least two).",
            show_default=False,
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(
            "--name",
            help="Id of the new model (default: GROUP-ensemble; required with --member).",
            show_default=False,
        ),
    ] = None,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Fit temperature scaling and the OOD guard on the averaged output, from the "
            "members' dataset (as train does).",
        ),
    ] = True,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Images per model call.")
    ] = 32,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Store a model that averages its members' probabilities: eval, predict, heatmap,
    audit, calibrate, export, pack and the API take it like any model."""
    from rich.markup import escape

    from cxr_covid.cli.progress_view import RichReporter
    from cxr_covid.training.ensemble import make_ensemble

    with RichReporter(transient=True) as reporter:
        result = make_ensemble(
            group,
            member or [],
            name=name,
            calibrate=calibrate,
            batch_size=batch_size,
            reporter=reporter,
        )
    if as_json:
        print_json(result.to_dict(), schema="models-ensemble")
    else:
        ids = ", ".join(str(m["id"]) for m in result.members)
        out.print(
            escape(f"stored {result.model} = mean of {len(result.members)} models ({ids})"),
            soft_wrap=True,
        )
        accuracy = (
            f"; validation accuracy {100 * result.val_accuracy:.1f}%"
            if result.val_accuracy is not None
            else ""
        )
        guard = "OOD guard fitted" if result.ood_guard else "no OOD guard"
        out.print(escape(f"probabilities: {result.calibration}; {guard}{accuracy}"), soft_wrap=True)
        out.print(escape(f"next: cxr-covid eval {result.model}"), soft_wrap=True)
    for note in result.notes:
        err.print(f"[yellow]Note:[/] {escape(note)}", soft_wrap=True)
