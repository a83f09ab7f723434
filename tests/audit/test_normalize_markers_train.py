"""`train --normalize` and `--augment-markers` end to end on a tiny dataset: recorded, the
normalisation applied by predict from the record, the markers only ever in training."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data import pipeline
from cxr_covid.data.images import Preprocessing, apply_input, load_for_model
from cxr_covid.inference.scoring import Scorer
from cxr_covid.models import store
from cxr_covid.training import acquisition, markers
from tests.helpers import build_dataset

runner = CliRunner()


def test_normalize_and_markers_train_record_and_predict(
    cxr_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=8, size=32)
    transforms: list[tuple[bool, Any]] = []
    real_make_dataset = pipeline.make_dataset

    def spy(*args: Any, **kwargs: Any) -> Any:
        transforms.append((kwargs.get("shuffle", False), kwargs.get("transform")))
        return real_make_dataset(*args, **kwargs)

    monkeypatch.setattr(pipeline, "make_dataset", spy)
    argv = ["train", "-d", "blobs", "-e", "1", "-b", "16", "--image-size", "32", "--json"]
    extra = ["--normalize", "equalize", "--augment-markers", "--augment-acquisition"]
    result = runner.invoke(app, [*argv, *extra, "--name", "eq-marks"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["record"]
    assert record["preprocessing"]["normalize"] == "equalize"
    assert record["training"]["normalize"] == "equalize"
    assert record["training"]["augment_markers"] is True
    # One transformed pipeline, the shuffled training one; validation is never marked.
    assert [shuffle for shuffle, t in transforms if t is not None] == [True]
    assert all(t is None for shuffle, t in transforms if not shuffle)

    # Predict reads the normalisation from the record, and never draws a marker.
    def no_markers(*_: object) -> None:
        raise AssertionError("markers outside training")

    monkeypatch.setattr(markers, "mark_image", no_markers)
    stored = store.resolve("eq-marks")
    assert stored.record().prep == Preprocessing(image_size=32, normalize="equalize")
    image = dataset.file(dataset.rows()[0])
    pixels = load_for_model(image, stored.record().prep)
    assert not np.array_equal(pixels, load_for_model(image, Preprocessing(image_size=32)))
    expected = Scorer(stored.load(), stored.record())(pixels[None]).probabilities[0]
    out = tmp_path / "p.csv"
    predicted = runner.invoke(app, ["predict", str(image), "-m", "eq-marks", "-o", str(out)])
    assert predicted.exit_code == 0, predicted.output
    row = next(csv.DictReader(out.open()))
    assert abs(float(row["p_covid"]) - float(expected[0])) < 1e-6
    evaluated = runner.invoke(app, ["eval", "eq-marks", "--json"])
    assert evaluated.exit_code == 0, evaluated.output


def test_bad_normalize_is_a_usage_error(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=32)
    result = runner.invoke(app, ["train", "-d", "blobs", "--normalize", "gamma"])
    assert result.exit_code == 2 and "--normalize" in result.stderr


def test_augmentations_act_on_the_film_before_normalize_and_view(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Markers and re-acquisition change the film as acquired; the model's view (--normalize,
    --input) comes last, as at inference. Before the fix they were drawn over cached,
    already-equalised pixels (and into the lungs view's flat fill)."""
    dataset = build_dataset(cxr_home, "blobs", per_class=8, size=32)
    seen: list[tuple[Any, Any]] = []
    real_make_dataset = pipeline.make_dataset

    def spy(cached: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("transform") is not None:
            seen.append((cached, kwargs["transform"]))
        return real_make_dataset(cached, *args, **kwargs)

    monkeypatch.setattr(pipeline, "make_dataset", spy)
    extra = ["--normalize", "equalize", "--input", "lungs", "--augment-markers"]
    argv = ["train", "-d", "blobs", "-e", "1", "-b", "16", "--image-size", "32", "--json"]
    result = runner.invoke(app, [*argv, "--augment-acquisition", *extra, "--name", "order"])
    assert result.exit_code == 0, result.output
    seed = json.loads(result.stdout)["record"]["training"]["seed"]
    (cached, transform), *_ = seen
    acquired = pipeline.cache_split(dataset, "train", Preprocessing(image_size=32))
    viewed = pipeline.cache_split(
        dataset, "train", Preprocessing(image_size=32, normalize="equalize", input="lungs")
    )
    keys = np.arange(6, dtype=np.int64)
    with cached.reader() as reader, acquired.reader() as raw, viewed.reader() as view:
        pixels, _ = reader.read(keys)
        assert np.array_equal(pixels, raw.read(keys)[0])  # the cache holds the film as acquired
        assert not np.array_equal(pixels, view.read(keys)[0])
    changed = markers.batch_transform(seed, then=acquisition.batch_transform(seed))(pixels, keys)
    prep = Preprocessing(image_size=32, normalize="equalize", input="lungs")
    expected = np.stack([apply_input(image, prep) for image in changed])
    assert np.array_equal(transform(pixels, keys), expected)
