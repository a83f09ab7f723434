"""`cxr-covid augment`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = "Augment the training split offline (flips, rotations) as the study did."


def augment() -> None:
    raise UsageError("`cxr-covid augment` is not built yet")
