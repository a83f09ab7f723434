"""`cxr-covid reproduce --preset quick` end to end, on a tiny archive served over HTTP.

The archive is laid out like the Kaggle release (COVID-19_Radiography_Dataset/<Class>/images/
<Class>-N.png) and served by a real HTTP server on 127.0.0.1, so download, extraction, split,
augmentation, the three trainings, evaluation and the run folder are all the real code.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from cxr_covid import stats, study
from cxr_covid.cli import app
from tests.helpers import blob_image

pytest.importorskip("cxr_covid.data.ingest", reason="data ingest is not merged yet")
pytest.importorskip("cxr_covid.data.augment", reason="augmentation is not merged yet")
pytest.importorskip("cxr_covid.training", reason="training is not merged yet")

runner = CliRunner()
KAGGLE_FOLDERS = {"covid": "COVID", "normal": "Normal", "viral_pneumonia": "Viral Pneumonia"}


def kaggle_like_zip(path: Path, per_class: int, size: int = 32) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for label, folder in KAGGLE_FOLDERS.items():
            for i in range(per_class):
                buffer = io.BytesIO()
                Image.fromarray(blob_image(label, size, rng), mode="L").save(buffer, "PNG")
                name = f"COVID-19_Radiography_Dataset/{folder}/images/{folder}-{i + 1}.png"
                archive.writestr(name, buffer.getvalue())
    return path


@pytest.fixture
def served_zip(tmp_path: Path) -> Iterator[str]:
    folder = tmp_path / "www"
    folder.mkdir()
    kaggle_like_zip(folder / "covid19-tiny.zip", per_class=20)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/covid19-tiny.zip"
    finally:
        server.shutdown()
        server.server_close()


QUICK = [
    "--preset",
    "quick",
    "--image-size",
    "16",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--bootstrap",
    "50",
]


def test_reproduce_quick_end_to_end_and_resume(cxr_home: Path, served_zip: str) -> None:
    run_dir = cxr_home / "run"
    args = ["reproduce", *QUICK, "--url", served_zip, "--out", str(run_dir)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "NOT the study's protocol" in result.output
    assert "estimate: about" in result.output
    assert "published figures lie inside our 95 % Wilson intervals" in result.output

    data = json.loads((run_dir / "results.json").read_text())
    assert data["study_protocol"] is False
    assert [r["key"] for r in data["rows"]] == [m.key for m in study.STUDY_MODELS]
    test_counts = set()
    for row, spec in zip(data["rows"], study.STUDY_MODELS, strict=True):
        assert list(row["cells"]) == list(study.TABLE_COLUMNS)
        for column, cell in row["cells"].items():
            ours = cell["ours"]
            assert cell["published_percent"] == spec.published[column]
            low, high = stats.wilson_interval(ours["successes"], ours["n"])
            assert ours["ci"] == pytest.approx([low, high])
            assert cell["verdict"] == study.verdict(cell["published_percent"], low, high)
        test_counts.add(row["cells"]["total"]["ours"]["n"])
    assert len(test_counts) == 1  # the three models saw the same test images
    assert len(data["evaluation"]["mcnemar"]) == 3

    report = (run_dir / "report.md").read_text()
    for caveat in (
        "NOT the study's protocol",
        "33 images",
        "paediatric",
        "not a diagnostic device",
    ):
        assert caveat in report
    assert (run_dir / "results.md").read_text().startswith("# Reproducing the study")
    assert (run_dir / "evaluation.csv").is_file()
    assert len(list((run_dir / "plots").glob("*.png"))) == 9

    state = json.loads((run_dir / "state.json").read_text())
    models = {k.split(":", 1)[1]: v["model"] for k, v in state["steps"].items() if ":" in k}
    assert set(models) == {m.key for m in study.STUDY_MODELS}
    for model_id in models.values():
        record = json.loads((cxr_home / "models" / model_id / "model.json").read_text())
        assert len(record["evaluations"]) == 1 and record["evaluations"][0]["split"] == "test"
    augmented = json.loads(
        (cxr_home / "models" / models["baseline-aug"] / "model.json").read_text()
    )
    assert augmented["training"].get("augment") is True

    # Rerun: every finished step is skipped, nothing is trained again or saved twice.
    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "download: done" in again.output and "augment: done" in again.output
    assert again.output.count(": done (model ") == 3
    assert len(list((cxr_home / "models").iterdir())) == 3
    assert json.loads((run_dir / "results.json").read_text())["rows"] == data["rows"]
    for model_id in models.values():
        record = json.loads((cxr_home / "models" / model_id / "model.json").read_text())
        assert len(record["evaluations"]) == 1

    # Other settings in the same folder are refused rather than mixed.
    other_args = [a if a != "1" else "2" for a in args]  # --epochs 2
    other = runner.invoke(app, other_args)
    assert other.exit_code == 2
    assert "other settings" in other.output and "epochs" in other.output
