"""The public Python API: `cxr_covid.load_model(...)`, then `model.predict(...)`.

A thin object over the same core the command line uses: files go through
`inference.predict_paths` (the one decode path, shared with `predict` and `eval`), arrays are
checked and resized with the same Pillow filter the model record names, and Grad-CAM goes
through `explain.GradCamExplainer` exactly as `heatmap` does. So a file gets the same
probabilities from `model.predict` as from `cxr-covid predict`.

TensorFlow is imported only when a model is first used (not by `load_model`, which reads the
record only), so `import cxr_covid` and listing models stay instant.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, overload

import numpy as np

from cxr_covid.data.images import MAX_PIXELS, Preprocessing, apply_input, read_image, resize
from cxr_covid.errors import DependencyError, ImageError, UsageError
from cxr_covid.inference.ood import FLAG_ABOVE
from cxr_covid.models import store
from cxr_covid.system import DatasetSummary, ModelSummary, summarize_datasets, summarize_models

# A path, a NumPy array, a PIL image or a TensorFlow tensor (HxW, HxWxC; a 4-D array or
# tensor is a batch). PIL and TensorFlow are recognised without importing either.
ImageInput = str | os.PathLike[str] | np.ndarray | Any
ErrorPolicy = Literal["raise", "keep"]


class InvalidImageArray(UsageError, ValueError):
    """An array that is not an image the model can take (wrong dtype, shape or range)."""


@dataclass(frozen=True)
class ImageResult:
    """One image's prediction. `probabilities` maps class -> probability (model order)."""

    source: str  # the path, or "array[i]" for an array input
    label: str | None  # the predicted class; None when the image could not be read
    probabilities: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    # The stored operating point's decision (the argmax when the model has none), and the
    # out-of-distribution guard's verdict (None: the model has no guard), as `predict` writes.
    decision: str | None = None
    ood: bool | None = None
    ood_score: float | None = None

    @property
    def vector(self) -> np.ndarray:
        """The probabilities as a float32 array in the model's class order (empty when the
        image could not be read; `Predictions.probabilities` shows that row as NaN)."""
        if not self.probabilities:
            return np.full(0, np.nan, np.float32)
        return np.asarray(list(self.probabilities.values()), dtype=np.float32)


class Predictions(Sequence[ImageResult]):
    """Per-image results in input order; `.probabilities` is the (n, classes) array."""

    def __init__(self, results: list[ImageResult], classes: Sequence[str]) -> None:
        self._results = results
        self.classes = list(classes)

    @overload
    def __getitem__(self, index: int) -> ImageResult: ...

    @overload
    def __getitem__(self, index: slice) -> list[ImageResult]: ...

    def __getitem__(self, index: int | slice) -> ImageResult | list[ImageResult]:
        return self._results[index]

    def __len__(self) -> int:
        return len(self._results)

    def __iter__(self) -> Iterator[ImageResult]:
        return iter(self._results)

    def __repr__(self) -> str:
        return f"Predictions({self._results!r})"

    @property
    def labels(self) -> list[str | None]:
        return [r.label for r in self._results]

    @property
    def probabilities(self) -> np.ndarray:
        """(n, classes) float32; a row of NaN for an image that could not be read."""
        table = np.full((len(self._results), len(self.classes)), np.nan, np.float32)
        for row, result in enumerate(self._results):
            if result.probabilities:
                table[row] = result.vector
        return table

    def to_records(self) -> list[dict[str, Any]]:
        """One dict per image with `predict`'s columns: source, predicted_class,
        p_<class>..., decision, ood, ood_score, error (None where empty)."""
        records = []
        for result in self._results:
            row: dict[str, Any] = {"source": result.source, "predicted_class": result.label}
            for cls in self.classes:
                row[f"p_{cls}"] = result.probabilities.get(cls)
            row.update(
                decision=result.decision,
                ood=result.ood,
                ood_score=result.ood_score,
                error=result.error,
            )
            records.append(row)
        return records

    def to_pandas(self) -> Any:
        """The results as a pandas DataFrame (`to_records`' columns, one row per image).

        pandas is optional: DependencyError with the install hint when it is missing."""
        import importlib

        try:
            # Through importlib: pandas is optional, and ships no type information.
            pandas = importlib.import_module("pandas")
        except ImportError:
            raise DependencyError(
                "Predictions.to_pandas needs pandas, which cxr-covid does not install: "
                "pip install pandas (or use .to_records() for plain dicts)"
            ) from None
        columns = ["source", "predicted_class", *(f"p_{c}" for c in self.classes)]
        columns += ["decision", "ood", "ood_score", "error"]
        return pandas.DataFrame(self.to_records(), columns=columns)


