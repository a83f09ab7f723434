"""docs/api.md: every ```python block runs, in order, against a tiny stored model."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api.conftest import TINY_ID
from tests.helpers import build_dataset

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.+?)\n```", DOC.read_text(encoding="utf-8"), re.S)


def test_docs_have_examples() -> None:
    blocks = _blocks()
    assert len(blocks) >= 5
    assert any("load_model" in b for b in blocks) and any("gradcam" in b for b in blocks)


def test_api_examples_run(
    cxr_home: Path,
    tiny: Path,
    xrays: list[Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The docs name the model `base-dev` and two images a.png and b.png.
    shutil.copytree(tiny, tiny.parent / "base-dev")
    record_path = tiny.parent / "base-dev" / "model.json"
    record_path.write_text(record_path.read_text().replace(f'"{TINY_ID}"', '"base-dev"'))
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(xrays[0], work / "a.png")
    Image.open(xrays[1]).save(work / "b.png")
    build_dataset(cxr_home, "dev", per_class=10, size=32)  # for train / evaluate / audit
    monkeypatch.chdir(work)
    namespace: dict[str, object] = {}
    for number, block in enumerate(_blocks(), 1):
        try:
            exec(compile(block, f"docs/api.md block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"docs/api.md block {number} failed: {type(exc).__name__}: {exc}")
    printed = capsys.readouterr().out
    assert "base-dev ['covid', 'normal', 'viral_pneumonia']" in printed
    assert "(2, 3)" in printed
    assert "dtype uint16" in printed
    cam = namespace["cam"]
    assert isinstance(cam, np.ndarray) and cam.ndim == 2
    # PIL input, records / pandas, and the train -> evaluate -> audit -> predict chain.
    assert namespace["from_pil"][0].label == namespace["model"].predict("a.png")[0].label  # type: ignore[index,attr-defined]
    assert "needs pandas" in printed or "(2, 9)" in printed
    assert "mine-32" in printed
    report = namespace["report"]
    assert report.evaluations[0].accuracy.n == 6  # type: ignore[attr-defined]
    assert namespace["audited"].model_id == "mine-32"  # type: ignore[attr-defined]
