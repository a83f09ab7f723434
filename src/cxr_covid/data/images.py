"""The one decode-and-resize path shared by training, eval, predict and heatmap.

Every image the tool sees goes through `load_for_model`, so a prediction never depends on the
path an image took. Decoding is robust to what people actually have: 8/16-bit grayscale,
palette, RGBA, CMYK, EXIF-rotated JPEGs, and DICOM (with the optional `dicom` extra). Pixels
are returned as uint8 RGB; scaling to [0, 1] happens inside the model (its `rescale` layer),
so the stored model is self-contained.

Resizing defaults to nearest-neighbour with Pillow, which is exactly what the study's
`keras.utils.load_img` did; the model record stores the method, and every reader honours it.
"""

from __future__ import annotations

import io
import numbers
import os
import stat
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_covid.about import install_hint
from cxr_covid.data.lungs import INPUTS
from cxr_covid.data.normalize import check_mode
from cxr_covid.data.normalize import normalize as normalize_pixels
from cxr_covid.errors import DependencyError, ImageError

# Clinical chest X-rays are at most ~4300x4300 (18 MP). Anything far beyond is refused
# before its pixels are decoded, so a hostile 20000x20000 PNG costs no memory.
MAX_PIXELS = 64_000_000
# And no file larger than this is read at all: an uncompressed 4300x4300 16-bit DICOM is
# about 37 MB, so 256 MiB leaves room for any radiograph and stops /dev/zero-like inputs.
MAX_FILE_BYTES = 256 * 1024 * 1024

DICOM_SUFFIXES = (".dcm", ".dicom")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif", *DICOM_SUFFIXES)

RESIZE_METHODS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


@dataclass(frozen=True)
class Preprocessing:
    """How a file becomes a model input; stored in every model record."""

    image_size: int = 224
    resize: str = "nearest"
    color: str = "rgb"
    scale: str = "1/255 inside the model"
    # `full` film, or `lungs` / `no-lungs` (see cxr_covid.data.lungs): part of the one decode path,
    # so train, eval, predict and heatmap all see the same pixels.
    input: str = "full"
    # `train --normalize`: per-image intensity standardisation (cxr_covid.data.normalize),
    # applied after resizing and before the input view. A record without it means "none".
    normalize: str = "none"

    def __post_init__(self) -> None:
        size = self.image_size
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"image_size should be a positive whole number, not {size!r}")
        if not isinstance(self.resize, str) or self.resize not in RESIZE_METHODS:
            raise ValueError(
                f"unknown resize method {self.resize!r} (known: {', '.join(RESIZE_METHODS)})"
            )
        if self.input not in INPUTS:
            raise ValueError(f"unknown input {self.input!r} (known: {', '.join(INPUTS)})")
        check_mode(self.normalize)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        keys = ("image_size", "resize", "color", "scale", "input", "normalize")
        known = {k: data[k] for k in keys if k in data}
        return cls(**known)


def is_image_name(name: str) -> bool:
    """Whether a file called `name` is read as an image: an image suffix, not hidden."""
    return PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")


def is_image_file(path: Path) -> bool:
    return is_image_name(path.name)


def read_image(source: Path | bytes) -> np.ndarray:
    """Decode a file (or its bytes) to an RGB uint8 array of shape (H, W, 3).

    Raises ImageError with a one-line reason for anything that is not a usable image.
    """
    decoded = _decode(source)
    if isinstance(decoded, np.ndarray):
        return decoded
    return _to_rgb_array(decoded, "<bytes>" if isinstance(source, bytes) else str(source))


def _decode(source: Path | bytes) -> Image.Image | np.ndarray:
    """A loaded, upright Pillow image, or for DICOM the finished RGB array."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    data = source if isinstance(source, bytes) else read_file_bytes(source)
    if not data:
        raise ImageError(f"{name}: empty file")
    if isinstance(source, Path) and source.suffix.lower() in DICOM_SUFFIXES:
        return _read_dicom(data, name)
    if data[128:132] == b"DICM":
        return _read_dicom(data, name)
    try:
        # Not closed explicitly: it reads from memory, and closing would free the pixels.
        img: Image.Image = Image.open(io.BytesIO(data))
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise ImageError(
                f"{name}: {width}x{height} pixels is too large to decode safely "
                f"(limit {MAX_PIXELS:,} pixels)"
            )
        img.load()
        if img.getexif().get(_ORIENTATION, 1) not in (0, 1):
            img = ImageOps.exif_transpose(img)
        return img
    except ImageError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name}: not an image Pillow can read") from exc
    except Image.DecompressionBombError as exc:
        # Pillow refuses these in Image.open, before our own check sees the size.
        raise ImageError(
            f"{name}: image too large to decode safely (over {MAX_PIXELS:,} pixels; "
            "a decompression bomb?)"
        ) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ImageError(f"{name}: corrupt or truncated image ({exc})") from exc


_ORIENTATION = 0x0112  # EXIF tag


def read_file_bytes(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of a regular file of at most `limit` bytes, else ImageError.

    A FIFO would block forever (and ignore Ctrl-C inside the read), a device such as
    /dev/zero would be read until memory runs out: only regular files are read, their size
    is checked before reading, and at most `limit + 1` bytes are ever read (a file growing
    meanwhile cannot get past the cap).
    """
    try:
        with open(path, "rb", opener=_open_nonblocking) as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageError(f"{path}: not a regular file (a pipe, device or socket)")
            if info.st_size > limit:
                raise ImageError(f"{path}: {info.st_size:,} bytes is too large (limit {limit:,})")
            data = handle.read(limit + 1)
    except ImageError:
        raise
    except OSError as exc:
        raise ImageError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if len(data) > limit:
        raise ImageError(f"{path}: over {limit:,} bytes, too large to read")
    return data


