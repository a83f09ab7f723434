"""The one line on stderr that says which model a command uses.

`predict`, `eval`, `heatmap` and `audit` print it before they work, so a CSV or a table is
never read as coming from another model than the one that made it. Without a model on the
command line the store's newest is used: the model most recently added to it (trained,
imported), which the line says.
"""

from __future__ import annotations

from rich.markup import escape

from cxr_covid.cli.console import err


def model_line(model_ids: list[str], *, given: bool) -> str:
    label = "Models" if len(model_ids) > 1 else "Model"
    how = "" if given else " (the newest added to the store)"
    return f"{label}: {', '.join(model_ids)}{how}"


def announce_models(model_ids: list[str], *, given: bool) -> None:
    err.print(escape(model_line(model_ids, given=given)), soft_wrap=True, highlight=False)
