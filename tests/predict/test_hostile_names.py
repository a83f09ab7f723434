"""Issue 22, cases 10 and 12 (predict side): file names that are not UTF-8, or that a
spreadsheet splitting on `;` would run.

A name like `bad\\xff.png` (one byte that is not UTF-8) is written escaped, `\\xff`, and the
run goes on (docs/json.md, "File names").
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.helpers import write_blob_png

runner = CliRunner()
BAD = b"bad\xff.png"


def _bad_name_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    write_blob_png(folder / "good.png", "covid", 24, np.random.default_rng(0))
    (folder / "good.png").rename(Path(os.fsdecode(os.fsencode(folder) + b"/" + BAD)))
    write_blob_png(folder / "plain.png", "normal", 24, np.random.default_rng(1))
    return folder


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_non_utf8_name_is_written_escaped_and_the_run_goes_on(
    tiny_model: Path, tmp_path: Path, suffix: str
) -> None:
    folder = _bad_name_folder(tmp_path)
    out = tmp_path / f"r{suffix}"
    result = runner.invoke(app, ["predict", str(folder), "-m", str(tiny_model), "-o", str(out)])
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")  # valid UTF-8 throughout
    if suffix == ".csv":
        names = [row[0] for row in csv.reader(text.splitlines())][1:]
    else:
        names = [json.loads(line)["path"] for line in text.splitlines()]
    assert sorted(Path(n).name for n in names) == ["bad\\xff.png", "plain.png"]
    # --resume recognises the escaped name: nothing is predicted twice.
    again = runner.invoke(
        app, ["predict", str(folder), "-m", str(tiny_model), "-o", str(out), "--resume"]
    )
    assert again.exit_code == 0, again.output
    assert out.read_text(encoding="utf-8") == text


def test_name_starting_semicolon_equals_is_quoted_for_semicolon_spreadsheets(
    tiny_model: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    write_blob_png(folder / ";=cmd.png", "covid", 24, np.random.default_rng(0))
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["predict", str(folder), "-m", str(tiny_model), "-o", str(out)])
    assert result.exit_code == 0, result.output
    line = out.read_text(encoding="utf-8").splitlines()[1]
    assert line.startswith('"'), line  # one quoted cell, whatever the separator
    # As a spreadsheet splitting on ';' (and honouring double quotes) would see it:
    [cells] = list(csv.reader([line], delimiter=";"))
    for cell in cells:
        assert not cell.startswith(("=", "+", "-", "@")), cells
    [row] = list(csv.reader(out.read_text(encoding="utf-8").splitlines()))[1:]
    assert Path(row[0]).name == ";=cmd.png"


def test_heatmap_explains_an_image_whose_name_is_not_utf8(tiny_model: Path, tmp_path: Path) -> None:
    folder = _bad_name_folder(tmp_path)
    out = tmp_path / "maps"
    result = runner.invoke(app, ["heatmap", str(folder), "-m", str(tiny_model), "-o", str(out)])
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in out.iterdir())
    assert "bad\\xff.heatmap.png" in names and "plain.heatmap.png" in names, names


def test_download_from_dir_copies_a_non_utf8_name_escaped(tmp_path: Path, cxr_home: Path) -> None:
    rng = np.random.default_rng(2)
    source = tmp_path / "folder"
    for label in ("covid", "normal"):
        for i in range(6):
            write_blob_png(source / label / f"{i}.png", label, 32, rng)
    (source / "covid" / "0.png").rename(
        Path(os.fsdecode(os.fsencode(source / "covid") + b"/" + BAD))
    )
    result = runner.invoke(
        app, ["download", "--from-dir", str(source), "--classes", "covid,normal", "--name", "d"]
    )
    assert "Traceback" not in result.output
    assert result.exit_code == 0, result.output
    manifest = (cxr_home / "datasets" / "d" / "manifest.csv").read_text(encoding="utf-8")
    assert "images/covid/bad\\xff.png" in manifest
    assert (cxr_home / "datasets" / "d" / "images" / "covid" / "bad\\xff.png").is_file()