def _open_nonblocking(path: str, flags: int) -> int:
    # O_NONBLOCK: opening a FIFO with no writer would otherwise wait forever before the
    # file-type check could refuse it. It has no effect on regular files.
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


_DEPTHS = (8, 10, 12, 14, 16)


def _to_rgb_array(img: Image.Image, name: str = "image") -> np.ndarray:
    mode = img.mode
    if mode == "F":
        return _float_to_rgb(np.asarray(img, dtype=np.float64), name)
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit PNG/TIFF: scale linearly from the bit depth the values actually use.
        # Full-range files (PNG's own rule) peak above 16383 and are scaled from 65535;
        # radiographs exported by many medical tools keep raw 10/12/14-bit detector
        # values, which scaled from 65535 would come out nearly black.
        arr = np.asarray(img, dtype=np.float64)
        peak = float(arr.max(initial=0))
        top = next((2.0**bits - 1 for bits in _DEPTHS if peak <= 2.0**bits - 1), peak)
        gray = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # X-rays sit on black: composite transparent regions onto black, not white.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(background, rgba)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def _float_to_rgb(values: np.ndarray, name: str = "image") -> np.ndarray:
    """A floating-point image (32-bit TIFF) scaled by its real range.

    Values within 0..1 are taken as intensities (0 black, 1 white), the convention of every
    tool that writes float images; any other range is stretched from its minimum to its
    maximum. Bit-depth scaling, right for integers, would turn 0..1 into black.
    """
    if not np.isfinite(values).all():
        raise ImageError(f"{name}: floating-point image with NaN or infinite values")
    low, high = float(values.min(initial=0.0)), float(values.max(initial=0.0))
    if low >= 0.0 and high <= 1.0:
        scaled = values
    else:
        scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low)
    gray = np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def dicom_available() -> bool:
    """Whether the optional `dicom` extra (pydicom) is installed."""
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True


