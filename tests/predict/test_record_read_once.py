"""A model is resolved once and its record read and parsed once per command (issue 20):
predict, heatmap and the API share one StoredModel whose record is cached."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.models import store

runner = CliRunner()


@pytest.fixture
def record_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    reads: list[Path] = []
    original = store.read_record

    def counting(path: Path) -> store.ModelRecord:
        reads.append(path)
        return original(path)

    monkeypatch.setattr(store, "read_record", counting)
    return reads


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "x.png"
    Image.fromarray(np.full((24, 24), 128, dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize("command", ["predict", "heatmap"])
def test_a_command_reads_the_model_record_once(
    command: str, tiny_model: Path, tmp_path: Path, record_reads: list[Path]
) -> None:
    out = tmp_path / ("rows.csv" if command == "predict" else "maps")
    args = [command, str(_image(tmp_path)), "-m", str(tiny_model), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert record_reads == [tiny_model / store.RECORD_FILE]


def test_writing_a_record_refreshes_the_shared_copy_and_reload_reads_the_disk(
    tiny_model: Path, record_reads: list[Path]
) -> None:
    stored = store.StoredModel(tiny_model)
    record = stored.record()
    assert stored.record() is record and len(record_reads) == 1
    edited = store.read_record(stored.record_path)
    edited.sharing = {"note": "written by another command"}
    store.atomic.write_json(stored.record_path, edited.to_dict())
    assert stored.record().sharing == record.sharing  # the copy read first
    assert stored.reload_record().sharing == {"note": "written by another command"}
    stored.write_record(record)  # puts the first copy back, and shares it
    assert stored.record() is record
