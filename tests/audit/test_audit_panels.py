"""The audit's Grad-CAM panels outline the lung field each image was measured against, as
`heatmap`'s panels do, and caption the map's share inside it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cxr_covid import classes, models
from cxr_covid.audit import report
from cxr_covid.audit.results import AttentionResult, Panels
from cxr_covid.data.lungs import fixed_lung_field
from cxr_covid.inference import heatmap_images
from cxr_covid.inference.gradcam import make_explainer


def test_panels_draw_the_audits_lung_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    size = 24
    model = models.build("baseline", size, len(classes.STUDY_CLASSES))
    explainer = make_explainer(model, None, models.get("baseline").last_conv)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, size, size, 3), dtype=np.uint8)
    cams = [explainer(image) for image in pixels]
    fields = np.stack([fixed_lung_field(size, size)] * 2)
    fields[1, :, : size // 2] = False  # a second, different field: each image gets its own
    images = [tmp_path / "a.png", tmp_path / "b.png"]
    attention = AttentionResult(
        "conv", 0.4, [(str(images[0]), "covid", 0.25), (str(images[1]), "normal", 0.75)]
    )
    drawn: list[Any] = []
    real_outline = heatmap_images._draw_outline

    def spy(axis: Any, field: np.ndarray, shape: tuple[int, ...]) -> None:
        drawn.append(field.copy())
        real_outline(axis, field, shape)

    monkeypatch.setattr(heatmap_images, "_draw_outline", spy)
    written = report.write_panels(
        tmp_path,
        attention,
        images,
        list(classes.STUDY_CLASSES),
        Panels(pixels, fields, "fixed", cams, 2),
    )
    assert written == ["panels/01-a.png", "panels/02-b.png"]  # furthest outside first
    assert len(drawn) == 2
    assert np.array_equal(drawn[0], fields[0]) and np.array_equal(drawn[1], fields[1])
    assert (tmp_path / written[0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    caption = heatmap_images.LungOutline(fields[0], "fixed", 0.25).caption()
    assert caption == "25% inside the lungs (outline: fixed lung region)"
