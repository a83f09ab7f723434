"""The audit's checks on pixels: the four views of the test split, the external sets, the
Grad-CAM attention inside the lung field, and the image-origin-only predictions."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cxr_covid import stats
from cxr_covid.audit.results import (
    ATTENTION_TASK,
    ORIGIN_VIEW,
    AttentionResult,
    ExternalResult,
    ViewResult,
)
from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.data.lungs import LungFieldSource
from cxr_covid.models import store
from cxr_covid.progress import Reporter

if TYPE_CHECKING:
    from cxr_covid.evaluation.testsets import EvalImages


def view_result(
    view: str, y_true: np.ndarray, y_pred: np.ndarray, model_classes: Sequence[str]
) -> ViewResult:
    n = len(y_true)
    correct = int((y_true == y_pred).sum())
    per_class = {
        c: stats.proportion(int(((y_true == j) & (y_pred == j)).sum()), int((y_true == j).sum()))
        for j, c in enumerate(model_classes)
        if (y_true == j).any()
    }
    predicted = {c: int((y_pred == j).sum()) for j, c in enumerate(model_classes)}
    top = max(predicted.values()) if predicted else 0
    return ViewResult(
        view, stats.proportion(correct, n), per_class, predicted, n > 0 and top >= 0.9 * n
    )


def decode_test(
    images: Sequence[Path], prep: Preprocessing, source: LungFieldSource
) -> tuple[np.ndarray, np.ndarray]:
    """(N, S, S, 3) uint8 pixels as the model's own preprocessing makes them, and each
    image's lung field at the model's size (N, S, S) bool."""
    from PIL import Image

    size = prep.image_size
    pixels = np.empty((len(images), size, size, 3), np.uint8)
    fields = np.empty((len(images), size, size), bool)
    for i, path in enumerate(images):
        pixels[i] = load_for_model(path, prep)
        if source.kind == "masks":
            with Image.open(path) as img:
                width, height = img.size
            # Read (and checked) at the image's own size, then drawn at the model's size.
            full = source.field(path, height, width).astype(np.uint8) * 255
            small = Image.fromarray(full).resize((size, size), Image.Resampling.NEAREST)
            fields[i] = np.asarray(small) > 127
        else:
            fields[i] = source.field(path, size, size)
    return pixels, fields


def predict_pixels(model: Any, pixels: np.ndarray, batch_size: int) -> np.ndarray:
    from cxr_covid.inference.batches import compiled_predict

    run = compiled_predict(model)
    out = [run(pixels[i : i + batch_size]) for i in range(0, len(pixels), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0))


# --- the lung-blind control ------------------------------------------------------------------


def newcombe_difference(a: stats.Proportion, b: stats.Proportion) -> tuple[float, float, float]:
    """a - b with Newcombe's hybrid score interval (method 10), from the Wilson intervals."""
    if not a.n or not b.n:
        return (math.nan, math.nan, math.nan)
    pa, pb = a.value, b.value
    d = pa - pb
    low = d - math.sqrt((pa - a.low) ** 2 + (b.high - pb) ** 2)
    high = d + math.sqrt((a.high - pa) ** 2 + (pb - b.low) ** 2)
    return (d, max(-1.0, low), min(1.0, high))


def external_sets(
    folder: Path,
    model: Any,
    record: store.ModelRecord,
    class_map: dict[str, str],
    internal: ViewResult,
    batch_size: int,
) -> list[ExternalResult]:
    """One result per cohort of `folder` (a folder of class folders is one cohort)."""
    from cxr_covid.evaluation.testsets import external_test_sets

    return [
        external_set(test_set, model, record, internal, batch_size)
        for test_set in external_test_sets(folder, record.classes, class_map)
    ]


