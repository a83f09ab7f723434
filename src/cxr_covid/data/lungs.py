"""The lung field of a frontal chest film: real masks where a dataset has one per image, else
a documented fixed region; and the two ways of hiding it (lungs hidden, lungs only).

Why one module: the shortcut audit, the lung-blind control and `train --input lungs` must
agree on what "the lung field" is and how a hidden region is filled, or their numbers could
not be compared.

Masks. The current Kaggle release ships `<Class>/masks/<name>.png` (256x256, lungs white)
beside `<Class>/images/<name>.png` (299x299). A mask pairs with the image of the same name
and is resized to it (nearest neighbour, so it stays binary). Masks are used only when every
image of a set has one: masks for some classes only would let a model or an audit read the
class from the mask's presence or shape (the dev data has real masks for viral pneumonia
only). Otherwise every image gets the fixed region below.

The fixed region: two upright ellipses, one per lung, in fractions of the image's width and
height. Their centres and axes come from the mean of the 120 real release masks of the dev
set (viral pneumonia, ../shared/data/cxr-dev/lung-masks): the left lung's mass centre sits at
(0.28 W, 0.48 H), the right one's at (0.74 W, 0.46 H), and 80 % of films have lung at
rows 0.08-0.93 H and columns 0.10-0.89 W. The ellipses are drawn generously (they cover
93 % of the real masks' lung pixels, docs/shortcut-audit.md) because hiding the lungs must
hide all of them; they also cover part of the mediastinum, which is the price of one region
for every film.

Hiding. A black box makes an image unlike any a model saw in training, and a model then
predicts one class for everything, which says nothing about shortcuts (issue 9). The default
fill keeps the image's own brightness: the hidden region takes the mean intensity of the
pixels it hides, with a feathered edge so no sharp border appears. `blur` (the region's own
heavy blur: keeps coarse density, so it hides less) and `black` are there to compare; the
choice is measured in docs/shortcut-audit.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from cxr_covid.errors import DataError

# (centre x, centre y, semi-axis x, semi-axis y) in fractions of width and height.
FIXED_ELLIPSES: tuple[tuple[float, float, float, float], ...] = (
    (0.285, 0.49, 0.195, 0.43),
    (0.725, 0.48, 0.195, 0.44),
)
FILLS: tuple[str, ...] = ("mean", "blur", "black")
DEFAULT_FILL = "mean"
# What `Preprocessing.input` may say: the whole film, only the lung field, or everything but.
INPUTS: tuple[str, ...] = ("full", "lungs", "no-lungs")
MASK_FOLDER = "masks"
IMAGE_FOLDER = "images"
# A mask whose aspect ratio differs from its image's by more than this is not its mask.
_ASPECT_TOLERANCE = 0.03


# A lung mask is black and white. The 120 release masks of the dev set have no pixel between
# 32 and 223 (measured); antialiased or re-compressed masks have a thin grey rim. More grey
# than this (a gradient, a photo, a heat map) is refused rather than cut at 127 in silence.
MAX_GREY_FRACTION = 0.05


def fixed_lung_field(height: int, width: int) -> np.ndarray:
    """The documented fixed lung region at (height, width): a boolean (H, W) array."""
    ys = (np.arange(height, dtype=np.float64) + 0.5) / height
    xs = (np.arange(width, dtype=np.float64) + 0.5) / width
    field = np.zeros((height, width), dtype=bool)
    for cx, cy, ax, ay in FIXED_ELLIPSES:
        field |= ((xs[None, :] - cx) / ax) ** 2 + ((ys[:, None] - cy) / ay) ** 2 <= 1.0
    return field


def mask_path_for(image: Path) -> Path:
    """Where the release keeps an image's mask: `<Class>/masks/<same name>`."""
    if image.parent.name.lower() == IMAGE_FOLDER:
        return image.parent.parent / MASK_FOLDER / image.name
    return image.parent / MASK_FOLDER / image.name


def read_mask(path: Path, height: int, width: int) -> np.ndarray:
    """A mask file as a boolean (height, width) array, resized to its image.

    DataError when it cannot be read or its shape is not the image's (aspect ratio): a
    256x256 mask belongs to a square image, never to a 640x524 one.
    """
    try:
        with Image.open(path) as img:
            img.load()
            gray = img.convert("L")
    except FileNotFoundError as exc:
        raise DataError(f"{path}: lung mask not found") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: not a readable lung mask ({exc})") from exc
    mask_w, mask_h = gray.size
    if abs(mask_w / mask_h - width / height) > _ASPECT_TOLERANCE * (width / height):
        raise DataError(
            f"{path}: lung mask is {mask_w}x{mask_h}, which does not match its image "
            f"({width}x{height}); is it the mask of another image?"
        )
    grey_levels = np.asarray(gray, dtype=np.uint8)
    between = float(np.mean((grey_levels >= 32) & (grey_levels <= 223)))
    if between > MAX_GREY_FRACTION:
        raise DataError(
            f"{path}: not a lung mask: {100 * between:.0f}% of its pixels are grey, neither "
            "black nor white (a mask is lungs white on black; is it a picture or a heat map?)"
        )
    if (mask_w, mask_h) != (width, height):
        gray = gray.resize((width, height), Image.Resampling.NEAREST)
    field = np.asarray(gray, dtype=np.uint8) > 127
    if not field.any():
        raise DataError(f"{path}: lung mask is empty (no lung pixel)")
    return field


