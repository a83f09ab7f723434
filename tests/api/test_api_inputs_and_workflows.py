"""The API takes PIL images and tensors, gives records / a DataFrame, and reaches training,
evaluation and the audit without importing TensorFlow at `import cxr_covid`."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import cxr_covid
from cxr_covid.errors import DependencyError, UsageError
from tests.api.conftest import TINY_ID


def test_import_exposes_the_workflows_without_tensorflow() -> None:
    code = (
        "import sys, cxr_covid\n"
        "assert callable(cxr_covid.train) and callable(cxr_covid.evaluate)\n"
        "assert callable(cxr_covid.audit_model)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_pil_images_of_every_common_mode_give_the_file_s_probabilities(
    tiny: Path, xrays: list[Path]
) -> None:
    model = cxr_covid.load_model(TINY_ID)
    path = xrays[0]  # 8-bit grey
    expected = model.predict(path).probabilities[0]
    grey = Image.open(path).convert("L")
    sixteen = Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)  # mode I;16
    assert sixteen.mode.startswith("I;16")
    images = [grey, grey.convert("RGB"), grey.convert("RGBA"), grey.convert("P"), sixteen]
    got = model.predict(images).probabilities
    np.testing.assert_allclose(got, np.repeat(expected[None], len(images), 0), atol=1e-5)
    single = model.predict(grey)  # one PIL image is one image
    assert len(single) == 1
    heat = model.gradcam(grey)
    assert heat.shape == np.asarray(grey).shape


def test_tensors_hw_hwc_and_batches(tiny: Path, xrays: list[Path]) -> None:
    import tensorflow as tf

    model = cxr_covid.load_model(TINY_ID)
    grey = np.asarray(Image.open(xrays[0]).convert("L"))
    expected = model.predict(grey).probabilities[0]
    rgb = np.stack([grey] * 3, axis=-1)
    for tensor in (tf.constant(grey), tf.constant(rgb), tf.constant(grey[..., None])):
        np.testing.assert_allclose(model.predict(tensor).probabilities[0], expected, atol=1e-5)
    batch = model.predict(tf.constant(np.stack([rgb, rgb])))
    assert len(batch) == 2


def test_other_objects_are_refused_clearly(tiny: Path) -> None:
    model = cxr_covid.load_model(TINY_ID)
    with pytest.raises(cxr_covid.InvalidImageArray, match="PIL image or a TensorFlow tensor"):
        model.predict([object()])


def test_records_and_pandas(tiny: Path, xrays: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    model = cxr_covid.load_model(TINY_ID)
    result = model.predict(xrays[:2])
    records = result.to_records()
    assert [r["source"] for r in records] == [str(p) for p in xrays[:2]]
    assert set(records[0]) == {
        "source", "predicted_class", "p_covid", "p_normal", "p_viral_pneumonia",
        "decision", "ood", "ood_score", "error",
    }  # fmt: skip

    monkeypatch.setitem(sys.modules, "pandas", None)  # as if it were not installed
    with pytest.raises(DependencyError, match="pip install pandas"):
        result.to_pandas()

    made: dict[str, Any] = {}

    class FakeFrame:
        def __init__(self, rows: list[dict[str, Any]], columns: list[str]) -> None:
            made.update(rows=rows, columns=columns)

    monkeypatch.setitem(sys.modules, "pandas", types.SimpleNamespace(DataFrame=FakeFrame))
    assert isinstance(result.to_pandas(), FakeFrame)
    assert made["rows"] == records and made["columns"][:2] == ["source", "predicted_class"]


@pytest.mark.parametrize(
    ("call", "option"),
    [
        (lambda: cxr_covid.train("dev", epoch=1), "epoch"),
        (lambda: cxr_covid.evaluate("x", bootstraps=0), "bootstraps"),
        (lambda: cxr_covid.audit_model("x", panel=0), "panel"),
    ],
)
def test_unknown_options_are_refused_with_the_known_ones(call: Any, option: str) -> None:
    with pytest.raises(UsageError, match=f"unknown option\\(s\\) {option} \\(known: "):
        call()
