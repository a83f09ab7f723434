"""The one progress protocol every long-running core function reports through.

Core code knows nothing of terminals: it announces named tasks (`start`), moves them forward
(`advance`, to an absolute count, so a resumed run or a retried batch never double counts),
closes them (`finish`) and passes on short human messages (`message`). The command line turns
these events into rich progress bars on stderr (`cxr_covid.cli.progress_view`); the Python API
passes `NULL` (silent) or a `LoggingReporter`. Nothing here ever writes to stdout, which may be
carrying data (CSV, JSON).
"""

from __future__ import annotations

import logging
from typing import Protocol


class Reporter(Protocol):
    """Receives progress events. Task names are short, human words ("training baseline")."""

    def start(self, task: str, total: int | None = None, unit: str = "items") -> None:
        """A task begins; `total` is None when the amount of work is not known yet."""

    def advance(self, task: str, completed: int, total: int | None = None) -> None:
        """`completed` units of `task` are done (absolute); `total` may be revised."""

    def finish(self, task: str) -> None:
        """The task is over (done, or abandoned by an error that the caller raises)."""

    def message(self, text: str) -> None:
        """A one-line note for the user (a skipped file, a resumed epoch)."""


class NullReporter:
    """Swallows every event: the default for library calls."""

    def start(self, task: str, total: int | None = None, unit: str = "items") -> None:
        pass

    def advance(self, task: str, completed: int, total: int | None = None) -> None:
        pass

    def finish(self, task: str) -> None:
        pass

    def message(self, text: str) -> None:
        pass


NULL: Reporter = NullReporter()


class LoggingReporter:
    """Sends events to a `logging` logger: starts, finishes and messages at INFO, steps at DEBUG."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("cxr_covid")
        self._totals: dict[str, int | None] = {}

    def start(self, task: str, total: int | None = None, unit: str = "items") -> None:
        self._totals[task] = total
        size = f" ({total} {unit})" if total is not None else ""
        self.logger.info("%s: started%s", task, size)

    def advance(self, task: str, completed: int, total: int | None = None) -> None:
        if total is not None:
            self._totals[task] = total
        total = self._totals.get(task)
        of = f"/{total}" if total is not None else ""
        self.logger.debug("%s: %d%s", task, completed, of)

    def finish(self, task: str) -> None:
        self._totals.pop(task, None)
        self.logger.info("%s: finished", task)

    def message(self, text: str) -> None:
        self.logger.info("%s", text)
