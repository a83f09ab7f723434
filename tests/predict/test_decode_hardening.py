"""Issue 13, items 10 and 12: inputs that are not regular files, and pixels that used to come
out wrong without a word (float TIFF, 16-bit RGB DICOM, palette-colour DICOM)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cxr_covid.data import images
from cxr_covid.data.images import MAX_FILE_BYTES, read_image
from cxr_covid.errors import ImageError

pydicom = pytest.importorskip("pydicom")


def _dataset(path: Path, rows: int, cols: int) -> Any:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, cols
    ds.PixelRepresentation = 0
    return ds


def write_rgb16_dicom(path: Path, pixels: np.ndarray, bits_stored: int = 16) -> Path:
    """An (H, W, 3) RGB DICOM with 16-bit samples (interleaved)."""
    ds = _dataset(path, pixels.shape[0], pixels.shape[1])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = 16
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def write_palette_dicom(path: Path, indices: np.ndarray, lut: np.ndarray) -> Path:
    """8-bit indices into a 256-entry, 16-bit colour table `lut` of shape (256, 3)."""
    ds = _dataset(path, indices.shape[0], indices.shape[1])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    for i, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut[:, i].astype("<u2").tobytes())
    ds.PixelData = indices.astype(np.uint8).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# --- item 12: the right pixels, or a refusal ---------------------------------------------


def test_float_tiff_in_0_1_is_scaled_as_intensities_not_black(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(0.0, 1.0, 64, dtype=np.float32), (16, 1))
    Image.fromarray(ramp, mode="F").save(tmp_path / "f.tif")
    pixels = read_image(tmp_path / "f.tif")
    assert pixels.shape == (16, 64, 3)
    expected = np.rint(ramp.astype(np.float64) * 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels[..., 0], expected)
    assert pixels.max() == 255  # was 1 at most: the whole film black


def test_float_tiff_out_of_0_1_is_stretched_over_its_range(tmp_path: Path) -> None:
    ramp = np.tile(np.linspace(-1000.0, 3000.0, 32, dtype=np.float32), (8, 1))
    Image.fromarray(ramp, mode="F").save(tmp_path / "hu.tif")
    pixels = read_image(tmp_path / "hu.tif")[..., 0]
    assert pixels[0, 0] == 0 and pixels[0, -1] == 255
    assert np.all(np.diff(pixels[0].astype(int)) >= 0)  # still a ramp, nothing wrapped


def test_float_tiff_with_nan_is_refused(tmp_path: Path) -> None:
    values = np.zeros((8, 8), np.float32)
    values[2, 2] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(ImageError, match="NaN"):
        read_image(tmp_path / "nan.tif")


def test_16_bit_rgb_dicom_is_scaled_by_its_bit_depth_not_wrapped(tmp_path: Path) -> None:
    pixels = np.zeros((4, 64, 3), np.uint16)
    pixels[..., 0] = np.linspace(0, 65535, 64).astype(np.uint16)  # a red ramp
    pixels[..., 2] = 65535  # full blue
    got = read_image(write_rgb16_dicom(tmp_path / "rgb16.dcm", pixels))
    expected_red = np.rint(pixels[0, :, 0] * (255 / 65535)).astype(np.uint8)
    np.testing.assert_array_equal(got[0, :, 0], expected_red)
    assert np.all(np.diff(got[0, :, 0].astype(int)) >= 0)  # a cast wraps every 256 values
    assert np.all(got[..., 2] == 255) and np.all(got[..., 1] == 0)


def test_12_bit_rgb_dicom_uses_bits_stored(tmp_path: Path) -> None:
    pixels = np.full((4, 4, 3), 4095, np.uint16)
    pixels[:, 2:] = 2048  # mid-grey in 12 bits (a cast to uint8 would give 0)
    got = read_image(write_rgb16_dicom(tmp_path / "rgb12.dcm", pixels, bits_stored=12))
    assert np.all(got[:, :2] == 255)
    assert np.all(got[:, 2:] == 128)


def test_palette_colour_dicom_applies_its_colour_table(tmp_path: Path) -> None:
    lut = np.zeros((256, 3), np.uint16)
    lut[1] = (65535, 0, 0)  # index 1: red
    lut[2] = (0, 65535, 0)  # index 2: green
    indices = np.ones((8, 8), np.uint8)
    indices[:, 4:] = 2
    got = read_image(write_palette_dicom(tmp_path / "palette.dcm", indices, lut))
    assert got.shape == (8, 8, 3)
    assert tuple(got[0, 0]) == (255, 0, 0)
    assert tuple(got[0, 7]) == (0, 255, 0)  # was grey index values (1, 1, 1) and (2, 2, 2)


def test_palette_dicom_without_a_colour_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "no-lut.dcm"
    ds = _dataset(path, 4, 4)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = bytes(16)
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ImageError):
        read_image(path)


# --- item 10: regular files only, with a size cap -----------------------------------------


def _finishes(work: Any, seconds: float = 20.0) -> Any:
    """Run `work()` in a thread; fail (instead of hanging the suite) if it blocks."""
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["value"] = work()
        except BaseException as exc:  # handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked reading a non-regular file"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    try:
        with pytest.raises(ImageError, match="not a regular file"):
            _finishes(lambda: read_image(fifo))
    finally:  # a blocked reader (the bug) is let go, so the suite can end
        with contextlib.suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_dev_zero_is_refused_without_reading_it() -> None:
    with pytest.raises(ImageError, match="not a regular file"):
        _finishes(lambda: read_image(Path("/dev/zero")))


def test_a_file_over_the_cap_is_refused_before_reading(tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    with open(big, "wb") as handle:  # sparse: costs no disk
        handle.truncate(MAX_FILE_BYTES + 1)
    with pytest.raises(ImageError, match="too large"):
        read_image(big)


def test_the_read_never_goes_past_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG" + bytes(100))
    with pytest.raises(ImageError, match="too large"):
        images.read_file_bytes(path, limit=50)
    assert len(images.read_file_bytes(path, limit=104)) == 104
