"""The overlay shows heat only where it is, and says what it shows (hardening issue, item 18)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from cxr_covid.about import DISCLAIMER
from cxr_covid.cli import app
from cxr_covid.data.images import read_image, resize
from cxr_covid.inference.gradcam import GradCamExplainer, upsample
from cxr_covid.inference.heatmap_images import DEFAULT_ALPHA, overlay
from cxr_covid.models import store

runner = CliRunner()


def test_a_cold_region_keeps_the_original_pixels() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    heat = np.zeros((20, 30), dtype=np.float32)
    heat[5:12, 18:27] = rng.uniform(0.2, 1.0, (7, 9))  # one warm patch, cold elsewhere
    for colormap in ("inferno", "turbo", "jet"):
        blended = overlay(image, heat, colormap, 0.8)
        cold = heat == 0
        assert np.array_equal(blended[cold], image[cold]), colormap
        assert not np.array_equal(blended[~cold], image[~cold]), colormap


def test_the_bare_overlay_fades_with_the_heat_and_carries_its_caption(
    tiny_model: Path, odd_images: dict[str, Path], tmp_path: Path
) -> None:
    source = odd_images["good"]
    target = tmp_path / "good.png"
    result = runner.invoke(app, ["heatmap", str(source), "-m", str(tiny_model), "-o", str(target)])
    assert result.exit_code == 0, result.output

    # The same Grad-CAM the command drew: where it is cold the film must show through.
    stored = store.resolve(str(tiny_model))
    record = stored.record()
    original = read_image(source)
    cam = GradCamExplainer(stored.load(), record.last_conv_layer or "last_conv")(
        resize(original, record.prep.image_size, record.prep.resize)
    )
    heat = upsample(cam.cam, *original.shape[:2])
    with Image.open(target) as png:
        drawn = np.asarray(png.convert("RGB")).astype(int)
        text = dict(png.text)
    change = np.abs(drawn - original.astype(int)).max(axis=-1)
    assert np.all(change <= 255 * DEFAULT_ALPHA * heat + 1)

    explained = record.classes[cam.class_index]
    assert text["model"] == record.id
    assert text["class"] == explained
    assert float(text["probability"]) == round(float(cam.probabilities[cam.class_index]), 4)
    assert text["predicted"] == record.classes[int(cam.probabilities.argmax())]
    assert text["layer"] == cam.layer
    assert text["source"] == source.name
    assert text["Disclaimer"] == DISCLAIMER
    with Image.open(tmp_path / "good.panel.png") as panel:
        assert dict(panel.text)["model"] == record.id
