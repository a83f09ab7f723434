"""Shared terminal output: one console for results (stdout), one for messages (stderr)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.markup import escape

from cxr_covid.text import escape_name

# When a console's stream is not a terminal (piped, redirected to a file, a CI log), nothing
# limits the line length, and rich's fallback of 80 columns (or $COLUMNS) would cut ids and
# numbers in tables with an ellipsis. Such output is laid out this wide instead.
PIPED_WIDTH = 1000


class _Console(Console):
    """A rich Console whose width, when its stream is not a terminal, keeps every figure."""

    @property
    def size(self) -> ConsoleDimensions:
        size = super().size
        if self._width is None and not self.is_terminal:
            return ConsoleDimensions(max(size.width, PIPED_WIDTH), size.height)
        return size

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]

    def _render_buffer(self, buffer: Any) -> str:
        # A file name that is not UTF-8 (`bad\xff.png`) reaches messages as lone surrogates,
        # which no UTF-8 stream can write: every line is written with them escaped, `\xff`,
        # as the results files write them (docs/json.md, "File names").
        return escape_name(super()._render_buffer(buffer))


out = _Console(highlight=False)
err = _Console(stderr=True, highlight=False)

# Seeds feed NumPy (non-negative only) and scikit-learn (below 2**32): bound them at the option,
# so a bad value is a usage error rather than a traceback deep in a library.
MAX_SEED = 2**32 - 1


def print_json(data: dict[str, Any], *, schema: str) -> None:
    """Machine-readable output: plain JSON on stdout, no colour codes, no wrapping.

    `schema` names the document (cxr_covid.schemas, docs/json.md); it comes first in it.
    """
    from cxr_covid.schemas import with_schema

    sys.stdout.write(json.dumps(with_schema(schema, data), indent=2, default=str) + "\n")
    sys.stdout.flush()


QUIET, NORMAL, VERBOSE = "quiet", "normal", "verbose"


_env_before_verbose: dict[str, str | None] = {}
_filters_before_quiet: list[list[Any]] = []


def set_verbosity(level: str) -> None:
    """The root's `--quiet` / `--verbose`, for the whole invocation.

    quiet: stderr carries errors only (no progress, messages, warnings or summaries there);
    results on stdout are unchanged. verbose: TensorFlow's own logs are kept (its C++
    start-up lines and its Python warnings), for debugging. normal: neither.
    """
    import logging
    import os
    import warnings

    from cxr_covid.tf_runtime import TF_LOGS_ENV

    err.quiet = level == QUIET
    tf_logger = logging.getLogger("tensorflow")
    # Invocations can share a process (the API, a notebook, tests): put back what an earlier
    # --verbose or --quiet changed before applying this one's level.
    for name, value in _env_before_verbose.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _env_before_verbose.clear()
    if _filters_before_quiet:
        warnings.filters[:] = _filters_before_quiet.pop()  # type: ignore[index]
    if level == VERBOSE:
        for name, value in ((TF_LOGS_ENV, "1"), ("TF_CPP_MIN_LOG_LEVEL", "0")):
            _env_before_verbose[name] = os.environ.get(name)
            os.environ[name] = value
        tf_logger.setLevel(logging.INFO)
    else:
        tf_logger.setLevel(logging.ERROR if level == QUIET else logging.WARNING)
    if level == QUIET:
        _filters_before_quiet.append(list(warnings.filters))
        warnings.simplefilter("ignore")


def error(message: str) -> None:
    # Escaped: messages carry file names and hints like `pip install 'cxr-covid[dicom]'`,
    # whose brackets rich would otherwise take for markup and swallow.
    quiet, err.quiet = err.quiet, False  # errors are said even with --quiet
    try:
        err.print(f"[bold red]Error:[/] {escape(message)}", markup=True, soft_wrap=True)
    finally:
        err.quiet = quiet


def accuracy_cell(rate: float | None, n: int) -> str:
    """An accuracy as every table shows it: `87.88% (29/33) [72.7-95.2]` (95% Wilson)."""
    from cxr_covid.evaluation.report import accuracy_cell as cell_of

    return cell_of(rate, n)