def external_set(
    test_set: EvalImages,
    model: Any,
    record: store.ModelRecord,
    internal: ViewResult,
    batch_size: int,
) -> ExternalResult:
    from cxr_covid.data.overlap import overlaps_for_model
    from cxr_covid.inference.batches import predict_paths

    folder = test_set.source.removeprefix("folder ")
    labels = dict(zip(test_set.paths, test_set.labels, strict=True))
    # Identical files and near-duplicates of the model's training and validation images
    # are left out: they would measure memory, not generalisation (the same check as eval).
    check = overlaps_for_model(test_set.paths, record.dataset)
    dropped = [p for p in test_set.paths if p in check.paths]
    kept = [p for p in test_set.paths if p not in check.paths]
    index = {c: i for i, c in enumerate(record.classes)}
    y_true: list[int] = []
    y_pred: list[int] = []
    for prediction in predict_paths(model, kept, record.prep, batch_size):
        if prediction.probabilities is None:
            continue
        y_true.append(index[labels[prediction.path]])
        y_pred.append(int(np.argmax(prediction.probabilities)))
    view = view_result("external", np.array(y_true), np.array(y_pred), record.classes)
    difference = {
        c: newcombe_difference(p, internal.per_class[c])
        for c, p in view.per_class.items()
        if c in internal.per_class
    }
    return ExternalResult(
        folder=str(folder),
        images=len(y_true),
        overlaps=[str(p) for p in dropped],
        accuracy=view.accuracy,
        per_class=view.per_class,
        difference=difference,
        predicted=view.predicted,
    )


# --- attention -------------------------------------------------------------------------------


def measure_attention(
    model: Any,
    record: store.ModelRecord,
    images: Sequence[Path],
    labels: Sequence[str],
    pixels: np.ndarray,
    fields: np.ndarray,
    reporter: Reporter,
) -> tuple[AttentionResult, list[Any]]:
    from cxr_covid.data.lungs import share_inside
    from cxr_covid.inference.gradcam import make_explainer, upsample

    explainer = make_explainer(model, None, record.last_conv_layer)
    layer = explainer.layer
    size = record.prep.image_size
    shares: list[tuple[str, str, float]] = []
    cams: list[Any] = []
    reporter.start(ATTENTION_TASK, total=len(images), unit="images")
    for i, path in enumerate(images):
        cam = explainer(pixels[i])
        heat = upsample(cam.cam, size, size)
        share = share_inside(heat, fields[i])
        shares.append((str(path), labels[i], share))
        cams.append(cam)
        reporter.advance(ATTENTION_TASK, i + 1)
    reporter.finish(ATTENTION_TASK)
    area = float(fields.mean()) if len(fields) else math.nan
    kept = [(p, c, s) for p, c, s in shares if math.isfinite(s)]
    return AttentionResult(layer, area, kept, no_evidence=len(shares) - len(kept)), cams


# --- verdict ---------------------------------------------------------------------------------


def mask_warnings(dataset: str, images: Sequence[Path], mask_dir: Path | None) -> list[str]:
    """A warning for masks whose name matches no image (they are ignored)."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.lungs import orphan_masks, unmatched_masks

    if mask_dir is not None:
        every = resolve_dataset(dataset)
        names = [every.file(r) for r in every.rows()]
        stray = [str(mask_dir / n) for n in unmatched_masks(names, mask_dir.expanduser())]
    else:
        stray = [str(p) for p in orphan_masks(images)]
    if not stray:
        return []
    return [
        f"warning: {len(stray)} lung mask(s) match no image by name and were ignored "
        f"(first: {stray[0]})"
    ]


def origin_only_view(
    dataset: str, y_true: np.ndarray, index: dict[str, int], model_classes: Sequence[str]
) -> ViewResult | None:
    """The test split as a rule that knows only each image's origin would call it."""
    from cxr_covid.data.confounding import origin_only_predictions
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import select

    rows = resolve_dataset(dataset).rows()
    calls = origin_only_predictions(select(rows, "train"), select(rows, "test"))
    if calls is None or len(calls) != len(y_true) or any(c not in index for c in calls):
        return None
    y_pred = np.array([index[c] for c in calls])
    return view_result(ORIGIN_VIEW, y_true, y_pred, model_classes)
