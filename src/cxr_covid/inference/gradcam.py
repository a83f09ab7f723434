"""Grad-CAM: where a network looks, as heat maps, overlays and captioned panels.

Grad-CAM (Selvaraju et al., 2017) weights each channel of a convolution layer's output by
the mean gradient of the class score over that channel, sums, and keeps the positive part.
The class score is the pre-softmax logit when the model ends in a softmax Dense layer (as
every registered architecture does): the softmax output saturates near 1, where its gradient
vanishes and the map would go blank for the most confident predictions.

The layer defaults to the one the model record names (`last_conv_layer`); an explicit
layer overrides it, and a model whose record names a missing layer falls back to the last
layer with a spatial (4-D) output. Images are read through the shared decode path, so the
heat map explains exactly the prediction `predict` reports.

An ensemble (models/ensemble.py) is explained member by member (`make_explainer`): each
member's map for the ensemble's class, scaled to 0-1 as for one model, then averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxr_covid import atomic
from cxr_covid.about import DISCLAIMER
from cxr_covid.classes import canonical, display_name
from cxr_covid.data.images import Preprocessing, apply_input, read_image, resize
from cxr_covid.data.lungs import lung_field_source, share_inside
from cxr_covid.errors import CxrCovidError, DependencyError, UsageError, WriteError
from cxr_covid.inference.files import output_stems
from cxr_covid.inference.heatmap_images import (
    DEFAULT_ALPHA,
    DEFAULT_COLORMAP,
    GradCam,
    LungOutline,
    check_colormap,
    is_empty,
    overlay,
    panel_png,
    png_bytes,
)
from cxr_covid.models.store import StoredModel
from cxr_covid.progress import NULL, Reporter
from cxr_covid.text import escape_name
from cxr_covid.tf_runtime import compile_once

HEATMAP_SUFFIX = ".heatmap.png"
PANEL_SUFFIX = ".panel.png"
HEATMAP_TASK = "heatmap"  # the progress task (cxr_covid.progress)


def spatial_layers(model: Any) -> list[str]:
    """Names of layers whose output is a feature map (batch, h, w, channels)."""
    names = []
    for layer in model.layers:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):
            continue
        if len(shape) == 4 and layer.name not in ("image", "rescale"):
            names.append(layer.name)
    return names


def choose_layer(model: Any, requested: str | None, recorded: str | None = None) -> str:
    """The layer to explain: `requested`, else the record's, else the last feature map."""
    candidates = spatial_layers(model)
    if requested:
        if requested not in candidates:
            raise UsageError(
                f"layer {requested!r} has no spatial output to explain "
                f"(choose from: {', '.join(candidates) or 'none'})"
            )
        return requested
    if recorded and recorded in candidates:
        return recorded
    if not candidates:
        raise UsageError("this model has no convolution layer to explain")
    return candidates[-1]


def resolve_class(name: str, classes: Sequence[str]) -> int:
    """Index of a class given by canonical name, alias or display name."""
    for i, cls in enumerate(classes):
        if name == cls or name.lower() == display_name(cls).lower():
            return i
    target = canonical(name)
    if target is not None and target in classes:
        return list(classes).index(target)
    raise UsageError(f"unknown class {name!r} (this model knows: {', '.join(classes)})")


