"""`cxr-covid download`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = (
    "Download the COVID-19 Radiography Database (or use a local zip/folder), "
    "catalogue, verify and split it."
)


def download() -> None:
    raise UsageError("`cxr-covid download` is not built yet")
