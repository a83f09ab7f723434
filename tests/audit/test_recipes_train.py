"""The recipe options of `train`: recorded in the model, and (for --input) applied by every
consumer through the one decode path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data import lungs
from cxr_covid.data.images import load_for_model
from cxr_covid.inference.scoring import Scorer
from cxr_covid.models import store
from tests.helpers import build_dataset

runner = CliRunner()


def _train(*extra: str) -> dict:
    argv = ["train", "-d", "blobs", "-e", "1", "-b", "16", "--image-size", "32", "--json"]
    result = runner.invoke(app, [*argv, *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_input_lungs_is_recorded_and_applied_in_predict_and_heatmap(
    cxr_home: Path, tmp_path: Path
) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=8, size=32)
    out = _train("--input", "lungs", "--name", "lungs-only")
    assert out["record"]["preprocessing"]["input"] == "lungs"
    assert out["record"]["training"]["input"] == "lungs"
    stored = store.resolve("lungs-only")
    image = dataset.file(dataset.rows()[0])
    pixels = load_for_model(image, stored.record().prep)
    # The model's input is the film with everything outside the fixed lung field hidden.
    assert np.array_equal(
        pixels,
        lungs.apply_view(
            load_for_model(image, stored.record().prep.__class__(image_size=32)), "lungs"
        ),
    )
    assert (pixels[0, 0] == pixels[31, 31]).all() and (pixels[0, 0] == pixels[0, 31]).all()
    # What predict writes: the calibrated probabilities (train calibrates by default).
    expected = Scorer(stored.load(), stored.record())(pixels[None]).probabilities[0]
    csv_out = tmp_path / "p.csv"
    predicted = runner.invoke(app, ["predict", str(image), "-m", "lungs-only", "-o", str(csv_out)])
    assert predicted.exit_code == 0, predicted.output
    row = next(csv.DictReader(csv_out.open()))
    assert abs(float(row["p_covid"]) - float(expected[0])) < 1e-6
    heat = runner.invoke(
        app, ["heatmap", str(image), "-m", "lungs-only", "-o", str(tmp_path / "h")]
    )
    assert heat.exit_code == 0, heat.output


def test_balance_and_acquisition_are_recorded(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=8, size=32)
    # A manifest with a collection column, as `download --sources` writes it.
    text = dataset.manifest_path.read_text().splitlines()
    lines = [text[0] + ",collection"] + [
        line + ("," + ("rsna" if i % 3 == 0 else "kermany")) for i, line in enumerate(text[1:])
    ]
    dataset.manifest_path.write_text("\n".join(lines) + "\n")
    out = _train("--balance-sources", "--augment-acquisition", "--deterministic")
    training = out["record"]["training"]
    assert training["balance_sources"] is True and training["augment_acquisition"] is True
    composition = out["record"]["dataset"]["train_collections"]
    assert set(composition["normal"]) == {"rsna", "kermany"}
    assert sum(composition["covid"].values()) == out["record"]["dataset"]["train_images"] // 3


def test_bad_input_is_a_usage_error(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=32)
    result = runner.invoke(app, ["train", "-d", "blobs", "--input", "ribs"])
    assert result.exit_code == 2 and "--input" in result.stderr


def test_acquisition_augmentation_is_deterministic_under_deterministic(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=8, size=32)
    weights = []
    for name in ("acq-a", "acq-b"):
        _train("--augment-acquisition", "--deterministic", "--name", name, "-e", "2")
        weights.append(store.resolve(name).load().get_weights())
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