class GradCamExplainer:
    """Compiled Grad-CAM for one model and layer; call it on (S, S, 3) uint8 pixels."""

    def __init__(self, model: Any, layer: str) -> None:
        import keras
        import tensorflow as tf

        self.layer = layer
        head = model.layers[-1]
        activation = getattr(head, "activation", None)
        # Explain the logit when the head is a softmax Dense: see the module docstring.
        self._logit_head = (
            isinstance(head, keras.layers.Dense)
            and getattr(activation, "__name__", "") == "softmax"
        )
        outputs = [model.get_layer(layer).output, head.input if self._logit_head else model.output]
        self._model = keras.Model(model.inputs, outputs)
        self._head = head
        shape = tuple(model.inputs[0].shape[1:])

        def step(x: Any, class_index: Any) -> tuple[Any, Any, Any, Any]:
            class_index = tf.cast(class_index, tf.int32)
            with tf.GradientTape() as tape:
                features, last = self._model(x, training=False)
                if self._logit_head:
                    logits = tf.matmul(last, self._head.kernel) + self._head.bias
                    probs = tf.nn.softmax(logits)
                else:
                    probs = last
                    logits = last
                # -1 means "the predicted class", decided inside the graph.
                chosen = tf.where(
                    class_index < 0, tf.cast(tf.argmax(probs[0]), tf.int32), class_index
                )
                score = tf.gather(logits[0], chosen)
            grads = tape.gradient(score, features)
            weights = tf.reduce_mean(grads, axis=(1, 2))  # (1, channels)
            cam = tf.nn.relu(tf.reduce_sum(features * weights[:, None, None, :], axis=-1))[0]
            return cam, probs[0], chosen, last

        signature = [tf.TensorSpec((1, *shape), tf.float32), tf.TensorSpec((), tf.int32)]
        self._step = compile_once(step, signature)

    def __call__(self, pixels: np.ndarray, class_index: int | None = None) -> GradCam:
        x = pixels[None].astype(np.float32)
        cam, probs, chosen, last = self._step(
            x, np.int32(-1 if class_index is None else class_index)
        )
        cam = np.asarray(cam, dtype=np.float32)
        top = float(cam.max())
        cam = cam / top if top > 0 else np.zeros_like(cam)
        features = np.asarray(last) if self._logit_head else None
        return GradCam(
            cam, int(chosen), np.asarray(probs, dtype=np.float32), self.layer, top, features
        )


class EnsembleExplainer:
    """Grad-CAM of an ensemble: the mean of its members' maps, each for the class the
    ensemble predicts (or the one asked for) and scaled to 0-1 as one model's is, so every
    member weighs the same and a region only some members use comes out cooler."""

    def __init__(self, model: Any, explainers: Sequence[GradCamExplainer]) -> None:
        from cxr_covid.models.ensemble import member_name

        self._model = model
        self._explainers = list(explainers)
        layers = {e.layer for e in self._explainers}
        self.layer = (
            layers.pop()
            if len(layers) == 1
            else ", ".join(f"{member_name(i)}/{e.layer}" for i, e in enumerate(self._explainers))
        )

    def __call__(self, pixels: np.ndarray, class_index: int | None = None) -> GradCam:
        probs = np.asarray(self._model(pixels[None].astype(np.float32), training=False))[0]
        chosen = int(probs.argmax()) if class_index is None else class_index
        cams = [explain(pixels, chosen) for explain in self._explainers]
        height = max(c.cam.shape[0] for c in cams)
        width = max(c.cam.shape[1] for c in cams)
        maps = [c.cam if c.cam.shape == (height, width) else upsample(c.cam, height, width)
                for c in cams]  # fmt: skip
        parts = [c.features for c in cams if c.features is not None]
        features = np.concatenate(parts, axis=1) if len(parts) == len(cams) else None
        return GradCam(
            np.mean(maps, axis=0).astype(np.float32),
            chosen,
            probs.astype(np.float32),
            self.layer,
            max(c.raw_max for c in cams),
            features,
        )


def make_explainer(
    model: Any, requested: str | None = None, recorded: str | None = None
) -> GradCamExplainer | EnsembleExplainer:
    """The explainer of `model` (the layer chosen by `choose_layer`, in each member of an
    ensemble): the one place that knows an ensemble is explained member by member."""
    from cxr_covid.models.ensemble import members

    networks = members(model)
    if len(networks) == 1:
        return GradCamExplainer(model, choose_layer(model, requested, recorded))
    return EnsembleExplainer(
        model, [GradCamExplainer(n, choose_layer(n, requested, recorded)) for n in networks]
    )


def explain_pixels(
    explainer: GradCamExplainer | EnsembleExplainer,
    image: np.ndarray,
    prep: Preprocessing,
    class_index: int | None = None,
    scorer: Any = None,
) -> tuple[GradCam, np.ndarray, str, bool | None]:
    """Grad-CAM of one decoded (H, W, 3) uint8 image, its map upsampled to (H, W), the
    caption line saying which probabilities these are, and whether the OOD guard flagged it.

    The one explain step shared by `heatmap` and the Python API (`Model.gradcam`); with a
    `scorer` (scoring.py) the probabilities are the calibrated ones.
    """
    # Same as load_for_model(path, prep), without decoding the file twice.
    pixels = apply_input(resize(image, prep.image_size, prep.resize), prep)
    cam = explainer(pixels, class_index)
    cam, caption, flagged = _calibrated(cam, scorer, pixels)
    return cam, upsample(cam.cam, image.shape[0], image.shape[1]), caption, flagged


