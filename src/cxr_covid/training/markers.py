"""Marker augmentation (`train --augment-markers`): paste random burned-in markers into the
margins of training films of every class, so that such markers carry no label.

Why: in the public collections a burned-in laterality letter, exposure text or a bright tag
can go with a class (issue 19: a large letter in the top-left corner marks 31 % of the
paediatric viral-pneumonia training films but 7 % of the paediatric normals). A network then
learns the marker. Pasting the same kinds of marks at random on films of any class takes that
signal away; whether it helps is judged on external sets, not assumed.

Per image, each with its own probability: a laterality letter ("R" or "L", 14-34 px tall at
224 px, scaled with the image), a kV/mAs-like text ("KV 85", "mAs 2.5", ...) and a small bright
rectangle, each in a random corner's margin, at a random brightness, in the font Pillow ships
(`ImageFont.load_default(size=...)`). Every mark lies inside the outer `MARGIN` of the side in
at least one direction (a band along an edge), so the centre of the film is never touched.

Like acquisition.py: the random draws are a function of (seed, key) alone, the key unique per
image and epoch (`pipeline.make_dataset`), so the same seed sees the same marks; it runs inside
the tf.data pipeline on the cached uint8 pixels (training only: eval, predict and the stored
model never see it) and takes no label, so it treats every class alike.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]

# The outer share of the side a mark may occupy: a mark lies wholly within this band along
# one edge, so the centre square (MARGIN .. 1 - MARGIN of each side) is never changed.
MARGIN = 0.25
# Probabilities per image, and the letter's height at 224 px (scaled to the image's size).
P_LETTER = 0.5
P_TEXT = 0.3
P_BOX = 0.25
LETTER_PX = (14, 34)
REFERENCE_SIZE = 224

_TEXTS = ("KV {kv}", "{kv} kV", "mAs {mas}", "{mas} mAs", "KV{kv} mAs{mas}")


@lru_cache(maxsize=128)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    # Pillow >= 10.1 ships a scalable font; without FreeType it falls back to a fixed bitmap
    # one, which still marks the film (only its size no longer varies).
    return ImageFont.load_default(size=size)


def _text_patch(text: str, height: int, stroke: int = 0) -> np.ndarray:
    """A (h, w) uint8 mask of `text` whose ink is about `height` px tall (`stroke` px of
    outline makes it bold, as most burned-in markers are), cropped to its ink."""
    height = max(4, height)
    # A font's size is not its letters' height: scale it by the measured ink of a capital.
    left, top, right, bottom = _font(height).getbbox("R")
    size = max(4, round(height * height / max(1, bottom - top)))
    font = _font(size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text, stroke_width=stroke))
    canvas = Image.new("L", (max(1, right - left + 2), max(1, bottom - top + 2)), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((1 - left, 1 - top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    mask = np.asarray(canvas, dtype=np.uint8)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return mask
    return mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _place(size: int, patch: tuple[int, int], rng: np.random.Generator) -> tuple[int, int] | None:
    """Top-left (y, x) of a (h, w) patch near a random corner, wholly inside the margin band
    along one edge; None when it fits in no band (a tiny image)."""
    height, width = patch
    band = int(size * MARGIN)
    along_top = rng.random() < 0.5  # a band along the top/bottom edge, or the left/right one
    far_edge, far_end = rng.random() < 0.5, rng.random() < 0.5
    fits_rows = height <= band and width <= size
    fits_cols = width <= band and height <= size
    if not (fits_rows or fits_cols):
        return None
    if not (fits_rows if along_top else fits_cols):
        along_top = not along_top
    across, along = (height, width) if along_top else (width, height)
    depth = int(rng.integers(0, band - across + 1))  # distance from the edge
    offset = int(rng.integers(0, max(0, min(size - along, size // 3)) + 1))  # from the corner
    if far_edge:
        depth = size - across - depth
    if far_end:
        offset = size - along - offset
    return (depth, offset) if along_top else (offset, depth)


def _paste(gray: np.ndarray, mask: np.ndarray, at: tuple[int, int], value: int) -> None:
    y, x = at
    h, w = mask.shape
    region = gray[y : y + h, x : x + w]
    alpha = mask.astype(np.float32) / 255.0
    region[:] = np.rint(region * (1.0 - alpha) + value * alpha).astype(np.uint8)


def mark_image(pixels: np.ndarray, seed: int, key: int) -> np.ndarray:
    """One (S, S, 3) uint8 image with random markers in its margins; same (seed, key), same
    result. Grey in, grey out (a colour film becomes grey, as acquisition.py does)."""
    rng = np.random.default_rng([seed, key, 11])
    size = pixels.shape[0]
    gray = np.array(pixels[:, :, 0], dtype=np.uint8)
    scale = size / REFERENCE_SIZE
    marks: list[np.ndarray] = []
    if rng.random() < P_LETTER:
        height = round(rng.uniform(*LETTER_PX) * scale)
        stroke = int(rng.integers(0, max(1, height // 10) + 1))
        marks.append(_text_patch("R" if rng.random() < 0.5 else "L", height, stroke))
    if rng.random() < P_TEXT:
        kv, mas = int(rng.integers(50, 126)), round(float(rng.uniform(0.5, 20.0)), 1)
        text = _TEXTS[int(rng.integers(len(_TEXTS)))].format(kv=kv, mas=mas)
        marks.append(_text_patch(text, round(rng.uniform(6, 12) * scale)))
    if rng.random() < P_BOX:
        box = (round(rng.uniform(4, 20) * scale), round(rng.uniform(4, 30) * scale))
        marks.append(np.full((max(1, box[0]), max(1, box[1])), 255, np.uint8))
    for mask in marks:
        at = _place(size, (mask.shape[0], mask.shape[1]), rng)
        brightness = int(rng.integers(170, 256))  # drawn even when skipped: draws stay aligned
        if at is not None:
            _paste(gray, mask, at, brightness)
    return np.repeat(gray[:, :, None], 3, axis=2)


def batch_transform(seed: int, then: Transform | None = None) -> Transform:
    """A `pipeline.make_dataset` transform: (pixels, keys) -> marked pixels, then `then`
    (e.g. acquisition.batch_transform) on the marked batch with the same keys."""

    def transform(pixels: np.ndarray, keys: np.ndarray) -> np.ndarray:
        out = np.empty_like(pixels)
        for row, key in enumerate(keys):
            out[row] = mark_image(pixels[row], seed, int(key))
        return out if then is None else then(out, keys)

    return transform