def _feather(field: np.ndarray) -> np.ndarray:
    """The field as a weight in [0, 1] with a soft edge (about 2 % of the side)."""
    radius = max(1.0, 0.02 * max(field.shape))
    img = Image.fromarray(field.astype(np.uint8) * 255)
    soft = np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0
    # Keep the inside fully hidden: only the outside of the border is softened.
    weight: np.ndarray = np.maximum(soft, field.astype(np.float32))
    return weight


def hide(pixels: np.ndarray, region: np.ndarray, fill: str = DEFAULT_FILL) -> np.ndarray:
    """`pixels` (H, W, 3) uint8 with `region` (H, W) bool hidden by `fill`."""
    if fill not in FILLS:
        raise ValueError(f"unknown fill {fill!r}")
    if region.shape != pixels.shape[:2]:
        raise ValueError(f"region {region.shape} does not match image {pixels.shape[:2]}")
    if not region.any():
        return pixels
    image = pixels.astype(np.float32)
    if fill == "black":
        replacement = np.zeros_like(image)
    elif fill == "mean":
        replacement = np.broadcast_to(image[region].mean(axis=0), image.shape)
    else:
        radius = 0.08 * max(region.shape)
        blurred = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(radius))
        replacement = np.asarray(blurred, dtype=np.float32)
    weight = _feather(region)[:, :, None]
    out = image * (1.0 - weight) + replacement * weight
    result: np.ndarray = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    return result


def apply_view(
    pixels: np.ndarray, view: str, region: np.ndarray | None = None, fill: str = DEFAULT_FILL
) -> np.ndarray:
    """The image as a view sees it: `full` unchanged, `lungs` (outside hidden) or `no-lungs`
    (lung field hidden); `region` defaults to the fixed lung field."""
    if view == "full":
        return pixels
    if view not in INPUTS:
        raise ValueError(f"unknown input {view!r}")
    field = region if region is not None else fixed_lung_field(*pixels.shape[:2])
    return hide(pixels, ~field if view == "lungs" else field, fill)


def share_inside(heat: np.ndarray, field: np.ndarray) -> float:
    """The share of a heat map's total that falls inside the lung field `field` (both (H, W)),
    in [0, 1]; NaN for an empty map (no region raised the class: no share to speak of).

    The one computation behind the audit's attention check and `heatmap`'s "% inside the
    lungs"."""
    total = float(heat.sum())
    if total <= 0:
        return math.nan
    return float(heat[field].sum() / total)


# --- masks of a set of images ---------------------------------------------------------------


@dataclass(frozen=True)
class LungFieldSource:
    """Which lung field a set of images gets: `masks` (every image has one) or `fixed`."""

    kind: str  # "masks" or "fixed"
    reason: str
    masks: dict[Path, Path]  # image -> its mask, only when kind == "masks"

    def field(self, image: Path, height: int, width: int) -> np.ndarray:
        if self.kind == "masks":
            return read_mask(self.masks[image], height, width)
        return fixed_lung_field(height, width)

    def to_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "reason": self.reason, "masks": len(self.masks)}


def lung_field_source(images: Sequence[Path], mask_dir: Path | None = None) -> LungFieldSource:
    """Decide, for these images, between their masks and the fixed region (see module doc).

    Masks are looked for beside each image (`<Class>/masks/<name>`), or by name in `mask_dir`.
    """
    found: dict[Path, Path] = {}
    for image in images:
        candidate = mask_dir / image.name if mask_dir is not None else mask_path_for(image)
        if candidate.is_file():
            found[image] = candidate
    if images and len(found) == len(images):
        return LungFieldSource("masks", f"every one of the {len(images)} images has a mask", found)
    if not found:
        return LungFieldSource("fixed", "no image has a lung mask: fixed lung region", {})
    return LungFieldSource(
        "fixed",
        f"only {len(found)} of {len(images)} images have a lung mask; masks for some images "
        "only could reveal their class, so every image gets the fixed lung region",
        {},
    )


def unmatched_masks(images: Sequence[Path], mask_dir: Path) -> list[str]:
    """Mask files in `mask_dir` whose name matches none of `images` (for a warning)."""
    names = {p.name for p in images}
    return sorted(p.name for p in mask_dir.iterdir() if p.is_file() and p.name not in names)


def orphan_masks(images: Sequence[Path]) -> list[Path]:
    """Masks in the `masks/` folders beside these images whose name matches no image of the
    sibling `images/` folder: a renamed or stray mask, reported and ignored."""
    found: list[Path] = []
    for folder in sorted({mask_path_for(p).parent for p in images}):
        if not folder.is_dir():
            continue
        image_dir = folder.parent / IMAGE_FOLDER
        if not image_dir.is_dir():
            image_dir = folder.parent
        names = {p.name for p in image_dir.iterdir()}
        found += [m for m in sorted(folder.iterdir()) if m.is_file() and m.name not in names]
    return found
