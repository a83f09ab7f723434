"""heatmap: an empty Grad-CAM is said (line, PNG text, JSON), panels show the lung field and
the share inside it, and `--json` gives one result per image."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid import classes, models
from cxr_covid.cli import app
from cxr_covid.data.images import Preprocessing
from cxr_covid.data.lungs import fixed_lung_field, share_inside
from cxr_covid.models import store
from tests.helpers import write_blob_png
from tests.json_docs import assert_documented

runner = CliRunner()
SIZE = 24


def _model(home: Path, *, blind: bool) -> Path:
    """A tiny baseline; `blind` zeroes its last convolution so no region can raise any class
    (every Grad-CAM map is empty)."""
    import keras

    keras.utils.set_random_seed(0)
    model = models.build("baseline", SIZE, len(classes.STUDY_CLASSES))
    if blind:
        layer = model.get_layer(models.get("baseline").last_conv)
        layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_COVID_HOME", str(home))
        record = store.ModelRecord(
            id="blind" if blind else "seeing",
            architecture="baseline",
            classes=list(classes.STUDY_CLASSES),
            preprocessing=Preprocessing(image_size=SIZE).to_dict(),
            last_conv_layer=models.get("baseline").last_conv,
        )
        return store.save(model, record).root


@pytest.fixture(scope="module")
def blind_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(tmp_path_factory.mktemp("blind-home"), blind=True)


@pytest.fixture(scope="module")
def seeing_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _model(tmp_path_factory.mktemp("seeing-home"), blind=False)


def _images(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    for i, label in enumerate(classes.STUDY_CLASSES):
        write_blob_png(tmp_path / "in" / f"{i}.png", label, 48, rng)
    return tmp_path / "in"


def test_an_empty_map_is_said_on_the_line_in_the_png_and_in_json(
    blind_model: Path, tmp_path: Path
) -> None:
    inputs = _images(tmp_path)
    args = ["heatmap", str(inputs), "--model", str(blind_model), "-o", str(tmp_path / "h")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("EMPTY MAP") == 3
    overlay = Image.open(tmp_path / "h" / "0.heatmap.png")
    assert overlay.text["empty_map"] == "true"

    result = runner.invoke(app, [*args[:-1], str(tmp_path / "j"), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert_documented("heatmap", document)
    assert document["empty_maps"] == 3
    assert all(i["empty_map"] and i["inside_lungs"] is None for i in document["images"])


def test_json_gives_the_share_inside_the_lungs_per_image(
    seeing_model: Path, tmp_path: Path
) -> None:
    inputs = _images(tmp_path)
    args = ["heatmap", str(inputs), "--model", str(seeing_model), "-o", str(tmp_path / "h")]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert_documented("heatmap", document)
    assert document["lung_field"] == "fixed"
    for image in document["images"]:
        assert set(image) >= {"path", "class", "probability", "heatmap", "inside_lungs"}
        assert Path(image["heatmap"]).is_file()
        if not image["empty_map"]:
            assert 0.0 <= image["inside_lungs"] <= 1.0
    plain = runner.invoke(app, args)
    assert "inside the lungs" in plain.output


def test_share_inside_is_one_function_for_audit_and_heatmap() -> None:
    field = fixed_lung_field(20, 20)
    assert share_inside(field.astype(np.float32), field) == 1.0
    assert share_inside((~field).astype(np.float32), field) == 0.0
    assert math.isnan(share_inside(np.zeros((20, 20), np.float32), field))
