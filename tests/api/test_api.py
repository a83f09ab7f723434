"""The public Python API: load_model, predict (paths and arrays), gradcam, listings."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import cxr_covid
from cxr_covid.cli import app
from cxr_covid.errors import ImageError, ModelError, UsageError
from cxr_covid.models.store import ModelRecord
from tests.api.conftest import TINY_ID

runner = CliRunner()


def test_import_stays_cheap_and_api_is_lazy() -> None:
    code = (
        "import sys, cxr_covid\n"
        "assert callable(cxr_covid.load_model)\n"
        "assert callable(cxr_covid.list_models) and callable(cxr_covid.list_datasets)\n"
        "print('tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"]


def test_load_by_id_by_folder_and_newest(tiny: Path) -> None:
    by_id = cxr_covid.load_model(TINY_ID)
    by_folder = cxr_covid.load_model(tiny)
    newest = cxr_covid.load_model()
    assert by_id.id == by_folder.id == newest.id == TINY_ID
    assert isinstance(by_id.record, ModelRecord)
    assert by_id.record.classes == ["covid", "normal", "viral_pneumonia"]
    assert by_id.preprocessing.image_size == 24


def test_unknown_model_names_the_known_ones(tiny: Path) -> None:
    with pytest.raises(ModelError, match="tiny-baseline"):
        cxr_covid.load_model("nope")


def test_predict_paths_matches_the_cli_csv(tiny: Path, xrays: list[Path], tmp_path: Path) -> None:
    model = cxr_covid.load_model(TINY_ID)
    result = model.predict([str(p) for p in xrays])
    assert len(result) == len(xrays)
    assert result.probabilities.shape == (len(xrays), 3)
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    out = tmp_path / "cli.csv"
    cli = runner.invoke(app, ["predict", *map(str, xrays), "--model", TINY_ID, "--out", str(out)])
    assert cli.exit_code == 0, cli.stderr
    with out.open() as handle:
        rows = list(csv.DictReader(handle))
    for item, row in zip(result, rows, strict=True):
        assert item.source == row["path"]
        assert item.label == row["predicted_class"]
        for cls, p in item.probabilities.items():
            assert p == pytest.approx(float(row[f"p_{cls}"]), abs=1e-7)
        assert item.vector.argmax() == model.classes.index(item.label)


def test_arrays_in_every_accepted_form_match_the_file(tiny: Path, xrays: list[Path]) -> None:
    model = cxr_covid.load_model(TINY_ID)
    path = xrays[0]  # 8-bit grayscale PNG
    gray = np.asarray(Image.open(path))
    assert gray.ndim == 2
    from_file = model.predict(path).probabilities[0]
    forms = [
        gray,
        gray[:, :, None],
        np.repeat(gray[:, :, None], 3, axis=2),
        gray.astype(np.float32) / 255.0,
        (np.repeat(gray[:, :, None], 3, axis=2) / 255.0).astype(np.float64),
    ]
    result = model.predict(forms)
    assert [r.source for r in result] == [f"array[{i}]" for i in range(len(forms))]
    for row in result.probabilities:
        np.testing.assert_allclose(row, from_file, atol=1e-6)


def test_mixed_paths_and_arrays_keep_input_order(tiny: Path, xrays: list[Path]) -> None:
    model = cxr_covid.load_model(TINY_ID)
    arr = np.asarray(Image.open(xrays[1]).convert("RGB"))
    result = model.predict([xrays[0], arr, xrays[2]])
    assert [r.source for r in result] == [str(xrays[0]), "array[1]", str(xrays[2])]
    np.testing.assert_allclose(
        result.probabilities[1], model.predict(xrays[1]).probabilities[0], atol=1e-6
    )
    batch = np.stack([arr, arr])  # a 4-D array is a batch
    assert len(model.predict(batch)) == 2


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((8, 8, 4), np.uint8), "shape"),
        (np.zeros((8,), np.uint8), "shape"),
        (np.zeros((0, 8), np.uint8), "empty"),
        (np.full((8, 8), 2.0, np.float32), "0-1"),
        (np.full((8, 8), -0.1, np.float32), "0-1"),
        (np.full((8, 8), np.nan, np.float32), "NaN"),
        (np.zeros((8, 8), np.int16), "dtype"),
        (np.zeros((8, 8), np.uint16), "dtype"),
    ],
)
def test_bad_arrays_raise_a_clear_error(tiny: Path, array: np.ndarray, message: str) -> None:
    model = cxr_covid.load_model(TINY_ID)
    with pytest.raises(cxr_covid.InvalidImageArray, match=message) as caught:
        model.predict(array)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, UsageError)


def test_bad_input_types_raise(tiny: Path) -> None:
    model = cxr_covid.load_model(TINY_ID)
    with pytest.raises(cxr_covid.InvalidImageArray, match="int"):
        model.predict([3])


def test_unreadable_file_raises_or_is_kept(tiny: Path, xrays: list[Path], tmp_path: Path) -> None:
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    model = cxr_covid.load_model(TINY_ID)
    with pytest.raises(ImageError, match=r"broken\.png"):
        model.predict([xrays[0], bad])
    kept = model.predict([xrays[0], bad], errors="keep")
    assert kept[0].label is not None
    assert kept[1].label is None and "broken.png" in (kept[1].error or "")
    assert np.isnan(kept.probabilities[1]).all()


def test_gradcam_is_at_image_size_and_follows_target(tiny: Path, xrays: list[Path]) -> None:
    model = cxr_covid.load_model(TINY_ID)
    path = xrays[4]
    height, width = np.asarray(Image.open(path)).shape[:2]
    cam = model.gradcam(str(path), target="covid")
    assert cam.shape == (height, width)
    assert cam.dtype == np.float32
    assert float(cam.min()) >= 0.0 and float(cam.max()) <= 1.0
    # The same map heatmap's core makes, from an array of the same pixels.
    again = model.gradcam(np.asarray(Image.open(path).convert("RGB")), target="Covid-19")
    np.testing.assert_allclose(cam, again, atol=1e-6)
    with pytest.raises(UsageError, match="unknown class"):
        model.gradcam(path, target="flu")


def test_list_models_and_datasets(tiny: Path, cxr_home: Path) -> None:
    from tests.helpers import build_dataset

    assert [m.id for m in cxr_covid.list_models()] == [TINY_ID]
    assert cxr_covid.list_datasets() == []
    build_dataset(cxr_home, "blobs", per_class=3)
    [dataset] = cxr_covid.list_datasets()
    assert dataset.name == "blobs" and dataset.images == 9


def test_a_stored_operating_point_decides_and_the_label_stays_the_argmax(
    tiny: Path, xrays: list[Path]
) -> None:
    from cxr_covid.inference.operating_point import OperatingPoint
    from cxr_covid.models import store

    plain = cxr_covid.load_model(TINY_ID).predict(xrays)
    assert [r.decision for r in plain] == [r.label for r in plain]  # no point: the argmax
    assert all(r.ood is None and r.ood_score is None for r in plain)  # no guard fitted

    stored = store.resolve(TINY_ID)
    record = stored.record()
    # COVID-19 from a probability of 0 up: every image is decided COVID-19.
    record.operating_point = OperatingPoint(
        cls="covid", criterion="threshold", target=0.0, threshold=0.0, temperature=1.0,
        chosen_on="threshold given", validation=None, created="now",
    ).to_dict()  # fmt: skip
    stored.write_record(record)
    decided = cxr_covid.load_model(TINY_ID).predict(xrays)
    assert [r.decision for r in decided] == ["covid"] * len(xrays)
    assert [r.label for r in decided] == [r.label for r in plain]
    np.testing.assert_allclose(decided.probabilities, plain.probabilities, atol=1e-6)
