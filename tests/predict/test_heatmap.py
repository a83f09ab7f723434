"""Grad-CAM and `cxr-covid heatmap`: right place, every architecture, every odd input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid import classes, models
from cxr_covid.cli import app
from cxr_covid.data.images import Preprocessing, load_for_model, read_image
from cxr_covid.errors import EXIT_DEPENDENCY, EXIT_PARTIAL, EXIT_USAGE
from cxr_covid.inference.gradcam import GradCamExplainer, choose_layer, upsample
from cxr_covid.inference.heatmap_images import colorize, overlay
from cxr_covid.models import store
from tests.helpers import BLOB_CENTRES, build_dataset
from tests.predict.conftest import BAD, block_pydicom, save_tiny_model

runner = CliRunner()
BLOB_SIZE = 40


def _train_blob_model(home: Path, architecture: str) -> tuple[Path, list[tuple[Path, str]]]:
    """A tiny model trained on images whose class is a blob's position; returns its folder
    and the held-out (path, label) pairs."""
    import keras

    keras.utils.set_random_seed(0)
    dataset = build_dataset(home, "blobs", per_class=20, size=BLOB_SIZE)
    prep = Preprocessing(image_size=BLOB_SIZE)
    labels = list(classes.STUDY_CLASSES)
    rows = dataset.rows()

    def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
        chosen = [r for r in rows if r.split == split]
        x = np.stack([load_for_model(dataset.root / r.path, prep) for r in chosen])
        return x.astype("float32"), np.array([labels.index(r.label) for r in chosen])

    model = models.build(architecture, BLOB_SIZE, len(labels))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = arrays("train")
    model.fit(x, y, epochs=8, batch_size=16, verbose=0)
    x_test, y_test = arrays("test")
    accuracy = float(np.mean(model.predict(x_test, verbose=0).argmax(axis=1) == y_test))
    assert accuracy >= 0.9, f"the blob task did not train ({accuracy:.2f}); the test means nothing"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CXR_COVID_HOME", str(home))
        record = store.ModelRecord(
            id=f"blobs-{architecture}",
            architecture=architecture,
            classes=labels,
            preprocessing=prep.to_dict(),
            last_conv_layer=models.get(architecture).last_conv,
        )
        root = store.save(model, record).root
    held_out = [(dataset.root / r.path, r.label) for r in rows if r.split == "test"]
    return root, held_out


@pytest.mark.parametrize("architecture", ["baseline", "inception"])
def test_heat_map_peak_falls_on_the_blob(
    tmp_path_factory: pytest.TempPathFactory, architecture: str
) -> None:
    root, held_out = _train_blob_model(tmp_path_factory.mktemp("blob-home"), architecture)
    stored = store.StoredModel(root)
    record = stored.record()
    model = stored.load()  # through the store, as the command does
    explainer = GradCamExplainer(model, choose_layer(model, None, record.last_conv_layer))
    radius = 0.12 * BLOB_SIZE  # blob radius in tests.helpers
    hits = 0
    for path, label in held_out:
        image = read_image(path)
        cam = explainer(load_for_model(path, record.prep))
        heat = upsample(cam.cam, image.shape[0], image.shape[1])
        assert heat.shape == image.shape[:2]
        row, col = np.unravel_index(int(heat.argmax()), heat.shape)
        centre_row, centre_col = (f * BLOB_SIZE for f in BLOB_CENTRES[label])
        # The blob's centre jitters by up to 5 % of the image in tests.helpers.
        if np.hypot(row - centre_row, col - centre_col) <= radius + 0.05 * BLOB_SIZE * 1.5:
            hits += 1
    assert hits >= 0.8 * len(held_out), f"peak on the blob for only {hits}/{len(held_out)}"


@pytest.mark.parametrize("architecture", ["baseline", "inception", "inception-nb"])
def test_every_architecture_works_without_naming_a_layer(
    tmp_path: Path, odd_images: dict[str, Path], architecture: str
) -> None:
    root = save_tiny_model(tmp_path / "h", architecture, 16)
    out = tmp_path / "maps"
    result = runner.invoke(
        app, ["heatmap", str(odd_images["good"]), "-m", str(root), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    overlay_png = out / "good.heatmap.png"
    with Image.open(overlay_png) as img:
        assert img.size == (40, 40)  # upsampled to the image, not the model's 16 px
    assert (out / "good.panel.png").stat().st_size > 10_000
    assert "layer last_conv" in result.output


def test_every_odd_input_is_explained_or_reported(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "maps"
    result = runner.invoke(
        app, ["heatmap", str(odd_images["good"].parent), "-m", str(tiny_model), "-o", str(out)]
    )
    assert result.exit_code == EXIT_PARTIAL, result.output
    for name, path in odd_images.items():
        heat, panel = out / f"{path.stem}.heatmap.png", out / f"{path.stem}.panel.png"
        if name in BAD:
            assert not heat.exists() and not panel.exists()
            assert str(path) in result.output
        else:
            with Image.open(heat) as img:
                assert img.size == read_image(path).shape[1::-1]
            with Image.open(panel) as img:
                assert img.format == "PNG"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left
    assert "not a diagnostic device" in result.output


def test_class_layer_colormap_and_alpha_options(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    image = str(odd_images["good"])
    base = ["heatmap", image, "-m", str(tiny_model)]
    explained = runner.invoke(
        app, [*base, "--class", "Pneumonia", "--layer", "conv1", "-o", str(tmp_path / "a.png")]
    )
    assert explained.exit_code == 0, explained.output
    assert "layer conv1" in explained.output
    assert (tmp_path / "a.png").is_file() and (tmp_path / "a.panel.png").is_file()
    if "explaining" not in explained.output:  # the model predicted viral pneumonia itself
        assert "viral pneumonia (" in explained.output

    for option, value in [("--layer", "fc"), ("--class", "flu"), ("--colormap", "nope")]:
        bad = runner.invoke(app, [*base, option, value, "-o", str(tmp_path / "b.png")])
        assert bad.exit_code == EXIT_USAGE, (option, bad.output)
        assert value in bad.output
    assert not (tmp_path / "b.png").exists()

    two = runner.invoke(app, [*base, str(odd_images["cmyk"]), "-o", str(tmp_path / "c.png")])
    assert two.exit_code == EXIT_USAGE and "folder" in two.output


def test_overlay_opacity_follows_the_heat() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)
    heat = rng.random((10, 12)).astype(np.float32)
    assert np.array_equal(overlay(image, heat, "jet", 0.0), image)
    full = np.ones_like(heat)
    assert np.array_equal(overlay(image, full, "jet", 1.0), colorize(full, "jet"))
    # Each pixel's weight is alpha * heat (a uniform 0.5 tint was the old, hiding, blend).
    blended = overlay(image, heat, "gray", 0.5).astype(float)
    weight = 0.5 * heat[..., None]
    expected = (1 - weight) * image + weight * colorize(heat, "gray")
    assert np.abs(blended - expected).max() <= 1


def test_same_stems_in_different_folders_do_not_collide(tiny_model: Path, tmp_path: Path) -> None:
    from tests.helpers import write_class_folders

    write_class_folders(tmp_path / "in", per_class=1, size=24)  # covid/covid-1.png ...
    for folder in ("a", "b"):
        (tmp_path / "in" / folder).mkdir()
        shutil.copy(tmp_path / "in" / "covid" / "covid-1.png", tmp_path / "in" / folder / "x.png")
    out = tmp_path / "maps"
    result = runner.invoke(
        app, ["heatmap", str(tmp_path / "in"), "-r", "-m", str(tiny_model), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (out / "a" / "x.heatmap.png").is_file() and (out / "b" / "x.heatmap.png").is_file()
    assert len(list(out.rglob("*.heatmap.png"))) == 5


def test_missing_dicom_extra_is_exit_9(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block_pydicom(monkeypatch)
    result = runner.invoke(
        app, ["heatmap", str(odd_images["mono2"]), "-m", str(tiny_model), "-o", str(tmp_path)]
    )
    assert result.exit_code == EXIT_DEPENDENCY
    assert "cxr-covid[dicom]" in result.output


def test_real_sample_images_all_heat_map(
    tiny_model: Path, cxr_sample: Path, tmp_path: Path
) -> None:
    out = tmp_path / "maps"
    result = runner.invoke(
        app, ["heatmap", str(cxr_sample), "-r", "-m", str(tiny_model), "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert len(list(out.glob("*.heatmap.png"))) == 24
    assert len(list(out.glob("*.panel.png"))) == 24


def test_heatmap_probabilities_equal_predict_probabilities(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    """The caption's numbers are the ones `predict` writes, for every readable odd input."""
    from cxr_covid.inference.batches import predict_paths
    from cxr_covid.inference.gradcam import heatmap_files

    good = [p for k, p in odd_images.items() if k not in BAD]
    stored = store.StoredModel(tiny_model)
    summary = heatmap_files(good, stored, str(tmp_path / "maps"))
    predicted = {
        p.path: p.probabilities
        for p in predict_paths(stored.load(), good, stored.record().prep, batch_size=4)
    }
    labels = stored.record().classes
    for result in summary.results:
        assert result.error is None
        caption = np.array([result.probabilities[c] for c in labels])
        np.testing.assert_allclose(caption, predicted[result.path], atol=1e-6)
