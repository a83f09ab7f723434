"""Heat-map pictures: colour maps, overlays, captioned panels (with the lung field) and PNG
bytes with their text chunks. What the network looked at is computed in gradcam.py; this
module only draws it."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from cxr_covid.about import DISCLAIMER
from cxr_covid.classes import display_name
from cxr_covid.errors import UsageError

# A perceptual map (even steps of heat look like even steps of colour, unlike jet's bands),
# drawn with an opacity that follows the heat: cold regions show the film untouched.
DEFAULT_COLORMAP = "inferno"
DEFAULT_ALPHA = 0.6  # opacity where the map is hottest
# Panels show images at most this many pixels on a side: a 4000 px radiograph gains nothing
# on screen and would make the figure slow to render.
PANEL_MAX_SIDE = 1024


@dataclass(frozen=True)
class GradCam:
    cam: np.ndarray  # (h, w) float32 in [0, 1] at the layer's resolution
    class_index: int  # the class explained
    probabilities: np.ndarray  # (classes,) the model's output for the image
    layer: str
    raw_max: float = 0.0  # the map's maximum before scaling; 0 means no positive evidence
    features: np.ndarray | None = None  # (1, d) penultimate features (calibration, OOD guard)


def is_empty(result: GradCam) -> bool:
    """No region raised the explained class's score: the map is zero everywhere, and the
    overlay is the image unchanged (not "everything equally unimportant")."""
    return result.raw_max <= 0


def check_colormap(name: str) -> None:
    import matplotlib

    if name not in matplotlib.colormaps:
        popular = "jet, inferno, magma, viridis, turbo, hot"
        raise UsageError(f"unknown colour map {name!r} (e.g. {popular}; any matplotlib name)")


def colorize(heat: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """(H, W) in [0, 1] -> (H, W, 3) uint8 through a matplotlib colour map."""
    import matplotlib

    rgba = np.asarray(matplotlib.colormaps[colormap](heat), dtype=np.float64)
    return (rgba[..., :3] * 255.0 + 0.5).astype(np.uint8)


def overlay(
    image: np.ndarray,
    heat: np.ndarray,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = DEFAULT_ALPHA,
) -> np.ndarray:
    """Blend a colourised heat map over an (H, W, 3) uint8 image.

    Each pixel's opacity is `alpha` times its heat: the map shows where the heat is, and
    where there is none the image's own pixels come through unchanged (a uniform tint would
    hide the film everywhere and make a cold lung look coloured)."""
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"opacity must be between 0 and 1, not {alpha}")
    colour = colorize(heat, colormap).astype(np.float32)
    weight = alpha * np.clip(heat, 0.0, 1.0).astype(np.float32)[..., None]
    blended: np.ndarray = (1.0 - weight) * image.astype(np.float32) + weight * colour
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


def _png_info(text: dict[str, str]) -> Any:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)  # iTXt where the value is not Latin-1 (a file name)
    return info


def png_bytes(pixels: np.ndarray, text: dict[str, str] | None = None) -> bytes:
    """PNG bytes; `text` goes into text chunks, so the bare overlay says what it shows."""
    buffer = io.BytesIO()
    extra: dict[str, Any] = {"pnginfo": _png_info(text)} if text else {}
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=3, **extra)
    return buffer.getvalue()


def _shrink(pixels: np.ndarray, max_side: int = PANEL_MAX_SIDE) -> np.ndarray:
    height, width = pixels.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1:
        return pixels
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def panel_png(
    image: np.ndarray,
    blended: np.ndarray,
    classes: Sequence[str],
    result: GradCam,
    colormap: str = DEFAULT_COLORMAP,
    title: str = "",
    caption: str = "",
    text: dict[str, str] | None = None,
    lungs: LungOutline | None = None,
) -> bytes:
    """Side-by-side figure (original | overlay) captioned with the prediction, as PNG bytes.

    With `lungs`, the overlay shows the lung field's outline and the map's share inside it.

    Uses matplotlib's Agg canvas directly (no pyplot): no display needed, no global state.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    predicted = int(result.probabilities.argmax())
    probs = "   ".join(
        f"{display_name(c)} {100 * float(p):.1f}%"
        for c, p in zip(classes, result.probabilities, strict=True)
    )
    figure = Figure(figsize=(10, 5.6), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    left, right = figure.subplots(1, 2)
    left.imshow(_shrink(image))
    left.set_title("original")
    shown = _shrink(blended)
    right.imshow(shown)
    explained = display_name(classes[result.class_index])
    right_title = f"Grad-CAM for {explained} (layer {result.layer})"
    if is_empty(result):  # an all-zero map is not "everything equally unimportant"
        right_title += "\nempty map: no region raised this class's score"
    if lungs is not None:
        _draw_outline(right, lungs.field, shown.shape[:2])
        right_title += f"\n{lungs.caption()}"
    right.set_title(right_title)
    for axis in (left, right):
        axis.set_axis_off()
    figure.colorbar(
        ScalarMappable(norm=Normalize(0, 1), cmap=colormap),
        ax=[left, right],
        fraction=0.03,
        shrink=0.8,
        pad=0.02,
        label="relative importance",
    )
    heading = f"Predicted: {display_name(classes[predicted])}"
    heading += f" ({100 * float(result.probabilities[predicted]):.1f}%)"
    if caption:  # which probabilities these are, and the OOD guard's verdict
        heading += f"\n{caption}"
    figure.suptitle(f"{title}\n{heading}\n{probs}" if title else f"{heading}\n{probs}")
    figure.supxlabel(DISCLAIMER, fontsize=7, color="0.4")
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # File names in scripts the bundled font lacks (CJK...) render as boxes; that is
        # no reason to print a warning per glyph.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        # Fast zlib level: a panel is a preview, and level 6 costs more than drawing it.
        pil_kwargs: dict[str, Any] = {"compress_level": 1}
        if text:
            pil_kwargs["pnginfo"] = _png_info(text)
        figure.savefig(buffer, format="png", pil_kwargs=pil_kwargs)
    return buffer.getvalue()


@dataclass(frozen=True)
class LungOutline:
    """The lung field drawn on a panel, where it came from, and the map's share inside it."""

    field: np.ndarray  # (H, W) bool at the image's size
    source: str  # "masks" or "fixed" (data/lungs.py)
    inside: float  # share of the map inside the field; NaN for an empty map

    def caption(self) -> str:
        where = "lung mask" if self.source == "masks" else "fixed lung region"
        if not np.isfinite(self.inside):
            return f"outline: {where}"
        return f"{100 * self.inside:.0f}% inside the lungs (outline: {where})"


def _draw_outline(axis: Any, field: np.ndarray, shape: tuple[int, ...]) -> None:
    small = Image.fromarray(field.astype(np.uint8) * 255).resize(
        (shape[1], shape[0]), Image.Resampling.NEAREST
    )
    axis.contour(np.asarray(small) > 127, levels=[0.5], colors="cyan", linewidths=1.0)
