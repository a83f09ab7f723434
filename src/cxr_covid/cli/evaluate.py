"""`cxr-covid eval`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = "Evaluate stored models: the study's per-class accuracy table with 95% intervals, and more."


def evaluate() -> None:
    raise UsageError("`cxr-covid eval` is not built yet")
