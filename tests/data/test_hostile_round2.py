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

from cxr_covid.data import images, provenance, workbook_limits
from cxr_covid.errors import DataError, ImageError


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
                data = re.sub(rb'<c r="D2"[^>]*>.*?</c>', lambda _m, inline=inline: inline, data)
                assert inline in data
            out.writestr(info.filename, data, zipfile.ZIP_DEFLATED)
    return path


# --- case 8: a workbook cell bomb ------------------------------------------------------------


def test_workbook_cell_bomb_is_refused_before_openpyxl_reads_it(tmp_path: Path) -> None:
    # One 4 MiB cell of one letter deflates ~1000x: the 1 GiB cell, scaled down.
    book = _workbook(tmp_path / "COVID.metadata.xlsx", "A" * (4 * 1024**2))
    assert book.stat().st_size < 256 * 1024
    with pytest.raises(DataError, match=r"refused workbook: .*inflates"):
        provenance.read_workbook(book)


def test_workbook_over_the_size_bound_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workbook_limits, "MAX_WORKBOOK_BYTES", 64 * 1024)
    noise = "".join(random.Random(1).choices(string.ascii_letters, k=100 * 1024))
    book = _workbook(tmp_path / "COVID.metadata.xlsx", noise)  # hardly compresses
    with pytest.raises(DataError, match=r"refused workbook: .*limit"):
        provenance.read_workbook(book)


def test_ordinary_workbook_still_reads(tmp_path: Path) -> None:
    book = _workbook(tmp_path / "COVID.metadata.xlsx", "https://example.org/x")
    assert provenance.read_workbook(book) == [("COVID-1", "https://example.org/x")]


__all__ = ["os"]


# --- case 11: a deflated DICOM bomb ----------------------------------------------------------


def _deflated_dicom(path: Path, rows: int, cols: int, private_bytes: int = 0) -> Path:
    """A Deflated Explicit VR Little Endian DICOM of zeros (plus a private element)."""
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        DeflatedExplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if private_bytes:
        block = ds.private_block(0x0011, "hostile", create=True)
        block.add_new(0x01, "OB", b"\0" * private_bytes)
    ds.PixelData = b"\0" * (rows * cols)
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == DeflatedExplicitVRLittleEndian
    return path


def test_deflated_dicom_bomb_is_refused_before_pydicom_inflates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The 64x64 image with a 512 MB private element, scaled to 4 MiB under a 1 MiB
    # bound (the real bound is 256 MiB, images.MAX_FILE_BYTES).
    monkeypatch.setattr(images, "MAX_DICOM_DATASET_BYTES", 1024**2)
    bomb = _deflated_dicom(tmp_path / "bomb.dcm", 64, 64, private_bytes=4 * 1024**2)
    assert bomb.stat().st_size < 64 * 1024
    with pytest.raises(ImageError, match="deflated DICOM inflates to more than 1,048,576"):
        images.read_image(bomb)


def test_deflated_dicom_within_bounds_still_reads(tmp_path: Path) -> None:
    pixels = images.read_image(_deflated_dicom(tmp_path / "ok.dcm", 32, 48))
    assert pixels.shape == (32, 48, 3)