def _read_dicom(data: bytes, name: str = "<bytes>") -> np.ndarray:
    try:
        import pydicom
    except ImportError as exc:
        raise DependencyError(
            "reading DICOM needs the optional extra: " + install_hint("dicom")
        ) from exc
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_voi_lut  # type: ignore[attr-defined]
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
            apply_modality_lut,
            apply_voi_lut,
        )
    check_deflated_dicom(data, name)
    try:
        dataset = pydicom.dcmread(io.BytesIO(data))
        rows, cols = int(dataset.Rows), int(dataset.Columns)
        if rows * cols > MAX_PIXELS:
            raise ImageError(f"{name}: {cols}x{rows} pixels is too large to decode safely")
        pixels = dataset.pixel_array
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{name}: not a readable DICOM image ({exc})") from exc
    photometric = str(getattr(dataset, "PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        return _dicom_palette(pixels, dataset, name)
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        return _dicom_colour(pixels, dataset, name)
    if pixels.ndim != 2:
        raise ImageError(f"{name}: DICOM with {pixels.ndim} dimensions is not a single image")
    values = apply_modality_lut(pixels, dataset)
    values = apply_voi_lut(values, dataset).astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low)
    if photometric == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1 stores bone dark: invert to the usual look
    gray = np.rint(scaled * 255.0).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


# A Deflated Explicit VR Little Endian file holds its whole dataset deflated, and pydicom
# inflates all of it into memory before a tag is read: a 510 KB file of zeros became 1.78 GB
# (issue 22, case 11). The inflated dataset may be no larger than a file we would read
# uncompressed (MAX_FILE_BYTES); it is inflated here with that bound before pydicom sees it.
DEFLATED_TRANSFER_SYNTAX = b"1.2.840.10008.1.2.1.99"
MAX_DICOM_DATASET_BYTES = MAX_FILE_BYTES


def check_deflated_dicom(data: bytes, name: str = "<bytes>") -> None:
    """ImageError when `data` is a deflated DICOM whose dataset inflates past
    MAX_DICOM_DATASET_BYTES (or does not inflate at all); other files pass untouched."""
    if data[128:132] != b"DICM" or data[136:138] != b"UL":
        return  # not a standard Part 10 file: pydicom judges it
    meta_end = 144 + int.from_bytes(data[140:144], "little")
    if DEFLATED_TRANSFER_SYNTAX not in data[144:meta_end]:
        return
    bound = MAX_DICOM_DATASET_BYTES
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = len(inflater.decompress(data[meta_end:], bound + 1))
    except zlib.error as exc:
        raise ImageError(f"{name}: not a readable DICOM image (deflated data: {exc})") from None
    if inflated > bound:
        raise ImageError(
            f"{name}: deflated DICOM inflates to more than {bound:,} bytes, the most an "
            "image file may be (a deflate bomb?); refused before decoding"
        )


def _scale_to_uint8(values: np.ndarray, bits: int, name: str) -> np.ndarray:
    """Integer samples of `bits` significant bits to 0..255 (a cast would wrap at 256)."""
    if not 1 <= bits <= 16:
        raise ImageError(f"{name}: DICOM colour with {bits} bits per sample is not supported")
    if values.min(initial=0) < 0:
        raise ImageError(f"{name}: DICOM colour with signed samples is not supported")
    top = float(2**bits - 1)
    return np.clip(np.rint(values.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)


def _dicom_colour(pixels: np.ndarray, dataset: Any, name: str) -> np.ndarray:
    """RGB (or YBR, which pydicom converts to RGB) samples scaled by their bit depth."""
    if pixels.dtype == np.uint8:
        return np.asarray(pixels)
    bits = int(getattr(dataset, "BitsStored", 0) or getattr(dataset, "BitsAllocated", 16))
    return _scale_to_uint8(pixels, bits, name)


def _dicom_palette(pixels: np.ndarray, dataset: Any, name: str) -> np.ndarray:
    """PALETTE COLOR: the stored values are indices into the file's colour table."""
    try:  # pydicom >= 3
        from pydicom.pixels import apply_color_lut  # type: ignore[attr-defined]
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
            apply_color_lut,
        )
    if pixels.ndim != 2:
        raise ImageError(f"{name}: palette-colour DICOM with {pixels.ndim} dimensions")
    try:
        rgb = np.asarray(apply_color_lut(pixels, dataset))
        bits = int(dataset.RedPaletteColorLookupTableDescriptor[2])
    except Exception as exc:
        raise ImageError(
            f"{name}: palette-colour DICOM without a usable colour table ({exc})"
        ) from exc
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ImageError(f"{name}: palette-colour DICOM did not give an RGB image")
    # The descriptor says 8 or 16 bits per table entry.
    return _scale_to_uint8(rgb, 16 if bits > 8 else 8, name)


def resize(pixels: np.ndarray, size: int, method: str = "nearest") -> np.ndarray:
    """Resize an (H, W, 3) uint8 array to (size, size, 3) with the named Pillow filter."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    img = Image.fromarray(pixels)
    return np.asarray(img.resize((size, size), RESIZE_METHODS[method]), dtype=np.uint8)


def load_for_model(source: Path | bytes, prep: Preprocessing) -> np.ndarray:
    """Decode and resize one image exactly as the model expects: (S, S, 3) uint8.

    Always equal to `resize(read_image(source), ...)`. For 8-bit grayscale and RGB files it
    resizes before converting to RGB: Pillow filters each channel alike and the conversion
    copies grey into three channels, so the result is identical (a test checks every
    filter), and a 299 px grayscale PNG costs about a quarter less to prepare.
    """
    decoded = _decode(source)
    size = prep.image_size
    if isinstance(decoded, Image.Image) and decoded.mode in ("L", "RGB"):
        if decoded.size != (size, size):
            decoded = decoded.resize((size, size), RESIZE_METHODS[prep.resize])
        return apply_input(np.asarray(decoded.convert("RGB"), dtype=np.uint8), prep)
    if isinstance(decoded, np.ndarray):
        pixels = decoded
    else:
        pixels = _to_rgb_array(decoded, "<bytes>" if isinstance(source, bytes) else str(source))
    return apply_input(resize(pixels, size, prep.resize), prep)


def apply_input(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The resized pixels as the model's input sees them: standardised (`--normalize`, see
    cxr_covid.data.normalize), then the input view (`--input lungs`: only the fixed lung
    field, the rest filled with its own mean intensity; see cxr_covid.data.lungs).

    Normalising first keeps the view's flat fill out of the image's histogram."""
    pixels = normalize_pixels(pixels, prep.normalize)
    if prep.input == "full":
        return pixels
    from cxr_covid.data.lungs import apply_view

    return apply_view(pixels, prep.input)
