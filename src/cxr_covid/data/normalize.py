"""Per-image intensity standardisation (`train --normalize none|equalize|clahe`).

Why: films from other hospitals differ in exposure, windowing and contrast; a model can learn
those differences as a label (issue 9, issue 19). Standardising each image's intensities
before the network sees it takes part of that signal away. Whether it helps is judged on
external sets (`compare`, docs/shortcut-audit.md), not assumed.

- `none`: the study's pixels, unchanged (the default, and what a record without the option
  means).
- `equalize`: global histogram equalisation of the grey image with a 256-entry look-up table,
  the classic rule (OpenCV's `equalizeHist`): `round((cdf(v) - cdf_min) / (n - cdf_min) * 255)`.
  Exact integer arithmetic, so it is identical on every machine.
- `clahe`: contrast-limited adaptive histogram equalisation with scikit-image's
  `exposure.equalize_adapthist` (its defaults: tiles of 1/8 of the side, clip limit 0.01, 256
  bins), rounded back to uint8.

It runs on the resized (S, S, 3) uint8 pixels inside `images.apply_input`, the one step every
path shares (training cache, eval, predict, heatmap, audit, calibrate, the API, export's check
images), before the `--input` view. The result is grey: its luminance (ITU-R 601, as Pillow's
"L") copied into three channels.
"""

from __future__ import annotations

import numpy as np

NORMALIZE_MODES = ("none", "equalize", "clahe")
DEFAULT = "none"


def check_mode(mode: str) -> str:
    if mode not in NORMALIZE_MODES:
        raise ValueError(f"unknown normalize {mode!r} (known: {', '.join(NORMALIZE_MODES)})")
    return mode


def normalize(pixels: np.ndarray, mode: str) -> np.ndarray:
    """(S, S, 3) uint8 -> (S, S, 3) uint8 standardised by `mode` ("none" returns `pixels`)."""
    if check_mode(mode) == "none":
        return pixels
    gray = _luminance(pixels)
    out = equalize(gray) if mode == "equalize" else clahe(gray)
    return np.repeat(out[:, :, None], 3, axis=2)


def _luminance(pixels: np.ndarray) -> np.ndarray:
    """Grey values of an RGB uint8 image exactly as Pillow's convert("L") computes them."""
    from PIL import Image

    if (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 1] == pixels[:, :, 2]).all():
        return np.ascontiguousarray(pixels[:, :, 0])  # already grey: most X-rays
    return np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).convert("L"), dtype=np.uint8)


def equalize(gray: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of an (H, W) uint8 image through a 256-entry table."""
    counts = np.bincount(gray.ravel(), minlength=256).astype(np.int64)
    cdf = np.cumsum(counts)
    total = int(cdf[-1])
    low = int(cdf[np.flatnonzero(counts)[0]]) if total else 0
    if total - low == 0:  # one grey level (or empty): nothing to spread
        return gray.copy()
    # Integer rounding of (cdf - low) * 255 / (total - low), half up: no float differences.
    table = ((np.clip(cdf - low, 0, None) * 255 * 2 + (total - low)) // (2 * (total - low))).astype(
        np.uint8
    )
    equalized: np.ndarray = table[gray]
    return equalized


def clahe(gray: np.ndarray) -> np.ndarray:
    """CLAHE of an (H, W) uint8 image with scikit-image, back to uint8."""
    import warnings

    from skimage import exposure

    with warnings.catch_warnings():
        # A flat image makes scikit-image warn about precision loss; the result is still right.
        warnings.simplefilter("ignore")
        values = exposure.equalize_adapthist(gray, clip_limit=0.01, nbins=256)
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)


def describe(mode: str) -> str:
    """One sentence for preprocessing.json and the model card: what the step does."""
    return {
        "none": "none: the resized pixels as decoded",
        "equalize": (
            "global histogram equalisation of the grey image (ITU-R 601 luminance) with a "
            "256-entry table round((cdf(v) - cdf_min) / (pixels - cdf_min) * 255), copied into "
            "3 channels; cxr_covid.data.normalize.equalize"
        ),
        "clahe": (
            "CLAHE of the grey image (ITU-R 601 luminance): scikit-image "
            "exposure.equalize_adapthist(gray, clip_limit=0.01, nbins=256), default tiles of "
            "1/8 of the side, times 255 rounded to uint8, copied into 3 channels; "
            "cxr_covid.data.normalize.clahe"
        ),
    }[check_mode(mode)]