def pixels_from_array(array: Any, prep: Preprocessing) -> np.ndarray:
    """Check an image array and make it the model's input: (S, S, 3) uint8.

    Accepted: uint8 in 0-255, or float in 0-1; shape (H, W), (H, W, 1) or (H, W, 3).
    Anything else raises InvalidImageArray rather than being silently rescaled.
    """
    # The same steps as a file after decoding: resize, then the model's input view.
    return apply_input(resize(rgb_from_array(array), prep.image_size, prep.resize), prep)


def rgb_from_array(array: Any) -> np.ndarray:
    """An accepted image array (see `pixels_from_array`) as (H, W, 3) uint8, not resized."""
    pixels = np.asarray(array)
    if pixels.ndim >= 2 and pixels.shape[0] * pixels.shape[1] > MAX_PIXELS:
        # Checked before any copy: 100000x100000 used to end in numpy's MemoryError.
        raise InvalidImageArray(
            f"image array of {pixels.shape[1]}x{pixels.shape[0]} pixels is too large "
            f"(limit {MAX_PIXELS:,} pixels, as for image files)"
        )
    if pixels.ndim == 3 and pixels.shape[-1] in (1, 3):
        pass
    elif pixels.ndim != 2:
        raise InvalidImageArray(
            f"image array of shape {pixels.shape}: expected (H, W), (H, W, 1) or (H, W, 3)"
        )
    if pixels.shape[0] < 1 or pixels.shape[1] < 1:
        raise InvalidImageArray(f"image array of shape {pixels.shape} is empty")
    if pixels.dtype == np.uint8:
        values = pixels
    elif np.issubdtype(pixels.dtype, np.floating):
        if not np.all(np.isfinite(pixels)):
            raise InvalidImageArray("float image array holds NaN or infinity")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > 1.0:
            raise InvalidImageArray(
                f"float image array must lie in 0-1 (found {low:g} to {high:g}); "
                "pass uint8 for 0-255 pixel values"
            )
        values = np.rint(pixels.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise InvalidImageArray(
            f"image array of dtype {pixels.dtype}: expected uint8 (0-255) or float (0-1)"
        )
    if values.ndim == 2:
        values = values[:, :, None]
    if values.shape[-1] == 1:
        values = np.repeat(values, 3, axis=2)
    return np.ascontiguousarray(values)


class Model:
    """A stored model, ready to predict and explain. Get one with `load_model`."""

    def __init__(self, stored: store.StoredModel, *, keep: Any = None) -> None:
        self.stored = stored
        self.record: store.ModelRecord = stored.record()
        self._keep = keep  # a TemporaryDirectory holding an opened pack, alive with us
        self._keras: Any = None
        self._explainers: dict[str, Any] = {}
        self._scorer_cache: Any = None

    def __repr__(self) -> str:
        return f"<cxr_covid.Model {self.id!r} ({self.record.architecture}, {self.stored.root})>"

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def classes(self) -> list[str]:
        return list(self.record.classes)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.record.prep

    @property
    def keras_model(self) -> Any:
        """The Keras model (loaded on first use, with safe_mode)."""
        if self._keras is None:
            from cxr_covid.tf_runtime import import_tensorflow_quietly

            import_tensorflow_quietly()
            self._keras = self.stored.load()
        return self._keras

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        batch_size: int = 32,
        errors: ErrorPolicy = "raise",
    ) -> Predictions:
        """Class probabilities for image files and/or arrays, one result per image.

        A single path or array is one image; a 4-D array is a batch (N, H, W, C). With
        `errors="raise"` (default) an unreadable file raises ImageError; with "keep" its
        result has `label=None` and the reason in `error`.
        """
        from cxr_covid.inference.batches import predict_paths
        from cxr_covid.inference.predict import check_dicom_support

        if batch_size < 1:
            raise UsageError("batch_size must be at least 1")
        if errors not in ("raise", "keep"):
            raise UsageError(f"errors must be 'raise' or 'keep', not {errors!r}")
        items = _as_items(images)
        prep = self.preprocessing
        # Check every array before any work, so a bad one fails fast and loses nothing.
        arrays = {i: pixels_from_array(x, prep) for i, x in enumerate(items) if _is_array(x)}
        files = [(i, Path(os.fspath(x))) for i, x in enumerate(items) if not _is_array(x)]
        check_dicom_support([p for _, p in files])
        results: dict[int, ImageResult] = {}
        scorer = self._scorer()  # calibrated probabilities and the guard, as `predict` uses
        if files:
            paths = [p for _, p in files]
            for prediction in predict_paths(None, paths, prep, batch_size, scorer=scorer):
                index = files[prediction.index][0]
                probs = prediction.probabilities
                if probs is None:
                    if errors == "raise":
                        raise ImageError(prediction.error or f"{prediction.path}: unreadable")
                    results[index] = ImageResult(str(prediction.path), None, {}, prediction.error)
                else:
                    results[index] = self._result(str(prediction.path), probs, prediction.ood_score)
        if arrays:
            order = sorted(arrays)
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                scores = scorer(np.stack([arrays[i] for i in chunk]))
                for row, index in enumerate(chunk):
                    ood = None if scores.ood_score is None else float(scores.ood_score[row])
                    results[index] = self._result(f"array[{index}]", scores.probabilities[row], ood)
        return Predictions([results[i] for i in range(len(items))], self.classes)

    def _scorer(self) -> Any:
        from cxr_covid.inference.scoring import Scorer

        if self._scorer_cache is None:
            self._scorer_cache = Scorer(self.keras_model, self.record)
        return self._scorer_cache

    @functools.cached_property
    def _rule(self) -> tuple[int, float] | None:
        """The stored operating point as (class index, threshold); None: the argmax decides."""
        from cxr_covid.inference.predict import decision_rule

        return decision_rule(self.record, None)

    def _result(self, source: str, probs: np.ndarray, ood_score: float | None) -> ImageResult:
        classes = self.classes
        mapping = {c: float(p) for c, p in zip(classes, probs, strict=True)}
        rule = self._rule
        decided = int(np.argmax(probs))
        if rule is not None:
            from cxr_covid.inference.operating_point import decide

            decided = int(decide(np.asarray(probs)[None], *rule)[0])
        return ImageResult(
            source,
            classes[int(np.argmax(probs))],
            mapping,
            decision=classes[decided],
            ood=None if ood_score is None else ood_score > FLAG_ABOVE,
            ood_score=ood_score,
        )

    def gradcam(
        self,
        image: ImageInput,
        target: str | None = None,
        *,
        layer: str | None = None,
    ) -> np.ndarray:
        """Grad-CAM heat map for `target` (a class name; default the predicted class).

        Returns an (H, W) float32 array in 0-1 at the image's own size: the same map
        `cxr-covid heatmap` draws.
        """
        from cxr_covid.inference.gradcam import explain_pixels, resolve_class

        class_index = resolve_class(target, self.classes) if target else None
        explainer = self._explainer(layer)
        image = _plain(image)
        original = rgb_from_array(image) if _is_array(image) else read_image(_as_path(image))
        _cam, heat, _caption, _ood = explain_pixels(
            explainer, original, self.preprocessing, class_index
        )
        return heat

    def _explainer(self, layer: str | None) -> Any:
        from cxr_covid.inference.gradcam import make_explainer

        key = layer or ""
        if key not in self._explainers:
            self._explainers[key] = make_explainer(
                self.keras_model, layer, self.record.last_conv_layer
            )
        return self._explainers[key]


