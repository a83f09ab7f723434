"""Options that several commands share, written once so their names and help agree."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cxr_covid.training.limits import MAX_BOOTSTRAP

_CLASS_MAP_HELP = "map a folder to a class, FOLDER=CLASS (or FOLDER=skip). Repeatable."

# `audit` and `reproduce`: labelled folders from other hospitals or cohorts.
ExternalFolders = Annotated[
    list[Path] | None,
    typer.Option(
        "--external",
        help="A labelled folder from another hospital or cohort (one sub-folder per class), "
        "for the shortcut audit. Repeatable.",
        file_okay=False,
        show_default=False,
    ),
]
ExternalClassMap = Annotated[
    list[str] | None,
    typer.Option("--class-map", help=f"With --external: {_CLASS_MAP_HELP}", show_default=False),
]
# `eval --external DIR`.
DataClassMap = Annotated[
    list[str] | None,
    typer.Option("--class-map", help=f"With --external: {_CLASS_MAP_HELP}", show_default=False),
]
# `eval` and `reproduce`: resamples behind the bootstrap intervals.
BootstrapResamples = Annotated[
    int,
    typer.Option(
        "--bootstrap", min=0, max=MAX_BOOTSTRAP, help="Bootstrap resamples for AUC/F1 intervals."
    ),
]
