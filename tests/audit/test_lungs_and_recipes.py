"""The lung field (fixed region, masks), hiding, and the recipe options' building blocks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_covid.data import lungs, pipeline
from cxr_covid.data.catalog import class_of, is_xray
from cxr_covid.data.images import Preprocessing, load_for_model
from cxr_covid.errors import DataError
from cxr_covid.training import acquisition, balance
from tests.conftest import SHARED_DATA


def _gray(path: Path, size: tuple[int, int], value: int = 120) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = np.clip(rng.normal(value, 30, (size[1], size[0])), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, mode="L").save(path)
    return path


def test_fixed_field_is_two_lungs_left_and_right_of_the_midline() -> None:
    field = lungs.fixed_lung_field(100, 100)
    assert field.shape == (100, 100)
    assert not field[:, 50].all()  # the mediastinum is not all lung
    assert field[48, 28] and field[48, 72]  # both lung centres
    assert not field[2, 2] and not field[97, 97]  # corners (markers, labels) are outside
    assert 0.4 < field.mean() < 0.65
    # Same fractions at any size.
    assert abs(lungs.fixed_lung_field(299, 299).mean() - field.mean()) < 0.02


def test_fixed_field_covers_most_of_the_real_release_masks() -> None:
    folder = SHARED_DATA / "cxr-dev" / "lung-masks"
    if not folder.is_dir():
        pytest.skip(f"real lung masks not available at {folder}")
    masks = [np.asarray(Image.open(p).convert("L")) > 127 for p in sorted(folder.glob("*.png"))]
    stacked = np.stack(masks)
    field = lungs.fixed_lung_field(*stacked.shape[1:])
    assert (stacked & field).sum() / stacked.sum() >= 0.9


def test_hide_fills_the_region_with_its_own_mean_and_leaves_the_rest() -> None:
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    region = np.zeros((64, 64), bool)
    region[20:40, 20:40] = True
    hidden = lungs.hide(pixels, region, "mean")
    expected = pixels[region].astype(float).mean()
    assert abs(hidden[region].astype(float).mean() - expected) < 1.0
    assert hidden[region].std() < 1.0  # texture gone
    assert np.array_equal(hidden[:5, :5], pixels[:5, :5])  # far outside: untouched
    assert (lungs.hide(pixels, region, "black")[region] == 0).all()
    blurred = lungs.hide(pixels, region, "blur")
    assert 0 < blurred[region].std() < pixels[region].std()
    only = lungs.apply_view(pixels, "lungs")
    assert np.array_equal(only[0, 0], only[1, 1])  # outside the fixed field: one flat value
    assert np.array_equal(lungs.apply_view(pixels, "full"), pixels)


def test_masks_pair_by_name_resize_and_refuse_a_mismatched_shape(tmp_path: Path) -> None:
    image = _gray(tmp_path / "COVID" / "images" / "COVID-1.png", (299, 299))
    mask_path = lungs.mask_path_for(image)
    assert mask_path == tmp_path / "COVID" / "masks" / "COVID-1.png"
    mask = np.zeros((256, 256), np.uint8)
    mask[30:200, 20:110] = 255
    mask_path.parent.mkdir(parents=True)
    Image.fromarray(mask).save(mask_path)
    field = lungs.read_mask(mask_path, 299, 299)
    assert field.shape == (299, 299)
    assert abs(field.mean() - (mask > 0).mean()) < 0.01
    with pytest.raises(DataError, match="does not match its image"):
        lungs.read_mask(mask_path, 524, 640)
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(empty)
    with pytest.raises(DataError, match="empty"):
        lungs.read_mask(empty, 8, 8)
    with pytest.raises(DataError, match="not found"):
        lungs.read_mask(tmp_path / "missing.png", 8, 8)


def test_masks_are_used_only_when_every_image_has_one(tmp_path: Path) -> None:
    a = _gray(tmp_path / "COVID" / "images" / "a.png", (32, 32))
    b = _gray(tmp_path / "Normal" / "images" / "b.png", (32, 32))
    _gray(tmp_path / "COVID" / "masks" / "a.png", (32, 32), 255)
    partial = lungs.lung_field_source([a, b])
    assert partial.kind == "fixed" and "only 1 of 2" in partial.reason
    _gray(tmp_path / "Normal" / "masks" / "b.png", (32, 32), 255)
    full = lungs.lung_field_source([a, b])
    assert full.kind == "masks" and full.masks[b].name == "b.png"
    assert lungs.lung_field_source([a, b], mask_dir=tmp_path).kind == "fixed"
    assert lungs.unmatched_masks([a], tmp_path / "Normal" / "masks") == ["b.png"]


def test_masks_are_never_training_images() -> None:
    assert class_of("COVID-19_Radiography_Dataset/COVID/masks/COVID-1.png") is None
    assert class_of("COVID-19_Radiography_Dataset/COVID/images/COVID-1.png") == "covid"
    assert not is_xray("x/COVID/masks/COVID-1.png")


def test_input_lungs_is_part_of_the_one_decode_path(tmp_path: Path) -> None:
    path = _gray(tmp_path / "x.png", (48, 40))
    full = Preprocessing(image_size=32)
    masked = Preprocessing(image_size=32, input="lungs")
    assert Preprocessing.from_dict(masked.to_dict()) == masked
    assert Preprocessing.from_dict({"image_size": 32}).input == "full"
    expected = lungs.apply_view(load_for_model(path, full), "lungs")
    assert np.array_equal(load_for_model(path, masked), expected)
    assert not np.array_equal(load_for_model(path, full), expected)
    rows: list = []
    assert pipeline.cache_key(rows, full, ["covid"]) != pipeline.cache_key(rows, masked, ["covid"])
    with pytest.raises(ValueError):
        Preprocessing(input="ribs")


def test_acquisition_augmentation_is_seeded_per_image_and_epoch() -> None:
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    pixels = np.repeat(gray[:, :, None], 3, axis=2)
    first = acquisition.augment_image(pixels, 3, 10)
    assert first.shape == pixels.shape and first.dtype == np.uint8
    assert np.array_equal(first, acquisition.augment_image(pixels, 3, 10))
    others = [acquisition.augment_image(pixels, 3, k) for k in range(11, 16)]
    assert any(not np.array_equal(first, o) for o in others)
    assert (first[:, :, 0] == first[:, :, 2]).all()  # still grey
    batch = np.stack([pixels, pixels])
    out = acquisition.batch_transform(3)(batch, np.array([10, 11]))
    assert np.array_equal(out[0], first) and np.array_equal(out[1], others[0])


def test_balance_gives_every_collection_of_a_class_the_same_weight() -> None:
    labels = ["normal"] * 12 + ["covid"] * 4
    sources = ["kermany"] * 10 + ["rsna"] * 2 + ["unknown"] * 4
    weights = balance.source_weights(labels, sources)
    kermany = weights[:10].sum()
    rsna = weights[10:12].sum()
    assert kermany == pytest.approx(rsna)
    assert kermany + rsna == pytest.approx(12)  # a class keeps its total weight
    assert weights[12:].tolist() == [1.0] * 4
    assert balance.composition(labels, sources)["normal"] == {"kermany": 10, "rsna": 2}
    order = pipeline.balanced_order(weights, 1, 0)
    assert np.array_equal(order, pipeline.balanced_order(weights, 1, 0))
    draws = np.concatenate([pipeline.balanced_order(weights, 1, e) for e in range(400)])
    share_rsna = np.isin(draws, [10, 11]).sum() / np.isin(draws, np.arange(12)).sum()
    assert 0.45 < share_rsna < 0.55  # 2 of 12 images, half of the class's draws