def _is_array(item: Any) -> bool:
    return isinstance(item, np.ndarray)


def _is_pil_image(item: Any) -> bool:
    pil = sys.modules.get("PIL.Image")  # loaded if the caller made one; never imported here
    return pil is not None and isinstance(item, pil.Image)


def _is_tensor(item: Any) -> bool:
    tf = sys.modules.get("tensorflow")  # likewise: a tensor means TensorFlow is loaded
    return tf is not None and isinstance(item, tf.Tensor)


def _from_pil(image: Any) -> np.ndarray:
    """A PIL image as the array `rgb_from_array` takes: 8-bit grey or RGB as uint8, 16-bit
    and 32-bit grey scaled by their depth into 0-1 (as a 16-bit PNG file is read), anything
    else (palette, RGBA, CMYK, LA) converted to RGB."""
    mode = image.mode
    if mode in ("L", "RGB"):
        return np.asarray(image)
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float64) / 65535.0
    if mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode == "I":
            depth = 65535.0 if values.size == 0 or values.max() <= 65535 else 2.0**32 - 1
            values = values / depth
        return values
    if mode == "1":
        return np.asarray(image.convert("L"))
    return np.asarray(image.convert("RGB"))


def _plain(item: Any) -> Any:
    """A PIL image or tensor as a NumPy array; anything else unchanged."""
    if _is_pil_image(item):
        return _from_pil(item)
    if _is_tensor(item):
        return np.asarray(item.numpy())
    return item


