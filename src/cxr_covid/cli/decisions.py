"""Rendering of what `eval` reports about calibration, operating points and the OOD guard."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import out

if TYPE_CHECKING:
    from cxr_covid.evaluation.results import ModelEvaluation


def render_decisions(evaluation: ModelEvaluation) -> None:
    from cxr_covid.evaluation.decisions import tables

    if evaluation.decisions is None:
        return
    found, lines = tables(evaluation.model_id, evaluation.decisions)
    for title, header, rows in found:
        table = Table(title=escape(title), title_justify="left")
        for name in header:
            table.add_column(name)
        for row in rows:
            table.add_row(*map(escape, row))
        out.print(table)
    for line in lines:
        out.print(escape(line))
