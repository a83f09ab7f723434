"""Rendering of what `eval` reports about calibration, operating points and the OOD guard."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from cxr_covid.cli.console import out

if TYPE_CHECKING:
    from cxr_covid.evaluation import ModelEvaluation
    from cxr_covid.stats import Estimate, Proportion


def _estimate(e: Estimate) -> str:
    if not math.isfinite(e.value):
        return "n/a"
    if not math.isfinite(e.low):
        return f"{e.value:.4f}"
    return f"{e.value:.4f} [{e.low:.4f}-{e.high:.4f}]"


def _proportion(p: Proportion) -> str:
    if not p.n:
        return "n/a (0 images)"
    return f"{100 * p.value:.1f}% ({p.successes}/{p.n}) [{100 * p.low:.1f}-{100 * p.high:.1f}%]"


def render_decisions(evaluation: ModelEvaluation) -> None:
    decisions = evaluation.decisions
    if decisions is None:
        return
    table = Table(
        title=escape(
            f"{evaluation.model_id}: calibration (probabilities: {decisions.probabilities})"
        ),
        title_justify="left",
    )
    for name in ("probabilities", "ECE [95% CI]", "Brier score [95% CI]"):
        table.add_column(name)
    for label, quality in decisions.quality.items():
        table.add_row(label, _estimate(quality.ece), _estimate(quality.brier))
    out.print(table)
    if decisions.ood_checked:
        out.print(
            escape(
                f"out-of-distribution guard: {decisions.ood_flagged} of {decisions.ood_n} "
                "image(s) flagged"
            )
        )
    result = decisions.operating_point
    if result is not None:
        point = result.point
        table = Table(
            title=escape(
                f"{evaluation.model_id}: operating point {point.cls} >= {point.threshold:.4g} "
                f"({point.criterion} {point.target:g}, chosen on {point.chosen_on}); "
                "else the argmax of the other classes"
            ),
            title_justify="left",
        )
        table.add_column("measured on")
        for name in ("sensitivity", "specificity", "PPV", "NPV"):
            table.add_column(name)
        rows = [("validation (chosen on)", point.validation), (result.test_source, result.test)]
        for label, metrics in rows:
            if metrics is None:
                continue
            table.add_row(
                escape(label),
                _proportion(metrics.sensitivity),
                _proportion(metrics.specificity),
                _proportion(metrics.ppv),
                _proportion(metrics.npv),
            )
        out.print(table)
