"""`models export`: each format round-trips through its own runtime on a tiny model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_DEPENDENCY, EXIT_USAGE
from cxr_covid.models import store
from cxr_covid.sharing.export import TOLERANCE, check_images, run_artifact
from tests.api.conftest import TINY_ID
from tests.json_docs import assert_documented

runner = CliRunner()


@pytest.mark.parametrize(
    ("fmt", "artifact"),
    [("savedmodel", "saved_model.pb"), ("onnx", "model.onnx"), ("litert", "model.tflite")],
)
def test_export_round_trip(
    tiny: Path, xrays: list[Path], tmp_path: Path, fmt: str, artifact: str
) -> None:
    out = tmp_path / f"exported-{fmt}"
    args = ["models", "export", TINY_ID, "--format", fmt, "--out", str(out), "--json"]
    for image in xrays:
        args += ["--check-image", str(image)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert_documented("models-export", report)
    assert report["check_images"] == 8
    assert report["check_source"] == "the images given"
    assert 0.0 <= report["max_difference"] <= TOLERANCE
    assert (out / artifact).is_file()

    spec = json.loads((out / "preprocessing.json").read_text())
    assert spec["classes"] == ["covid", "normal", "viral_pneumonia"]
    assert spec["image_size"] == 24 and spec["resize"]["filter"] == "nearest"
    assert spec["input"]["value_range"] == [0, 255]

    # A user of the artifact alone, following preprocessing.json, gets Keras' numbers.
    stored = store.resolve(TINY_ID)
    tensors, _ = check_images(stored.record(), xrays)
    keras_probs = np.asarray(stored.load()(tensors, training=False))
    runtime_path = out if fmt == "savedmodel" else out / artifact
    np.testing.assert_allclose(
        run_artifact(fmt, runtime_path, tensors), keras_probs, atol=TOLERANCE
    )


def test_export_refuses_to_overwrite_without_force(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "there"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = runner.invoke(app, ["models", "export", TINY_ID, "--out", str(out)])
    assert result.exit_code == EXIT_USAGE
    assert "--force" in result.stderr
    assert (out / "keep.txt").read_text() == "mine"


def test_unknown_format_is_a_usage_error(tiny: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["models", "export", TINY_ID, "--format", "coreml"])
    assert result.exit_code == EXIT_USAGE
    assert "'coreml' is not one of 'savedmodel', 'onnx', 'litert'" in result.stderr


@pytest.mark.parametrize(
    ("fmt", "module", "extra"),
    [("onnx", "onnxruntime", "onnx"), ("litert", "ai_edge_litert", "litert")],
)
def test_missing_converter_exits_9_with_the_extra(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str, module: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    out = tmp_path / "never"
    result = runner.invoke(app, ["models", "export", TINY_ID, "--format", fmt, "--out", str(out)])
    assert result.exit_code == EXIT_DEPENDENCY
    assert f"pip install 'cxr-covid[{extra}]'" in result.stderr
    assert not out.exists()


def test_export_checks_with_dataset_test_images_by_default(
    tiny: Path, cxr_home: Path, tmp_path: Path
) -> None:
    from tests.helpers import build_dataset

    build_dataset(cxr_home, "blobs", per_class=5, size=30)
    stored = store.resolve(TINY_ID)
    record = stored.record()
    record.dataset = {"name": "blobs"}
    stored.write_record(record)
    tensors, source = check_images(record)
    assert "dataset 'blobs'" in source
    assert tensors.shape == (8, 24, 24, 3)
    # Real images, not the synthetic fallback: blob images have dark noisy backgrounds.
    assert float(tensors.mean()) < 120


def test_an_export_that_disagrees_with_keras_is_refused(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard itself: a runtime off by more than 1e-4 fails the export, leaving nothing."""
    from cxr_covid.errors import EXIT_MODEL
    from cxr_covid.sharing import export

    real = export.run_artifact

    def drifting(fmt: str, artifact: Path, tensors: np.ndarray) -> np.ndarray:
        return real(fmt, artifact, tensors) + 2 * TOLERANCE

    monkeypatch.setattr(export, "run_artifact", drifting)
    out = tmp_path / "drift"
    result = runner.invoke(app, ["models", "export", TINY_ID, "--out", str(out)])
    assert result.exit_code == EXIT_MODEL
    assert "differs from the Keras model by 0.0002" in result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]
