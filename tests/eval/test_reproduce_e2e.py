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
from cxr_covid.progress import NullReporter
from tests.helpers import blob_image
from tests.json_docs import assert_documented

pytest.importorskip("cxr_covid.data.ingest", reason="data ingest is not merged yet")
pytest.importorskip("cxr_covid.data.augment", reason="augmentation is not merged yet")
pytest.importorskip("cxr_covid.training.run", reason="training is not merged yet")

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
    # No provenance in this zip: the report says so and how to attach it.
    assert "## Where the images come from" in report and "--sources FILE.csv" in report
    # The shortcut audit ran on the first row, and its verdict sits beside the table.
    assert "Shortcut audit" in report and data["audit"]["verdict"] in report
    assert (run_dir / "audit" / "report.md").is_file()
    assert "Shortcut audit:" in result.output
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
    again = runner.invoke(app, [*args, "--json"])
    assert again.exit_code == 0, again.output
    assert "download: done" in again.stderr and "augment: done" in again.stderr
    assert again.stderr.count(": done (model ") == 3
    assert "audit: done" in again.stderr
    assert len(list((cxr_home / "models").iterdir())) == 3
    assert json.loads(again.stdout)["rows"] == data["rows"]  # --json: the same results
    assert_documented("reproduce", json.loads(again.stdout))
    assert json.loads((run_dir / "results.json").read_text())["rows"] == data["rows"]
    for model_id in models.values():
        record = json.loads((cxr_home / "models" / model_id / "model.json").read_text())
        assert len(record["evaluations"]) == 1

    # Other settings in the same folder are refused rather than mixed.
    other_args = [a if a != "1" else "2" for a in args]  # --epochs 2
    other = runner.invoke(app, other_args)
    assert other.exit_code == 2
    assert "other settings" in other.output and "epochs" in other.output


def test_reproduce_from_zip_interrupted_mid_training_then_resumed(
    cxr_home: Path, tmp_path: Path
) -> None:
    """Ctrl-C during the second model's training; the rerun keeps the first model, continues
    the second from its saved epoch, and trains the third."""
    from cxr_covid.errors import EXIT_INTERRUPTED, CxrCovidError
    from cxr_covid.reproduce import run as reproduce
    from cxr_covid.reproduce import run_folder

    archive = kaggle_like_zip(tmp_path / "archive.zip", per_class=12)
    run_dir = tmp_path / "run"
    options = reproduce.ReproduceOptions(
        preset="quick",
        from_zip=archive,
        out=run_dir,
        image_size=16,
        epochs=2,
        batch_size=16,
        bootstrap=20,
        estimate=False,
    )

    class InterruptAfterFirstEpoch(NullReporter):
        def message(self, text: str) -> None:
            if text.startswith("baseline-aug: epoch 1/"):
                raise KeyboardInterrupt

    with pytest.raises(CxrCovidError) as caught:
        reproduce.run(options, InterruptAfterFirstEpoch())
    assert caught.value.exit_code == EXIT_INTERRUPTED
    state = json.loads((run_dir / "state.json").read_text())
    assert "train:baseline-noaug" in state["steps"] and "train:baseline-aug" not in state["steps"]
    interrupted = run_folder.model_name(run_folder.RunState(run_dir, state), "baseline-aug")
    assert (cxr_home / "runs" / interrupted / "state.json").is_file()

    args = [
        "reproduce",
        "--preset",
        "quick",
        "--from-zip",
        str(archive),
        "--out",
        str(run_dir),
        "--image-size",
        "16",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--bootstrap",
        "20",
        "--no-estimate",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "train Baseline, no augmentation: done" in result.output
    assert f"continuing interrupted run {interrupted}" in result.output
    record = json.loads((cxr_home / "models" / interrupted / "model.json").read_text())
    assert record["training"]["resumed"] == 1
    assert len(record["history"]["val_accuracy"]) == 2
    assert len(list((cxr_home / "models").iterdir())) == 3
    assert (run_dir / "report.md").is_file()


@pytest.mark.slow
def test_reproduce_quick_on_real_chest_xrays(cxr_home: Path, cxr_dev_zip: Path) -> None:
    """The quick preset as shipped, on the 360-image development archive (real X-rays): the
    three networks learn (well above the 1/3 of chance). Too small a test set to judge the
    study's figures; about 100 s on 2 cores."""
    run_dir = cxr_home / "real"
    result = runner.invoke(
        app,
        ["reproduce", "--preset", "quick", "--from-zip", str(cxr_dev_zip), "--out", str(run_dir)],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((run_dir / "results.json").read_text())
    for row in data["rows"]:
        total = row["cells"]["total"]["ours"]
        assert total["n"] == 54
        assert total["value"] > 0.6, row