_BYTES_REFUSED = (
    "image bytes are not accepted: pass a file path, or the decoded pixels as a NumPy "
    "array (e.g. np.asarray(PIL.Image.open(io.BytesIO(data))))"
)


def _as_path(item: Any) -> Path:
    if isinstance(item, (bytes, bytearray, memoryview)):
        raise InvalidImageArray(_BYTES_REFUSED)
    if isinstance(item, (str, os.PathLike)):
        return Path(os.fspath(item))
    raise InvalidImageArray(
        f"expected a file path, a NumPy array, a PIL image or a TensorFlow tensor, not "
        f"{type(item).__name__}"
    )


def _as_items(images: Any) -> list[Any]:
    if isinstance(images, (bytes, bytearray, memoryview)):
        raise InvalidImageArray(_BYTES_REFUSED)
    images = _plain(images)
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, Sequence) or hasattr(images, "__iter__"):
        items = [_plain(item) for item in images]
        for item in items:
            if not _is_array(item):
                _as_path(item)
        return items
    raise InvalidImageArray(
        f"expected paths, NumPy arrays, PIL images or tensors, not {type(images).__name__}"
    )


def load_model(model: str | os.PathLike[str] | None = None) -> Model:
    """A model by store id, model folder, or pack file (`cxr-covid models pack`).

    With no argument, the newest model in the store. A pack is opened into a temporary
    folder that lives as long as the returned Model. Raises ModelError when nothing fits.
    """
    if model is not None:
        path = Path(os.fspath(model)).expanduser()
        if path.is_file():
            from cxr_covid.sharing import packs

            keep = tempfile.TemporaryDirectory(prefix="cxr-covid-pack-")
            try:
                folder = packs.open_pack(path, Path(keep.name) / "model")
            except BaseException:
                keep.cleanup()
                raise
            return Model(store.StoredModel(folder), keep=keep)
    return Model(store.resolve(os.fspath(model) if model is not None else None))


def list_models() -> list[ModelSummary]:
    """Every stored model, oldest first, as `cxr-covid models list --json` shows them."""
    return summarize_models()


def list_datasets() -> list[DatasetSummary]:
    """Every dataset in the home, oldest first, as `cxr-covid datasets list --json` shows."""
    return summarize_datasets()


# --- training, evaluation and the audit: the commands' core, for Python users ---------------


