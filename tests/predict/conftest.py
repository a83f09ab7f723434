"""Fixtures for predict and heatmap: tiny stored models and the awkward files people have."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_covid import classes, models
from cxr_covid.data.images import Preprocessing
from cxr_covid.models import store
from tests.helpers import blob_image

TINY_SIZE = 24


def save_tiny_model(
    home: Path, architecture: str = "baseline", size: int = TINY_SIZE, seed: int = 0
) -> Path:
    """Build an untrained model and save it the way training does; returns its folder."""
    import keras

    keras.utils.set_random_seed(seed)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_COVID_HOME", str(home))
        model = models.build(architecture, size, len(classes.STUDY_CLASSES))
        record = store.ModelRecord(
            id=f"tiny-{architecture}",
            architecture=architecture,
            classes=list(classes.STUDY_CLASSES),
            preprocessing=Preprocessing(image_size=size).to_dict(),
            last_conv_layer=models.get(architecture).last_conv,
        )
        return store.save(model, record).root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of an untrained 24 px baseline (pass it as --model)."""
    return save_tiny_model(tmp_path_factory.mktemp("tiny-home"))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def write_bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid 1-bit PNG of side x side pixels (about 60 kB on disk, 400 MB once decoded
    as 8-bit RGB), written row by row so the test itself stays small."""
    row = b"\x00" + b"\x00" * ((side + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row) for _ in range(side)]
    parts.append(compressor.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    data = b"".join(parts)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", data)
        + _png_chunk(b"IEND", b"")
    )
    return path


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str,
    *,
    explicit: bool = False,
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
) -> Path:
    """A minimal single-frame 16-bit grayscale DICOM file written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import (
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        SecondaryCaptureImageStorage,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian if explicit else ImplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\x00" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.PatientName = "Test^Phantom"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def gradient16(rows: int = 32, cols: int = 32) -> np.ndarray:
    """Left-to-right ramp over the 16-bit range: dark on the left, bright on the right."""
    ramp = np.linspace(0, 60000, cols).astype(np.uint16)
    return np.tile(ramp, (rows, 1))


def write_exif_rotated_jpeg(path: Path) -> Path:
    """Stored 40 wide x 20 tall, with a white left half; EXIF orientation 6 says "rotate
    90 degrees clockwise to display", so readers must return 40 tall x 20 wide with the
    white half on top."""
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :20] = 255
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(path, format="JPEG", quality=95, exif=exif.tobytes())
    return path


@pytest.fixture
def odd_images(tmp_path: Path) -> dict[str, Path]:
    """Every awkward input of the issue, in one folder; name -> path."""
    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(1)
    files: dict[str, Path] = {}

    good = Image.fromarray(blob_image(classes.COVID, 40, rng), mode="L")
    files["good"] = folder / "good.png"
    good.save(files["good"])

    files["truncated"] = folder / "truncated.png"
    full = files["good"].read_bytes()
    files["truncated"].write_bytes(full[: len(full) // 2])

    files["empty"] = folder / "empty.png"
    files["empty"].write_bytes(b"")

    files["text"] = folder / "notes.png"
    files["text"].write_text("this is not an image\n")

    files["bomb"] = write_bomb_png(folder / "bomb.png")

    files["cmyk"] = folder / "cmyk.jpg"
    Image.new("CMYK", (30, 30), (0, 255, 255, 0)).save(files["cmyk"], quality=95)  # red

    files["gray16"] = folder / "gray16.png"
    ramp = np.tile(np.linspace(0, 65535, 30).astype(np.uint16), (30, 1))
    Image.fromarray(ramp).save(files["gray16"])

    files["rgba"] = folder / "rgba.png"
    rgba = np.zeros((30, 30, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[:, 15:, 3] = 255  # left half transparent, right half opaque grey 200
    Image.fromarray(rgba, mode="RGBA").save(files["rgba"])

    files["palette"] = folder / "palette.png"
    Image.fromarray(blob_image(classes.NORMAL, 30, rng), mode="L").convert("P").save(
        files["palette"]
    )

    files["exif"] = write_exif_rotated_jpeg(folder / "exif.jpg")
    files["mono1"] = write_dicom(folder / "mono1.dcm", gradient16(), "MONOCHROME1")
    files["mono2"] = write_dicom(folder / "mono2.dcm", gradient16(), "MONOCHROME2", explicit=True)

    files["unicode"] = folder / "Röntgen, Thorax — 胸部.png"
    Image.fromarray(blob_image(classes.VIRAL_PNEUMONIA, 40, rng), mode="L").save(files["unicode"])
    return files


BAD = ("truncated", "empty", "text", "bomb")


def block_pydicom(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `import pydicom` fail, as on an install without the `dicom` extra (call it after
    writing any DICOM test file)."""
    import sys

    for name in [m for m in sys.modules if m == "pydicom" or m.startswith("pydicom.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # type: ignore[arg-type]
