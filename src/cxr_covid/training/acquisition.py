"""Acquisition augmentation (`train --augment-acquisition`): make every training image look as
if another hospital had taken, processed and exported it.

Why: a model can tell the study's classes apart by how their films were made (the detector,
the windowing, how often the file was resized and re-compressed) rather than by the lungs,
because in the study's data each class comes from other hospitals (issue 9). Randomising
those properties during training takes that signal away. Whether it helps is judged on
external sets (docs/shortcut-audit.md), not assumed.

Per image, each with its own probability: contrast and gamma, a resize chain (down to 45-100 %
and back, random filters), JPEG re-compression at quality 30-95, Gaussian blur, Gaussian
noise, and a small crop (up to 8 % of the side) with shift, resized back. The random draws are
a function of (seed, key) alone, where the key is unique per image and epoch
(`pipeline.make_dataset`), so training with the same seed sees the same images, with or
without --deterministic.

It runs inside the tf.data pipeline (`tf.numpy_function`, parallel calls), on the cached
uint8 pixels: nothing extra is stored.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter

_FILTERS = (
    Image.Resampling.NEAREST,
    Image.Resampling.BILINEAR,
    Image.Resampling.BICUBIC,
    Image.Resampling.BOX,
    Image.Resampling.LANCZOS,
)


def _resize_chain(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = img.size[0]
    small = max(8, round(side * rng.uniform(0.45, 1.0)))
    down = _FILTERS[int(rng.integers(len(_FILTERS)))]
    up = _FILTERS[int(rng.integers(len(_FILTERS)))]
    return img.resize((small, small), down).resize((side, side), up)


def _jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buffer = io.BytesIO()
    img.save(buffer, format="JPEG", quality=int(rng.integers(30, 96)))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return decoded.convert("L")


def _crop_shift(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    side = img.size[0]
    keep = round(side * (1.0 - rng.uniform(0.0, 0.08)))
    x = int(rng.integers(0, side - keep + 1))
    y = int(rng.integers(0, side - keep + 1))
    return img.crop((x, y, x + keep, y + keep)).resize((side, side), Image.Resampling.BILINEAR)


def augment_image(pixels: np.ndarray, seed: int, key: int) -> np.ndarray:
    """One (S, S, 3) uint8 image, re-acquired at random; same (seed, key), same result."""
    rng = np.random.default_rng([seed, key, 7])
    img = Image.fromarray(np.asarray(pixels[:, :, 0], dtype=np.uint8))
    if rng.random() < 0.5:
        img = _crop_shift(img, rng)
    if rng.random() < 0.5:
        img = _resize_chain(img, rng)
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.5))))
    values = np.asarray(img, dtype=np.float32) / 255.0
    if rng.random() < 0.8:
        values = np.clip(values, 0.0, 1.0) ** float(np.exp(rng.uniform(-0.35, 0.35)))
        mean = float(values.mean())
        values = (values - mean) * float(rng.uniform(0.75, 1.3)) + mean
    if rng.random() < 0.3:
        values = values + rng.normal(0.0, rng.uniform(1.0, 8.0) / 255.0, values.shape)
    gray = np.clip(values * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        gray = np.asarray(_jpeg(Image.fromarray(gray), rng), dtype=np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def batch_transform(seed: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """A `pipeline.make_dataset` transform: (pixels, keys) -> re-acquired pixels."""

    def transform(pixels: np.ndarray, keys: np.ndarray) -> np.ndarray:
        out = np.empty_like(pixels)
        for row, key in enumerate(keys):
            out[row] = augment_image(pixels[row], seed, int(key))
        return out

    return transform
