"""Issue 19's recipe options without training: `--normalize` (one decode path for every
reader, recorded, exported as documented) and `--augment-markers` (margins only, seeded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_covid.api import pixels_from_array
from cxr_covid.data import normalize, pipeline
from cxr_covid.data.images import Preprocessing, apply_input, load_for_model, read_image, resize
from cxr_covid.inference.batches import load_batches
from cxr_covid.models import store
from cxr_covid.sharing.export import check_images, preprocessing_spec
from cxr_covid.training import acquisition, markers
from cxr_covid.training.config import TrainConfig
from cxr_covid.training.fit import _recipe
from tests.helpers import build_dataset

MODES = normalize.NORMALIZE_MODES


def _low_contrast(size: int = 48, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    gray = np.clip(rng.normal(100, 8, (size, size)), 80, 130).astype(np.uint8)
    gray[: size // 3] += 20  # some structure for CLAHE's tiles
    return np.repeat(gray[:, :, None], 3, axis=2)


# --- --normalize ----------------------------------------------------------------------------


def test_equalize_spreads_the_histogram_with_the_classic_table() -> None:
    pixels = _low_contrast()
    out = normalize.normalize(pixels, "equalize")
    gray = pixels[:, :, 0]
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    assert (out[:, :, 0] == out[:, :, 2]).all()
    assert out.min() == 0 and out.max() == 255  # 80..130 stretched to the full range
    # The OpenCV rule, computed here in floating point: round((cdf - cdf_min) / (n - cdf_min)).
    cdf = np.cumsum(np.bincount(gray.ravel(), minlength=256))
    low = cdf[gray.min()]
    table = np.floor((cdf - low) / (gray.size - low) * 255 + 0.5).clip(0, 255)
    assert np.array_equal(out[:, :, 0], table[gray].astype(np.uint8))
    # Monotone: a brighter input pixel is never darker after.
    order = np.argsort(gray.ravel(), kind="stable")
    assert (np.diff(out[:, :, 0].ravel()[order].astype(int)) >= 0).all()
    flat = np.full((8, 8, 3), 77, np.uint8)
    assert np.array_equal(normalize.normalize(flat, "equalize"), flat)


def test_clahe_is_scikit_images_adaptive_equalisation() -> None:
    from skimage import exposure

    pixels = _low_contrast()
    out = normalize.normalize(pixels, "clahe")
    assert out.dtype == np.uint8 and (out[:, :, 0] == out[:, :, 1]).all()
    expected = np.rint(exposure.equalize_adapthist(pixels[:, :, 0], clip_limit=0.01) * 255)
    assert np.array_equal(out[:, :, 0], expected.astype(np.uint8))
    assert out[:, :, 0].std() > 2 * pixels[:, :, 0].std()
    assert normalize.normalize(pixels, "none") is pixels


def test_colour_input_is_standardised_on_its_luminance() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    luminance = np.asarray(Image.fromarray(rgb).convert("L"))
    out = normalize.normalize(rgb, "equalize")
    assert np.array_equal(out[:, :, 1], normalize.equalize(luminance))


def test_the_record_round_trips_the_option_and_an_old_record_means_none() -> None:
    prep = Preprocessing(image_size=32, normalize="clahe")
    assert Preprocessing.from_dict(prep.to_dict()) == prep
    old = {"image_size": 32, "resize": "nearest", "color": "rgb", "input": "full"}
    assert Preprocessing.from_dict(old).normalize == "none"
    record = store.ModelRecord(
        id="m", architecture="baseline", classes=["covid", "normal"],
        preprocessing=prep.to_dict(), last_conv_layer="c",
    )  # fmt: skip
    again = store.ModelRecord.from_dict(record.to_dict())
    assert again.prep.normalize == "clahe"
    from cxr_covid.sharing import card

    assert "scikit-image exposure.equalize_adapthist" in card.render(again)
    assert "--normalize" not in card.render(
        store.ModelRecord.from_dict({**record.to_dict(), "preprocessing": old})
    )
    with pytest.raises(ValueError, match="normalize"):
        Preprocessing(normalize="gamma")
    # A damaged or future record says so in one line instead of failing inside a prediction.
    from cxr_covid.errors import ModelError

    damaged = {**record.to_dict(), "preprocessing": {**prep.to_dict(), "normalize": "gamma"}}
    with pytest.raises(ModelError, match="broken model record: preprocessing: unknown normalize"):
        store.ModelRecord.from_dict(damaged)


def test_bad_normalize_is_refused_before_training() -> None:
    from cxr_covid.errors import UsageError

    with pytest.raises(UsageError, match="--normalize"):
        TrainConfig(dataset="d", normalize="gamma").validate()


@pytest.mark.parametrize("mode", MODES)
def test_training_and_every_predict_path_see_identical_arrays(
    cxr_home: Path, tmp_path: Path, mode: str
) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=3, size=40)
    # A real-looking RGB file of another size, so resizing and the colour path both run.
    rgb = tmp_path / "film.png"
    Image.fromarray(_low_contrast(56, seed=3)).convert("RGB").save(rgb)
    prep = Preprocessing(image_size=32, normalize=mode)
    cached = pipeline.cache_split(dataset, "train", prep, workers=1)
    with cached.reader() as reader:
        train_pixels, _ = reader.read(np.arange(cached.count))
    train_files = [dataset.file(r) for r in pipeline.split_rows(dataset.rows(), "train")]
    batch = next(load_batches([*train_files, rgb], prep, batch_size=64, workers=2))
    assert np.array_equal(batch.pixels[:-1], train_pixels)  # train cache == predict/eval
    for path, pixels in zip([*train_files, rgb], batch.pixels, strict=True):
        assert np.array_equal(load_for_model(path, prep), pixels)  # audit, export checks
        decoded = read_image(path)
        heatmap_and_api = apply_input(resize(decoded, 32, prep.resize), prep)
        assert np.array_equal(heatmap_and_api, pixels)  # heatmap / Model.gradcam
        assert np.array_equal(pixels_from_array(decoded, prep), pixels)  # Model.predict(array)
    plain = load_for_model(rgb, Preprocessing(image_size=32))
    assert np.array_equal(batch.pixels[-1], plain) == (mode == "none")


def test_the_cache_keeps_each_normalisation_apart(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=2, size=24)
    rows, classes = dataset.rows(), pipeline.dataset_classes(dataset.rows())
    keys = {
        pipeline.cache_key(rows, Preprocessing(image_size=24, normalize=m), classes) for m in MODES
    }
    assert len(keys) == 3
    # The default keeps the key a cache had before the option existed.
    assert pipeline.cache_key(rows, Preprocessing(image_size=24), classes) in keys


@pytest.mark.parametrize("mode", ["equalize", "clahe"])
def test_export_documents_the_step_and_verifies_on_normalised_inputs(
    cxr_home: Path, tmp_path: Path, mode: str
) -> None:
    images = []
    for i in range(3):
        path = tmp_path / f"x{i}.png"
        Image.fromarray(_low_contrast(40, seed=i)[:, :, 0]).save(path)
        images.append(path)
    prep = Preprocessing(image_size=24, normalize=mode)
    record = store.ModelRecord(
        id="m", architecture="baseline", classes=["covid", "normal"],
        preprocessing=prep.to_dict(), last_conv_layer="c",
    )  # fmt: skip
    spec = preprocessing_spec(record, "model.onnx")
    assert spec["normalize"]["mode"] == mode
    assert spec["normalize"]["applied"] == normalize.describe(mode)
    assert spec["preprocessing_record"]["normalize"] == mode
    # The exported artifact is checked against Keras on exactly the tensors predict makes.
    tensors, _ = check_images(record, images)
    for row, path in enumerate(images):
        assert np.array_equal(tensors[row], load_for_model(path, prep).astype(np.float32))
        assert not np.array_equal(
            tensors[row], load_for_model(path, Preprocessing(image_size=24)).astype(np.float32)
        )


# --- --augment-markers ----------------------------------------------------------------------


def _film(size: int, seed: int = 0) -> np.ndarray:
    gray = np.random.default_rng(seed).integers(40, 140, (size, size), dtype=np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


@pytest.mark.parametrize("size", [32, 64, 224])
def test_markers_change_only_the_margins(size: int) -> None:
    film = _film(size)
    centre = slice(size // 4, size - size // 4)
    changed = 0
    for key in range(120):
        out = markers.mark_image(film, 5, key)
        assert out.shape == film.shape and out.dtype == np.uint8
        assert np.array_equal(out[centre, centre], film[centre, centre]), key
        changed += not np.array_equal(out, film)
    assert 0.5 * 120 < changed < 120  # most films get a mark, not all


def test_markers_are_bright_and_seeded_per_image() -> None:
    film = _film(64)
    first = markers.mark_image(film, 5, 10)
    assert np.array_equal(first, markers.mark_image(film, 5, 10))
    marked = [k for k in range(10, 40) if not np.array_equal(markers.mark_image(film, 5, k), film)]
    outs = {markers.mark_image(film, 5, k).tobytes() for k in marked}
    assert len(outs) == len(marked)  # every key its own marks
    assert any(
        not np.array_equal(markers.mark_image(film, 5, k), markers.mark_image(film, 6, k))
        for k in marked
    )
    diff = markers.mark_image(film, 5, marked[0]).astype(int) - film.astype(int)
    assert diff.max() > 30  # pasted marks are brighter than the film


def test_markers_reach_every_class_through_the_training_pipeline(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=8, size=32)
    cached = pipeline.cache_split(dataset, "train", Preprocessing(image_size=32), workers=1)
    with cached.reader() as reader:
        raw, labels = reader.read(np.arange(cached.count))
        data = pipeline.make_dataset(
            cached, reader, global_batch=cached.count, shuffle=False,
            transform=markers.batch_transform(3),
        )  # fmt: skip
        (pixels, got_labels) = next(iter(data))
    marked = (np.asarray(pixels).astype(np.uint8) != raw).any(axis=(1, 2, 3))
    assert np.array_equal(np.asarray(got_labels), labels)
    for label in np.unique(labels):
        assert marked[labels == label].any(), label  # no class is spared, none singled out


def test_markers_combine_with_acquisition_marks_first() -> None:
    batch = np.stack([_film(48, s) for s in range(4)])
    keys = np.arange(100, 104)
    both = markers.batch_transform(7, then=acquisition.batch_transform(7))(batch, keys)
    expected = acquisition.batch_transform(7)(markers.batch_transform(7)(batch, keys), keys)
    assert np.array_equal(both, expected)
    recipe, _ = _recipe(TrainConfig(augment_markers=True, augment_acquisition=True, seed=7), [])
    assert np.array_equal(recipe["transform"](batch, keys), expected)
    alone, _ = _recipe(TrainConfig(augment_markers=True, seed=7), [])
    assert np.array_equal(alone["transform"](batch, keys), markers.batch_transform(7)(batch, keys))
    assert _recipe(TrainConfig(), [])[0] == {}
