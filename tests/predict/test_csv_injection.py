"""predict's CSV: file names that look like spreadsheet formulas (issue 13 item 4)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid import csv_safe
from cxr_covid.cli import app
from cxr_covid.errors import EXIT_PARTIAL
from tests.helpers import write_blob_png

runner = CliRunner()
NAMES = ["=HYPERLINK(A1).png", "+cmd.png", "-x.png", "@SUM(A1).png", "plain.png"]


def _raw_rows(path: Path) -> list[list[str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.reader(handle))


def test_formula_file_names_are_quoted_and_resume_still_recognises_them(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "in"
    rng = np.random.default_rng(0)
    for name in NAMES:
        write_blob_png(folder / name, "covid", 24, rng)
    (folder / "=broken.png").write_bytes(b"not an image")
    monkeypatch.chdir(folder)  # relative names, as a user typing them would give
    out = tmp_path / "r.csv"

    # `--` so that `-x.png` is a file, not an option.
    first = runner.invoke(app, ["predict", "-m", str(tiny_model), "-o", str(out), "--", *NAMES[:2]])
    assert first.exit_code == 0, first.output
    result = runner.invoke(
        app,
        ["predict", "-m", str(tiny_model), "-o", str(out), "--resume", "--", *NAMES, "=broken.png"],
    )
    assert result.exit_code == EXIT_PARTIAL, result.output  # the broken file, reported
    assert "2 input(s) already in" in result.output  # escaped names were read back exactly

    rows = _raw_rows(out)
    cells = [cell for row in rows[1:] for cell in row]
    # No cell a spreadsheet would evaluate: names, and the error message that starts with one.
    assert not [c for c in cells if c.startswith(csv_safe.FORMULA_STARTS)]
    paths = [row[0] for row in rows[1:]]
    assert sorted(paths) == sorted(
        [
            "'=HYPERLINK(A1).png",
            "'+cmd.png",
            "'-x.png",
            "'@SUM(A1).png",
            "plain.png",
            "'=broken.png",
        ]
    )
    restored = [csv_safe.read_cell(p) for p in paths]
    assert sorted(restored) == sorted([*NAMES, "=broken.png"])
