"""`models list|show|rm` and `info` against a real (tiny) model in an isolated store."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data.images import Preprocessing
from cxr_covid.errors import EXIT_MODEL
from cxr_covid.models import store
from cxr_covid.models.records import SavedEvaluation

runner = CliRunner()


def _tiny_model_record(model_id: str) -> tuple[object, store.ModelRecord]:
    from cxr_covid import models

    model = models.build("baseline", 16, 3)
    record = store.ModelRecord(
        id=model_id,
        architecture="baseline",
        classes=["covid", "normal", "viral_pneumonia"],
        preprocessing=Preprocessing(image_size=16).to_dict(),
        last_conv_layer=models.get("baseline").last_conv,
        dataset={"name": "blobs"},
        metrics={"best_val_accuracy": 0.5},
    )
    return model, record


def test_store_round_trip_list_show_load_rm(cxr_home: Path) -> None:
    import numpy as np

    model, record = _tiny_model_record("tiny-1")
    saved = store.save(model, record)
    assert saved.root == cxr_home / "models" / "tiny-1"

    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert [m["id"] for m in json.loads(listed.stdout)["models"]] == ["tiny-1"]

    shown = runner.invoke(app, ["models", "show", "tiny-1", "--json"])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["architecture"] == "baseline"
    assert runner.invoke(app, ["models", "show", "tiny-1"]).exit_code == 0

    loaded = store.resolve("tiny-1").load()
    x = np.random.default_rng(0).integers(0, 255, size=(2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5)

    refused = runner.invoke(app, ["models", "rm", "tiny-1"], input="n\n")
    assert refused.exit_code == 0
    assert (cxr_home / "models" / "tiny-1").exists()
    removed = runner.invoke(app, ["models", "rm", "tiny-1", "--yes"])
    assert removed.exit_code == 0
    assert not (cxr_home / "models" / "tiny-1").exists()
    assert store.list_models() == []


def test_half_written_model_is_never_listed(cxr_home: Path) -> None:
    (cxr_home / "models" / ".tmp-partial.abc").mkdir(parents=True)
    (cxr_home / "models" / ".tmp-partial.abc" / "model.json").write_text("{}")
    (cxr_home / "models" / "no-keras-file").mkdir()
    (cxr_home / "models" / "no-keras-file" / "model.json").write_text("{}")
    assert store.list_models() == []


def test_save_is_atomic_when_writing_fails(cxr_home: Path) -> None:
    class Exploding:
        def save(self, path: Path) -> None:
            Path(path).write_bytes(b"partial")
            raise RuntimeError("disk full")

    _, record = _tiny_model_record("boom")
    with contextlib.suppress(RuntimeError):
        store.save(Exploding(), record)
    assert not (cxr_home / "models" / "boom").exists()
    assert list((cxr_home / "models").iterdir()) == []


def test_missing_model_is_a_model_error() -> None:
    result = runner.invoke(app, ["models", "show", "nope"])
    assert result.exit_code == EXIT_MODEL
    assert "Error:" in result.output and "nope" in result.output


def test_wrong_model_file_is_refused(cxr_home: Path) -> None:
    model_dir = cxr_home / "models" / "fake"
    model_dir.mkdir(parents=True)
    (model_dir / "model.keras").write_bytes(b"this is not a keras zip")
    _, record = _tiny_model_record("fake")
    (model_dir / "model.json").write_text(json.dumps(record.to_dict()))
    import pytest

    from cxr_covid.errors import ModelError

    with pytest.raises(ModelError, match="not a loadable Keras model"):
        store.resolve("fake").load()


def test_corrupt_record_is_a_model_error(cxr_home: Path) -> None:
    model_dir = cxr_home / "models" / "bad"
    model_dir.mkdir(parents=True)
    (model_dir / "model.keras").write_bytes(b"x")
    (model_dir / "model.json").write_text("{not json")
    result = runner.invoke(app, ["models", "show", "bad"])
    assert result.exit_code == EXIT_MODEL


def test_info_json_reports_home_versions_devices_and_models(cxr_home: Path) -> None:
    model, record = _tiny_model_record("tiny-2")
    store.save(model, record)
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["home"] == str(cxr_home.resolve())
    assert data["home_overridden"] is True
    assert {"cxr_covid", "python", "tensorflow", "keras"} <= set(data["versions"])
    assert any(d["type"] == "CPU" for d in data["devices"])
    assert [m["id"] for m in data["models"]] == ["tiny-2"]
    table = runner.invoke(app, ["info"])
    assert table.exit_code == 0
    assert "tiny-2" in table.output


def test_accuracies_are_shown_with_counts_and_wilson_intervals(cxr_home: Path) -> None:
    model, record = _tiny_model_record("tiny-ci")
    record.dataset["val_images"] = 10
    record.evaluations.append(
        SavedEvaluation(split="test", source="dataset blobs, test split", accuracy=0.8, n=10)
    )
    store.save(model, record)
    shown = runner.invoke(app, ["models", "show", "tiny-ci"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    # Wilson 95% for 5/10 is 23.7-76.3 %, for 8/10 it is 49.0-94.3 %.
    assert "50.00% (5/10) [23.7-76.3]" in shown.output
    assert "80.00% (8/10) [49.0-94.3]" in shown.output
    listed = runner.invoke(app, ["models", "list"], env={"COLUMNS": "250"})
    assert "(5/10) [23.7-76.3]" in listed.output
