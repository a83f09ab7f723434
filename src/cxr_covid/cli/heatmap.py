"""`cxr-covid heatmap`."""

from __future__ import annotations

from cxr_covid.errors import UsageError

HELP = "Grad-CAM heat maps: where the network looks, as overlays and panels."


def heatmap() -> None:
    raise UsageError("`cxr-covid heatmap` is not built yet")
