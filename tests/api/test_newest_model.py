"""The store's "newest" is the model most recently added to it (issue 21, item 1), and the
commands that use a model say which one on stderr."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.models import store
from tests.api.conftest import TINY_ID

runner = CliRunner()


def _set_record(folder: Path, **fields: object) -> None:
    path = folder / store.RECORD_FILE
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


def _trained_later_and_imported(tiny: Path, tmp_path: Path) -> None:
    """An imported model made long ago, and a model trained after it was made but added to
    the store before it: the README's "import a model, then predict" recipe."""
    _set_record(tiny, created="2001-01-01T00:00:00+00:00", added="")
    pack = tmp_path / "old.cxr-model.zip"
    result = runner.invoke(app, ["models", "pack", TINY_ID, "-o", str(pack)])
    assert result.exit_code == 0, result.stderr
    later = tiny.parent / "trained-later"
    shutil.copytree(tiny, later)
    _set_record(later, id="trained-later", created="2002-01-01T00:00:00+00:00", added="")
    result = runner.invoke(app, ["models", "import", str(pack), "--name", "imported"])
    assert result.exit_code == 0, result.stderr


def test_an_imported_model_is_the_newest(tiny: Path, tmp_path: Path) -> None:
    _trained_later_and_imported(tiny, tmp_path)
    assert store.resolve().id == "imported"
    assert [m.id for m in store.list_models()][-1] == "imported"
    record = store.resolve("imported").record()
    assert record.added and record.added > "2002"
    assert record.added == record.sharing["imported_from"]["imported"]


def test_predict_without_model_uses_the_imported_one_and_says_so(
    tiny: Path, tmp_path: Path, xrays: list[Path]
) -> None:
    _trained_later_and_imported(tiny, tmp_path)
    result = runner.invoke(app, ["predict", str(xrays[0]), "--out", "-"])
    assert result.exit_code == 0, result.stderr
    assert "Model: imported (the newest added to the store)" in result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert row.split(",")[header.split(",").index("model")] == "imported"


def test_saving_a_model_records_when_it_was_added(tiny: Path) -> None:
    import keras

    record = store.resolve(TINY_ID).record()
    record.id, record.added = "saved-now", ""
    saved = store.save(keras.saving.load_model(tiny / store.MODEL_FILE), record)
    assert saved.record().added >= saved.record().created
    assert store.resolve().id == "saved-now"


def test_old_records_fall_back_to_import_time_then_creation(tiny: Path) -> None:
    record = store.resolve(TINY_ID).record()
    record.added = ""
    assert store.added_at(record) == record.created
    record.sharing = {"imported_from": {"imported": "2030-01-01T00:00:00+00:00"}}
    assert store.added_at(record) == "2030-01-01T00:00:00+00:00"
    record.added = "2031-01-01T00:00:00+00:00"
    assert store.added_at(record) == record.added


def test_heatmap_and_eval_name_their_model(tiny: Path, tmp_path: Path, xrays: list[Path]) -> None:
    result = runner.invoke(app, ["heatmap", str(xrays[0]), "--out", str(tmp_path / "maps")])
    assert result.exit_code == 0, result.stderr
    assert f"Model: {TINY_ID} (the newest added to the store)" in result.stderr
    result = runner.invoke(app, ["eval", TINY_ID, "--data", str(xrays[0].parent), "--no-save"])
    assert f"Model: {TINY_ID}\n" in result.stderr, result.stderr


def test_audit_names_its_model_before_it_works(tiny: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from cxr_covid.cli import audit as audit_cli

    def stop(options: object) -> None:
        raise SystemExit(0)

    monkeypatch.setattr(audit_cli, "_run", stop)
    result = runner.invoke(app, ["audit"])
    assert f"Model: {TINY_ID} (the newest added to the store)" in result.stderr


def test_two_models_added_within_a_second_keep_their_order(tiny: Path, tmp_path: Path) -> None:
    pack = tmp_path / "p.cxr-model.zip"
    assert runner.invoke(app, ["models", "pack", TINY_ID, "-o", str(pack)]).exit_code == 0
    for name in ("zz-first", "aa-second"):  # ids sort the other way round
        result = runner.invoke(app, ["models", "import", str(pack), "--name", name])
        assert result.exit_code == 0, result.stderr
    assert store.resolve().id == "aa-second"
