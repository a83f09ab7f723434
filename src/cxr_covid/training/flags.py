"""Train options written as `cxr-covid train` flags, the one rule for showing a recipe.

    options_to_flags({"balance_sources": True, "normalize": "clahe"})
        ->  "--balance-sources --normalize clahe"

Every recipe option is a `TrainConfig` field whose flag is its name with hyphens (a test keeps
compare's recipe flags to that rule). Imports nothing, so `--help` texts can use it without
loading NumPy.
"""

from __future__ import annotations

from typing import Any


def options_to_flags(options: dict[str, Any]) -> str:
    parts = []
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        parts.append(flag if value is True else f"{flag} {value}")
    return " ".join(parts)
