"""`models export`: a stored model as a TensorFlow SavedModel, ONNX or LiteRT file.

Export goes through Keras' own `model.export(path, format=...)`. The converters are optional
extras (`cxr-covid[onnx]`: tf2onnx + onnxruntime; `cxr-covid[litert]`: ai-edge-litert); a
missing one is a DependencyError (exit 9) before any work.

What a user of the exported file needs to get the same numbers travels beside it in
`preprocessing.json` (see `preprocessing_spec`): the model takes float32 NHWC pixel values in
0-255 (the 1/255 scaling is inside the model), resized with the recorded Pillow filter, then
intensity-standardised (`train --normalize`) and given the input view (`train --input`) as
recorded. Those two steps stay outside the graph, on purpose: CLAHE has no TensorFlow op that
the ONNX and LiteRT converters take, and one input contract for every format and option is
simpler to follow than a graph that does some steps and not others; preprocessing.json names
each step and the function that does it, and the export is verified on inputs made that way.

Every export verifies itself: the artifact is reloaded with its own runtime (onnxruntime, the
TensorFlow SavedModel loader, the LiteRT interpreter), fed the same preprocessed tensors from
8 images as the Keras model, and the largest absolute probability difference is reported;
above `TOLERANCE` the export is refused (ModelError) and nothing is left at the destination.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic
from cxr_covid.about import __version__, install_hint
from cxr_covid.data.images import is_image_file, load_for_model
from cxr_covid.data.normalize import describe as describe_normalize
from cxr_covid.errors import DependencyError, ModelError, UsageError
from cxr_covid.models.store import ModelRecord, StoredModel
from cxr_covid.tf_runtime import native_stderr_silenced

TOLERANCE = 1e-4
CHECK_IMAGES = 8
PREPROCESSING_FILE = "preprocessing.json"
PREPROCESSING_FORMAT = 1

# format -> (Keras' name for it, file written inside the output folder, None = the folder)
FORMATS: dict[str, tuple[str, str | None]] = {
    "savedmodel": ("tf_saved_model", None),
    "onnx": ("onnx", "model.onnx"),
    "litert": ("litert", "model.tflite"),
}

# format -> [(module, pip name)] needed to export and verify, and the extra that brings them.
_NEEDS: dict[str, tuple[list[tuple[str, str]], str | None]] = {
    "savedmodel": ([], None),
    "onnx": ([("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")], "onnx"),
    "litert": ([("ai_edge_litert", "ai-edge-litert")], "litert"),
}

# Record fields other parts of the tool may add that change what a prediction means; copied
# into preprocessing.json when the record has them (calibration temperature, OOD statistics,
# lung-field input mode...).
OPTIONAL_RECORD_FIELDS = ("calibration", "ood", "operating_point")


@dataclass
class ExportResult:
    model_id: str
    format: str
    out: Path  # the folder holding the artifact and preprocessing.json
    artifact: Path
    max_difference: float
    check_images: int
    check_source: str  # where the 8 check images came from
    seconds: float


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise UsageError(f"unknown export format {fmt!r} (choose from: {', '.join(FORMATS)})")
    return fmt


def check_installed(fmt: str) -> None:
    """Raise DependencyError naming the extra when a converter or runtime is not installed.

    Looks the modules up without importing them (tf2onnx imports TensorFlow, ~10 s), so the
    CLI calls it before anything heavy; `check_dependencies` then imports them for real.
    """
    modules, extra = _NEEDS[check_format(fmt)]
    missing = [pip_name for module, pip_name in modules if not _findable(module)]
    if missing:
        raise _missing(fmt, missing, extra)


def _findable(module: str) -> bool:
    if module in sys.modules:
        return sys.modules[module] is not None  # None: blocked, as `import` would find it
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_dependencies(fmt: str) -> None:
    """Raise DependencyError naming the extra when a converter or runtime cannot be imported."""
    modules, extra = _NEEDS[check_format(fmt)]
    missing = []
    for module, pip_name in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(pip_name)
    if missing:
        raise _missing(fmt, missing, extra)


def _missing(fmt: str, missing: list[str], extra: str | None) -> DependencyError:
    return DependencyError(
        f"exporting to {fmt} needs {', '.join(missing)}: {install_hint(extra or fmt)}"
    )


def preprocessing_spec(record: ModelRecord, artifact: str | None = None) -> dict[str, Any]:
    """preprocessing.json: everything `predict` applies between a file and the model."""
    prep = record.prep
    size = prep.image_size
    spec: dict[str, Any] = {
        "format": PREPROCESSING_FORMAT,
        "model_id": record.id,
        "architecture": record.architecture,
        "artifact": artifact,
        "classes": list(record.classes),
        "output": "softmax probabilities, one per class, in the order of `classes`",
        "input": {
            "shape": [None, size, size, 3],
            "layout": "NHWC",
            "dtype": "float32",
            "value_range": [0, 255],
            "scaling": "none before the model: it divides by 255 itself",
        },
        "image_size": size,
        "resize": {
            "filter": prep.resize,
            "library": "Pillow",
            "to": [size, size],
            "keep_aspect_ratio": False,
        },
        "channels": "RGB; a grayscale image is copied into all three channels",
        # After resizing: "full" feeds the whole film; "lungs" (train --input lungs) fills
        # everything outside the fixed lung field with its mean intensity (cxr_covid.data.lungs).
        "input_view": prep.input,
        # After resizing, before the input view: train --normalize (cxr_covid.data.normalize).
        # Not inside the exported graph: apply it to the resized pixels first.
        "normalize": {"mode": prep.normalize, "applied": describe_normalize(prep.normalize)},
        "decode": (
            "8-bit as stored; 16-bit scaled linearly from the bit depth the values use; "
            "transparent regions composited onto black; EXIF orientation applied; DICOM: "
            "modality then VOI LUT, scaled min-max to 0-255, MONOCHROME1 inverted"
        ),
        "preprocessing_record": dict(record.preprocessing),
        "tool": f"cxr-covid {__version__}",
    }
    as_dict = record.to_dict()
    for name in OPTIONAL_RECORD_FIELDS:
        value = as_dict.get(name, getattr(record, name, None))
        if value not in (None, {}, []):
            spec[name] = value
    return spec


def check_images(record: ModelRecord, given: Sequence[Path] = ()) -> tuple[np.ndarray, str]:
    """(8, S, S, 3) float32 check tensors, and a word on where they came from.

    The files given, else the first test images of the model's dataset when it is in the
    home, else seeded synthetic radiograph-like images (so an export always verifies).
    """
    prep = record.prep
    files = list(given)
    source = "the images given"
    if not files:
        files = _dataset_images(record)
        source = f"test images of dataset {record.dataset.get('name')!r}"
    pixels: list[np.ndarray] = []
    for path in files:
        if len(pixels) == CHECK_IMAGES:
            break
        pixels.append(load_for_model(path, prep))
    if not pixels:
        source = "synthetic images (seeded; no dataset images found)"
    rng = np.random.default_rng(0)
    size = prep.image_size
    while len(pixels) < CHECK_IMAGES:
        pixels.append(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return np.stack(pixels).astype(np.float32), source


def _dataset_images(record: ModelRecord) -> list[Path]:
    from cxr_covid.data.dataset import dataset_path

    name = record.dataset.get("name")
    if not isinstance(name, str) or not name:
        return []
    try:
        root = dataset_path(name)
        from cxr_covid.data.dataset import Dataset

        rows = Dataset(root).rows() if (root / "manifest.csv").is_file() else []
    except Exception:  # an unreadable dataset only means we check with synthetic images
        return []
    test = [r for r in rows if r.split == "test"] or rows
    return [root / r.path for r in test if is_image_file(Path(r.path))][: CHECK_IMAGES * 2]


def export_model(
    stored: StoredModel,
    fmt: str,
    out: Path,
    *,
    images: Sequence[Path] = (),
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ExportResult:
    """Export `stored` to the folder `out` (artifact + preprocessing.json), verified."""
    import time

    check_format(fmt)
    out = Path(out).expanduser()
    if out.exists() and not force:
        raise UsageError(f"{out} exists: choose another --out, or add --force to replace it")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file; --out names a folder to create")
    check_dependencies(fmt)
    say = progress or (lambda message: None)
    record = stored.record()
    tensors, source = check_images(record, images)
    start = time.perf_counter()
    model = stored.load()
    # Also builds the loaded model's call graph, which Keras' ONNX export requires.
    expected = np.asarray(model(tensors, training=False), dtype=np.float32)
    try:
        difference = _build(model, record, fmt, out, tensors, expected, force, say)
    except OSError as exc:
        raise UsageError(f"cannot write {out} ({exc.strerror or exc})") from exc
    seconds = time.perf_counter() - start
    filename = FORMATS[fmt][1]
    final_artifact = out / filename if filename else out
    return ExportResult(
        record.id, fmt, out, final_artifact, difference, len(tensors), source, seconds
    )


def _build(
    model: Any,
    record: ModelRecord,
    fmt: str,
    out: Path,
    tensors: np.ndarray,
    expected: np.ndarray,
    force: bool,
    say: Callable[[str], None],
) -> float:
    """Export into a hidden folder, verify, write preprocessing.json, rename into place;
    returns the largest probability difference from Keras."""
    keras_format, filename = FORMATS[fmt]
    with atomic.building_dir(out, replace=force) as tmp:
        artifact = tmp / filename if filename else tmp / "savedmodel"
        say(f"exporting {record.id} to {fmt}")
        _keras_export(model, artifact, keras_format)
        if filename is None:
            # SavedModel is a folder: its files become the output folder's contents.
            for item in artifact.iterdir():
                shutil.move(str(item), tmp / item.name)
            artifact.rmdir()
            artifact = tmp
        say(f"verifying with the {fmt} runtime on {len(tensors)} images")
        try:
            got = run_artifact(fmt, artifact, tensors)
        except Exception as exc:
            raise ModelError(
                f"the exported {fmt} file does not run in its own runtime "
                f"({type(exc).__name__}: {exc}); nothing was written"
            ) from exc
        difference = float(np.max(np.abs(got - expected)))
        if not difference <= TOLERANCE:  # also catches NaN
            raise ModelError(
                f"the {fmt} export differs from the Keras model by {difference:.3g} in "
                f"probability (limit {TOLERANCE:g}); nothing was written"
            )
        atomic.write_json(tmp / PREPROCESSING_FILE, preprocessing_spec(record, filename))
    return difference


def _keras_export(model: Any, path: Path, keras_format: str) -> None:
    import io
    import warnings

    # The converters print pages of progress to stdout; the tool's own output says what
    # matters (and stdout may carry --json).
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        try:
            model.export(str(path), format=keras_format, verbose=False)
        except ImportError as exc:
            raise DependencyError(
                f"export to {keras_format} needs a missing module ({exc}); see "
                "docs/commands/models.md for the extras"
            ) from exc
        except Exception as exc:  # a converter's failure is this model's, said in one line
            raise ModelError(
                f"Keras could not export this model to {keras_format} ({type(exc).__name__}: {exc})"
            ) from exc


def run_artifact(fmt: str, artifact: Path, tensors: np.ndarray) -> np.ndarray:
    """Run an exported artifact with its own runtime on (n, S, S, 3) float32 tensors."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(artifact), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.asarray(session.run(None, {name: tensors})[0], dtype=np.float32)
    if fmt == "litert":
        from ai_edge_litert.interpreter import Interpreter

        with native_stderr_silenced():  # LiteRT's C++ INFO line about its CPU delegate
            interpreter = Interpreter(model_path=str(artifact))
            inp = interpreter.get_input_details()[0]
            interpreter.resize_tensor_input(inp["index"], list(tensors.shape))
            interpreter.allocate_tensors()
            interpreter.set_tensor(inp["index"], tensors)
            interpreter.invoke()
            output = interpreter.get_output_details()[0]
            return np.asarray(interpreter.get_tensor(output["index"]), dtype=np.float32)
    import tensorflow as tf

    loaded = tf.saved_model.load(str(artifact))
    return np.asarray(loaded.serve(tf.constant(tensors)), dtype=np.float32)
