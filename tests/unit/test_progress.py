"""The progress protocol: the silent default, the logging reporter, and the CLI renderer,
which draws on stderr and never writes to stdout."""

from __future__ import annotations

import io
import logging

import pytest
from rich.console import Console

from cxr_covid.cli.progress_view import RichReporter
from cxr_covid.progress import NULL, LoggingReporter, NullReporter, Reporter


def _drive(reporter: Reporter) -> None:
    reporter.start("caching train", total=4, unit="images")
    for done in range(1, 5):
        reporter.advance("caching train", done)
    reporter.advance("caching train", 4, total=5)  # a revised total
    reporter.message("skipped [broken].png")
    reporter.finish("caching train")
    reporter.advance("never started", 2, total=3)  # an advance without start is a start
    reporter.finish("never started")
    reporter.finish("unknown task")  # finishing twice or unknown is harmless


def test_null_reporter_is_silent_and_the_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert isinstance(NULL, NullReporter)
    _drive(NULL)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_logging_reporter_logs_starts_steps_and_messages(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    logger = logging.getLogger("cxr_covid.test_progress")
    with caplog.at_level(logging.DEBUG, logger=logger.name):
        _drive(LoggingReporter(logger))
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert (logging.INFO, "caching train: started (4 images)") in lines
    assert (logging.DEBUG, "caching train: 3/4") in lines
    assert (logging.DEBUG, "caching train: 4/5") in lines
    assert (logging.INFO, "skipped [broken].png") in lines
    assert (logging.INFO, "caching train: finished") in lines
    assert capsys.readouterr().out == ""


def test_rich_reporter_draws_on_its_console_never_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    console = Console(file=stream, force_terminal=False, width=120)
    with RichReporter(console, transient=False) as reporter:
        _drive(reporter)
        reporter.start("downloading", total=2048, unit="bytes")
        reporter.advance("downloading", 1024)
    assert capsys.readouterr().out == ""
    drawn = stream.getvalue()
    assert "skipped [broken].png" in drawn  # brackets printed, not taken for markup
    assert "downloading" in drawn


def test_rich_reporter_restarts_a_task_of_the_same_name() -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with RichReporter(console) as reporter:
        reporter.start("epoch", total=10, unit="steps")
        reporter.advance("epoch", 10)
        reporter.start("epoch", total=7, unit="steps")
        (task,) = reporter.progress.tasks
        assert task.total == 7 and task.completed == 0


def test_rich_reporter_defaults_to_stderr_and_leaves_stdout_alone() -> None:
    reporter = RichReporter()
    assert reporter.console.stderr
    live = reporter.progress.live
    assert live.console is reporter.console
    # rich would otherwise swap sys.stdout for a proxy while the bars are drawn.
    assert not live._redirect_stdout
