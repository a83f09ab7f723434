"""Shared terminal output: one console for results (stdout), one for messages (stderr)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

# Seeds feed NumPy (non-negative only) and scikit-learn (below 2**32): bound them at the option,
# so a bad value is a usage error rather than a traceback deep in a library.
MAX_SEED = 2**32 - 1


def print_json(data: Any) -> None:
    """Machine-readable output: plain JSON on stdout, no colour codes, no wrapping."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    sys.stdout.flush()


def error(message: str) -> None:
    # Escaped: messages carry file names and hints like `pip install 'cxr-covid[dicom]'`,
    # whose brackets rich would otherwise take for markup and swallow.
    err.print(f"[bold red]Error:[/] {escape(message)}", markup=True, soft_wrap=True)


def accuracy_cell(rate: float | None, n: int) -> str:
    """An accuracy as every table shows it: `87.88% (29/33) [72.7-95.2]` (95% Wilson)."""
    if rate is None:
        return "-"
    if not n:
        return f"{100 * rate:.2f}%"
    from cxr_covid.eval_report import cell
    from cxr_covid.stats import proportion_of

    return cell(proportion_of(rate, n))