def upsample(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a CAM to (height, width), pixel centres aligned."""
    img = Image.fromarray(cam.astype(np.float32), mode="F")
    up = np.asarray(img.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)
    return np.clip(up, 0.0, 1.0)


def png_text(
    model_id: str, classes: Sequence[str], result: GradCam, source: str, probabilities: str
) -> dict[str, str]:
    """The PNG text chunks of an overlay and its panel: model, class, probability..."""
    from cxr_covid.about import __version__

    explained = classes[result.class_index]
    predicted = classes[int(result.probabilities.argmax())]
    probability = float(result.probabilities[result.class_index])
    return {
        "model": model_id,
        "class": explained,
        "probability": f"{probability:.4f}",
        "predicted": predicted,
        "predicted_probability": f"{float(result.probabilities.max()):.4f}",
        "layer": result.layer,
        "source": source,
        "Description": (
            f"Grad-CAM for {display_name(explained)} ({100 * probability:.1f}%) from model "
            f"{model_id}, layer {result.layer}; predicted {display_name(predicted)}"
        ),
        "probabilities": probabilities,  # calibrated or not, and the OOD guard's verdict
        # An all-zero map leaves the overlay identical to the image: say so in the file.
        "empty_map": "true" if is_empty(result) else "false",
        "Software": f"cxr-covid {__version__}",
        "Disclaimer": DISCLAIMER,
    }


@dataclass
class HeatmapResult:
    path: Path
    heatmap: Path | None = None
    panel: Path | None = None
    predicted: str | None = None
    explained: str | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    ood: bool | None = None  # None: the model has no OOD guard
    empty_map: bool = False  # no region raised the class: the overlay is the image unchanged
    inside_lungs: float | None = None  # share of the map inside the lung field (None: empty)

    def to_dict(self) -> dict[str, Any]:
        probability = self.probabilities.get(self.explained) if self.explained else None
        return {
            "path": escape_name(str(self.path)),
            "predicted_class": self.predicted,
            "class": self.explained,
            "probability": probability,
            "probabilities": self.probabilities,
            "heatmap": None if self.heatmap is None else str(self.heatmap),
            "panel": None if self.panel is None else str(self.panel),
            "inside_lungs": self.inside_lungs,
            "empty_map": self.empty_map if self.error is None else None,
            "ood": self.ood,
            "error": self.error,
        }


@dataclass
class HeatmapSummary:
    model_id: str
    layer: str
    results: list[HeatmapResult] = field(default_factory=list)

    lung_field: str = "fixed"  # where the outline and "% inside" come from (data/lungs.py)

    @property
    def failed(self) -> list[HeatmapResult]:
        return [r for r in self.results if r.error]

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model_id,
            "layer": self.layer,
            "lung_field": self.lung_field,
            "images": [r.to_dict() for r in self.results],
            "written": len(self.results) - len(self.failed),
            "failed": len(self.failed),
            "empty_maps": sum(1 for r in self.results if r.empty_map),
        }


def output_paths(paths: Sequence[Path], out: str | None) -> list[tuple[Path, Path]]:
    """(overlay, panel) destination per input.

    `out` is a folder (default `heatmaps`), or for a single input, a `.png` file name for the
    overlay (its panel goes beside it).
    """
    target = Path(out or "heatmaps").expanduser()
    if target.suffix.lower() == ".png" and not target.is_dir():
        if len(paths) != 1:
            raise UsageError(
                f"--out {target} names one file, but there are {len(paths)} images: "
                "give a folder instead"
            )
        stem = (
            target.name[: -len(HEATMAP_SUFFIX)]
            if target.name.endswith(HEATMAP_SUFFIX)
            else (target.stem)
        )
        return [(target, target.with_name(stem + PANEL_SUFFIX))]
    if target.exists() and not target.is_dir():
        raise UsageError(f"--out {target} exists and is not a folder")
    return [
        (target / (stem + HEATMAP_SUFFIX), target / (stem + PANEL_SUFFIX))
        for stem in (escape_name(s.as_posix()) for s in output_stems(paths))
    ]


def heatmap_files(
    paths: Sequence[Path],
    stored: StoredModel,
    out: str | None = None,
    *,
    class_name: str | None = None,
    layer: str | None = None,
    colormap: str = DEFAULT_COLORMAP,
    alpha: float = DEFAULT_ALPHA,
    reporter: Reporter = NULL,
) -> HeatmapSummary:
    """Write `<stem>.heatmap.png` and `<stem>.panel.png` for each image (atomically).

    An image that cannot be read gets a result with its error; the others go on.
    """
    from cxr_covid.inference.predict import check_dicom_support

    check_colormap(colormap)
    if not 0.0 <= alpha <= 1.0:
        raise UsageError(f"--alpha must be between 0 and 1, not {alpha}")
    destinations = output_paths(paths, out)
    for folder in sorted({p.parent for pair in destinations for p in pair}):
        atomic.check_writable(folder)  # before loading the model, not after the first image
    check_dicom_support(paths)
    record = stored.record()
    class_index = resolve_class(class_name, record.classes) if class_name else None
    model = stored.load()
    explainer = make_explainer(model, layer, record.last_conv_layer)
    scorer = _scorer(model, record)
    prep: Preprocessing = record.prep
    lungs = lung_field_source(paths)
    summary = HeatmapSummary(record.id, explainer.layer, lung_field=lungs.kind)
    reporter.start(HEATMAP_TASK, total=len(paths), unit="images")
    for done, (path, (heat_path, panel_path)) in enumerate(
        zip(paths, destinations, strict=True), 1
    ):
        result = HeatmapResult(path)
        try:
            image = read_image(path)
            cam, heat, caption, flagged = explain_pixels(
                explainer, image, prep, class_index, scorer
            )
            result.ood = flagged
            lung_field = lungs.field(path, image.shape[0], image.shape[1])
            outline = LungOutline(lung_field, lungs.kind, share_inside(heat, lung_field))
            result.empty_map = is_empty(cam)
            result.inside_lungs = None if result.empty_map else outline.inside
            blended = overlay(image, heat, colormap, alpha)
            name = escape_name(path.name)  # a PNG text chunk holds UTF-8 only
            text = png_text(record.id, record.classes, cam, name, caption)
            atomic.write_bytes(heat_path, png_bytes(blended, text))
            panel = panel_png(
                image, blended, record.classes, cam, colormap, name, caption, text, outline
            )
            atomic.write_bytes(panel_path, panel)
            result.heatmap, result.panel = heat_path, panel_path
            result.predicted = record.classes[int(cam.probabilities.argmax())]
            result.explained = record.classes[cam.class_index]
            result.probabilities = {
                c: float(p) for c, p in zip(record.classes, cam.probabilities, strict=True)
            }
        except (DependencyError, WriteError):
            raise  # the installation's or the disk's problem, not this image's: stop the run
        except CxrCovidError as exc:
            result.error = str(exc)
        except Exception as exc:  # one bad image must not end the run
            result.error = f"{path}: {type(exc).__name__}: {exc}"
        summary.results.append(result)
        reporter.advance(HEATMAP_TASK, done)
    reporter.finish(HEATMAP_TASK)
    return summary


def _scorer(model: Any, record: Any) -> Any:
    """The model's calibration and OOD guard (scoring.Scorer), None for other heads."""
    from cxr_covid.errors import ModelError
    from cxr_covid.inference.scoring import Scorer

    try:
        return Scorer(model, record)
    except ModelError:
        return None


def _calibrated(cam: GradCam, scorer: Any, pixels: np.ndarray) -> tuple[GradCam, str, bool | None]:
    """The Grad-CAM result with calibrated probabilities, the caption line saying which
    probabilities they are and what the OOD guard says, and whether it flagged the image."""
    if scorer is None or cam.features is None:
        return cam, "probabilities: uncalibrated", None
    scores = scorer.from_features(cam.features, pixels[None])
    cam = replace(cam, probabilities=scores.probabilities[0].astype(np.float32))
    caption = f"probabilities: {scorer.label}"
    flagged = None if scores.ood is None else bool(scores.ood[0])
    if flagged:
        caption += (
            "\nWARNING: this image does not look like the X-rays the model was trained on "
            "(out-of-distribution guard): do not trust this prediction"
        )
    return cam, caption, flagged
