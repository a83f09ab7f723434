"""Issue 22, cases 8, 10, 11 and 12 (data side): workbooks, file names, DICOM, disks.

Small synthetic files only: a bomb is a few MiB of zeros or spaces, or a declared size.
"""

from __future__ import annotations

import io
import os
import random
import re
import string
import zipfile
from pathlib import Path

import pytest
from openpyxl import Workbook

from cxr_covid.data import provenance, workbook_limits
from cxr_covid.errors import DataError


def _workbook(path: Path, cell: str) -> Path:
    """A workbook whose URL cell holds `cell` as an inline string (written into the sheet's
    XML by hand: openpyxl itself cuts strings at Excel's 32,767 characters)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(["FILE NAME", "FORMAT", "SIZE", "URL"])
    sheet.append(["COVID-1", "PNG", "256*256", "PLACEHOLDER"])
    buffer = io.BytesIO()
    book.save(buffer)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "xl/worksheets/sheet1.xml":
                inline = f'<c r="D2" t="inlineStr"><is><t>{cell}</t></is></c>'.encode()
                data = re.sub(rb'<c r="D2"[^>]*>.*?</c>', lambda _m: inline, data)
                assert inline in data
            out.writestr(info.filename, data, zipfile.ZIP_DEFLATED)
    return path


# --- case 8: a workbook cell bomb ------------------------------------------------------------


def test_workbook_cell_bomb_is_refused_before_openpyxl_reads_it(tmp_path: Path) -> None:
    # One 4 MiB cell of one letter deflates ~1000x: the 1 GiB cell, scaled down.
    book = _workbook(tmp_path / "COVID.metadata.xlsx", "A" * (4 * 1024**2))
    assert book.stat().st_size < 256 * 1024
    with pytest.raises(DataError, match="refused workbook: .*inflates"):
        provenance.read_workbook(book)


def test_workbook_over_the_size_bound_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workbook_limits, "MAX_WORKBOOK_BYTES", 64 * 1024)
    noise = "".join(random.Random(1).choices(string.ascii_letters, k=100 * 1024))
    book = _workbook(tmp_path / "COVID.metadata.xlsx", noise)  # hardly compresses
    with pytest.raises(DataError, match="refused workbook: .*limit"):
        provenance.read_workbook(book)


def test_ordinary_workbook_still_reads(tmp_path: Path) -> None:
    book = _workbook(tmp_path / "COVID.metadata.xlsx", "https://example.org/x")
    assert provenance.read_workbook(book) == [("COVID-1", "https://example.org/x")]


__all__ = ["os"]
