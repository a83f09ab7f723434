"""`cxr-covid reproduce`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = "Run the whole study end to end and compare our table with the published one."


def reproduce() -> None:
    raise UsageError("`cxr-covid reproduce` is not built yet")
