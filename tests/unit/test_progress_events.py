"""The core reports through the one progress protocol: the events a command's bars are drawn
from, recorded by a Reporter (no terminal involved)."""

from __future__ import annotations

from pathlib import Path

from cxr_covid.data.catalog import CHECKING
from cxr_covid.data.extract import COPYING, UNPACKING
from cxr_covid.data.ingest import download_dataset
from cxr_covid.progress import NullReporter
from tests.data.zips import layout_zip
from tests.helpers import write_class_folders


class Recorder(NullReporter):
    """Every event, in order; the last `completed` of each task."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.totals: dict[str, int | None] = {}
        self.completed: dict[str, int] = {}
        self.units: dict[str, str] = {}
        self.messages: list[str] = []

    def start(self, task: str, total: int | None = None, unit: str = "items") -> None:
        self.events.append(("start", task))
        self.totals[task], self.units[task] = total, unit

    def advance(self, task: str, completed: int, total: int | None = None) -> None:
        assert ("start", task) in self.events, f"{task} advanced before it started"
        assert completed >= self.completed.get(task, 0), "advance is an absolute count"
        self.completed[task] = completed
        if total is not None:
            self.totals[task] = total

    def finish(self, task: str) -> None:
        self.events.append(("finish", task))

    def message(self, text: str) -> None:
        self.messages.append(text)


def test_download_from_a_zip_reports_unpacking_then_checking(
    tmp_path: Path, cxr_home: Path
) -> None:
    archive = tmp_path / "first.zip"
    archive.write_bytes(layout_zip("first", 6))
    seen = Recorder()
    result = download_dataset(from_zip=archive, name="z", reporter=seen)
    tasks = [task for kind, task in seen.events if kind == "start"]
    assert tasks == [UNPACKING, CHECKING]
    assert [task for kind, task in seen.events if kind == "finish"] == tasks
    # Every image was unpacked and checked, and the bars end at their totals.
    images = sum(sum(split.values()) for split in result.counts.values())
    assert seen.completed[CHECKING] == seen.totals[CHECKING] == images
    assert seen.completed[UNPACKING] == seen.totals[UNPACKING] >= images
    assert seen.units[CHECKING] == "images"


def test_download_from_a_folder_reports_copying(tmp_path: Path, cxr_home: Path) -> None:
    source = tmp_path / "folders"
    write_class_folders(source, per_class=10)
    seen = Recorder()
    download_dataset(from_dir=source, name="d", reporter=seen)
    assert [task for kind, task in seen.events if kind == "start"] == [COPYING, CHECKING]
    assert seen.completed[COPYING] == seen.totals[COPYING] == 30
