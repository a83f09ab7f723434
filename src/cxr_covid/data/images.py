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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_covid.errors import DependencyError, ImageError

# Clinical chest X-rays are at most ~4300x4300 (18 MP). Anything far beyond is refused
# before its pixels are decoded, so a hostile 20000x20000 PNG costs no memory.
MAX_PIXELS = 64_000_000

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
    # `full` film, or `lungs` / `no-lungs` (see cxr_covid.lungs): part of the one decode path,
    # so train, eval, predict and heatmap all see the same pixels.
    input: str = "full"

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_METHODS:
            raise ValueError(f"unknown resize method {self.resize!r}")
        if self.input not in ("full", "lungs", "no-lungs"):
            raise ValueError(f"unknown input {self.input!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        keys = ("image_size", "resize", "color", "scale", "input")
        known = {k: data[k] for k in keys if k in data}
        return cls(**known)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def read_image(source: Path | bytes) -> np.ndarray:
    """Decode a file (or its bytes) to an RGB uint8 array of shape (H, W, 3).

    Raises ImageError with a one-line reason for anything that is not a usable image.
    """
    decoded = _decode(source)
    return decoded if isinstance(decoded, np.ndarray) else _to_rgb_array(decoded)


def _decode(source: Path | bytes) -> Image.Image | np.ndarray:
    """A loaded, upright Pillow image, or for DICOM the finished RGB array."""
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    if not isinstance(source, bytes):
        if source.suffix.lower() in DICOM_SUFFIXES:
            return _read_dicom(source)
        try:
            data = source.read_bytes()
        except OSError as exc:
            raise ImageError(f"{name}: cannot read file ({exc.strerror or exc})") from exc
    else:
        data = source
    if not data:
        raise ImageError(f"{name}: empty file")
    if data[128:132] == b"DICM":
        return _read_dicom(source if isinstance(source, Path) else data)
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


_DEPTHS = (8, 10, 12, 14, 16)


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
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


def dicom_available() -> bool:
    """Whether the optional `dicom` extra (pydicom) is installed."""
    try:
        import pydicom  # noqa: F401
    except ImportError:
        return False
    return True


def _read_dicom(source: Path | bytes) -> np.ndarray:
    try:
        import pydicom
    except ImportError as exc:
        raise DependencyError(
            "reading DICOM needs the optional extra: pip install 'cxr-covid[dicom]'"
        ) from exc
    try:  # pydicom >= 3
        from pydicom.pixels import apply_modality_lut, apply_voi_lut  # type: ignore[attr-defined]
    except ImportError:  # pydicom 2.x
        from pydicom.pixel_data_handlers.util import (  # type: ignore[no-redef]
            apply_modality_lut,
            apply_voi_lut,
        )
    name = "<bytes>" if isinstance(source, bytes) else str(source)
    try:
        dataset = pydicom.dcmread(io.BytesIO(source) if isinstance(source, bytes) else source)
        rows, cols = int(dataset.Rows), int(dataset.Columns)
        if rows * cols > MAX_PIXELS:
            raise ImageError(f"{name}: {cols}x{rows} pixels is too large to decode safely")
        pixels = dataset.pixel_array
    except ImageError:
        raise
    except Exception as exc:
        raise ImageError(f"{name}: not a readable DICOM image ({exc})") from exc
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        return np.asarray(pixels, dtype=np.uint8)
    if pixels.ndim != 2:
        raise ImageError(f"{name}: DICOM with {pixels.ndim} dimensions is not a single image")
    values = apply_modality_lut(pixels, dataset)
    values = apply_voi_lut(values, dataset).astype(np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = np.zeros_like(values) if high <= low else (values - low) / (high - low)
    if str(getattr(dataset, "PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        scaled = 1.0 - scaled  # MONOCHROME1 stores bone dark: invert to the usual look
    gray = np.rint(scaled * 255.0).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


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
    pixels = decoded if isinstance(decoded, np.ndarray) else _to_rgb_array(decoded)
    return apply_input(resize(pixels, size, prep.resize), prep)


def apply_input(pixels: np.ndarray, prep: Preprocessing) -> np.ndarray:
    """The resized pixels as the model's input sees them (`--input lungs`: only the fixed
    lung field, the rest filled with its own mean intensity; see cxr_covid.lungs)."""
    if prep.input == "full":
        return pixels
    from cxr_covid.lungs import apply_view

    return apply_view(pixels, prep.input)
