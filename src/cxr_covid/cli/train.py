"""`cxr-covid train`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = "Train the study's baseline or inception network from scratch into the model store."


def train() -> None:
    raise UsageError("`cxr-covid train` is not built yet")
