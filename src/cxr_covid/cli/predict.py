"""`cxr-covid predict`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = "Predict the class of chest X-ray images and write one CSV/JSONL row per image."


def predict() -> None:
    raise UsageError("`cxr-covid predict` is not built yet")
