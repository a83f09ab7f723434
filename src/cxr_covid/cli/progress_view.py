"""The one renderer of `cxr_covid.progress` events: rich progress bars on stderr.

Every command that runs long work opens a `RichReporter` and hands it to the core. A task
becomes a bar (counts and a rate for items, sizes and speed for bytes); messages print above
the bars. Nothing is ever written to stdout, which may be carrying data (CSV, JSON), and rich
is told not to redirect it (`redirect_stdout=False`).
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from cxr_covid.cli.console import err

if TYPE_CHECKING:
    from rich.console import RenderableType

BYTES = "bytes"


class _CountColumn(ProgressColumn):
    """`12/40` for items, `1.2/3.4 MB` for bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._items = MofNCompleteColumn()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> RenderableType:
        if task.fields.get("unit") == BYTES:
            return self._bytes.render(task)
        return self._items.render(task)


class _RateColumn(ProgressColumn):
    """Units per second since the task started (`4.2 images/s`); byte speed for bytes."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = TransferSpeedColumn()

    def render(self, task: Task) -> RenderableType:
        unit = str(task.fields.get("unit", "items"))
        if unit == BYTES:
            return self._bytes.render(task)
        elapsed = task.finished_time if task.finished else task.elapsed
        if not elapsed or not task.completed:
            return Text(f"- {unit}/s", style="cyan")
        return Text(f"{task.completed / elapsed:.1f} {unit}/s", style="cyan")


class RichReporter:
    """A `cxr_covid.progress.Reporter` drawing one rich bar per running task on stderr.

    Use as a context manager. `transient=True` removes a task's bar when it finishes and
    clears the display at the end (the command then prints its own result); with
    `transient=False` finished bars stay, as a record of the stages (download)."""

    def __init__(self, console: Console | None = None, *, transient: bool = True) -> None:
        self.console = console or err
        self.transient = transient
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            _CountColumn(),
            _RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            redirect_stdout=False,  # stdout may carry data: never route it elsewhere
            redirect_stderr=False,
            transient=transient,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.progress.stop()

    def start(self, task: str, total: int | None = None, unit: str = "items") -> None:
        if task in self._tasks:  # the same task again (the next model of a --seeds group)
            self.progress.reset(self._tasks[task], total=total, unit=unit)
            return
        self._tasks[task] = self.progress.add_task(escape(task), total=total, unit=unit)

    def advance(self, task: str, completed: int, total: int | None = None) -> None:
        if task not in self._tasks:
            self.start(task, total)
        if total is None:
            self.progress.update(self._tasks[task], completed=completed)
        else:
            self.progress.update(self._tasks[task], completed=completed, total=total)

    def finish(self, task: str) -> None:
        ident = self._tasks.pop(task, None)
        if ident is None:
            return
        if self.transient:
            self.progress.remove_task(ident)
        else:
            self.progress.stop_task(ident)

    def message(self, text: str) -> None:
        # Core messages are plain text: file names with brackets must not be taken for markup.
        self.console.print(escape(text), soft_wrap=True, highlight=False)