def train(dataset: str | None = None, *, reporter: Any = None, **options: Any) -> Any:
    """Train a new model and save it in the store, as `cxr-covid train` does.

    `options` are `train`'s settings by their Python names (`arch`, `epochs`, `image_size`,
    `batch_size`, `learning_rate`, `seed`, `augment`, `name`, ...: the fields of
    `cxr_covid.training.config.TrainConfig`). Returns the `TrainResult` (`.model` the stored
    model, `.best_val_accuracy`, `.to_dict()`); `load_model(result.model.id)` predicts with it.
    """
    from cxr_covid.progress import NULL
    from cxr_covid.tf_runtime import import_tensorflow_quietly
    from cxr_covid.training.config import TrainConfig
    from cxr_covid.training.run import train as train_model

    _check_options("train", options, TrainConfig.__dataclass_fields__, ("dataset",))
    import_tensorflow_quietly()
    return train_model(TrainConfig(dataset=dataset, **options), reporter or NULL)


def evaluate(
    models: str | Model | Sequence[str | Model] | None = None,
    *,
    data: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    reporter: Any = None,
    **options: Any,
) -> Any:
    """Evaluate one or more models (default: the newest) and compare them, as `cxr-covid
    eval` does: on the test split of the dataset each was trained on, or on `data`, a folder
    of class folders or a tree of cohorts (or a list of such folders). `options`: `split`,
    `class_map`, `confidence`, `bootstrap`, `seed`, `batch_size`, `save` (default True: the
    evaluation is kept in each model's record), `operating_point`. Returns the
    `EvaluationReport` (`.evaluations`, one per model and test set; `.to_dict()`)."""
    import inspect

    from cxr_covid.evaluation.evaluate import evaluate as evaluate_models
    from cxr_covid.progress import NULL
    from cxr_covid.tf_runtime import import_tensorflow_quietly

    allowed = inspect.signature(evaluate_models).parameters
    _check_options("evaluate", options, allowed, ("models", "data_dir", "reporter"))
    if isinstance(models, (str, Model)):
        models = [models]
    chosen = None if models is None else [m.stored if isinstance(m, Model) else m for m in models]
    import_tensorflow_quietly()
    folders = [data] if isinstance(data, (str, os.PathLike)) else list(data or [])
    data_dir = [Path(os.fspath(f)).expanduser() for f in folders] or None
    return evaluate_models(chosen, data_dir=data_dir, reporter=reporter or NULL, **options)


def audit_model(model: str | Model | None = None, *, reporter: Any = None, **options: Any) -> Any:
    """Run the shortcut audit on one model (default: the newest), as `cxr-covid audit` does.

    (Not `cxr_covid.audit`: that name is the audit's package, `cxr_covid.audit.run`.)

    `options`: `external` (folders of class folders), `class_map`, `control`,
    `control_epochs`, `fill`, `attention`, `panels`, `out`, `batch_size`, `mask_dir`,
    `source_probe` (the fields of `cxr_covid.audit.results.AuditOptions`). Returns the
    `AuditResult` (`.verdict`, `.to_dict()`); its report is written into the run folder."""
    from cxr_covid.audit.results import AuditOptions
    from cxr_covid.audit.run import run_audit
    from cxr_covid.progress import NULL
    from cxr_covid.tf_runtime import import_tensorflow_quietly

    _check_options("audit", options, AuditOptions.__dataclass_fields__, ("model",))
    if isinstance(model, Model):
        model = str(model.stored.root)
    options["external"] = [Path(os.fspath(p)) for p in options.get("external", [])]
    import_tensorflow_quietly()
    return run_audit(AuditOptions(model=model, **options), reporter or NULL)


def _check_options(
    function: str, given: dict[str, Any], allowed: Any, positional: Sequence[str]
) -> None:
    known = sorted(set(allowed) - set(positional))
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(
            f"cxr_covid.{function}: unknown option(s) {', '.join(unknown)} "
            f"(known: {', '.join(known)})"
        )
