"""Issue 22, cases 1, 5, 6 and 7: records and model files that a hostile user wrote.

A record must show as broken (never a traceback), a stored decision rule is checked like the
CLI's own options, a bomb inside model.keras is refused before Keras opens it, and `models
pack` never replaces anything but a regular file.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_MODEL, EXIT_USAGE
from cxr_covid.models import store
from tests.helpers import build_dataset

runner = CliRunner()
DEEP = "[" * 100_000 + "]" * 100_000


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-2000:]


# --- case 1: deeply nested JSON --------------------------------------------------------------


def test_deeply_nested_model_record_is_listed_as_broken(tiny: Path) -> None:
    (tiny / store.RECORD_FILE).write_text(DEEP, encoding="utf-8")
    for command in (["models", "list", "--json"], ["info", "--json"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 0, result.output
        _no_traceback(result.output)
        assert "broken" in result.stdout and "nested" in result.stdout
    shown = runner.invoke(app, ["models", "show", tiny.name])
    assert shown.exit_code == EXIT_MODEL
    assert "nested too deeply" in shown.stderr


def test_deeply_nested_dataset_record_keeps_datasets_list_working(cxr_home: Path) -> None:
    folder = build_dataset(cxr_home, "deep", per_class=2, size=16).root
    (folder / "dataset.json").write_text(DEEP, encoding="utf-8")
    for command in (["datasets", "list"], ["info"]):
        result = runner.invoke(app, command)
        _no_traceback(result.output)
        assert result.exit_code == 0, result.output
        assert "deep is broken" in result.stdout and "nested too deeply" in result.stdout
    listed = runner.invoke(app, ["datasets", "list", "--json"])
    assert "nested too deeply" in json.loads(listed.stdout)["datasets"][0]["broken"]


def test_deeply_nested_pack_record_is_refused_with_one_line(tiny: Path, tmp_path: Path) -> None:
    pack = tmp_path / "p.cxr-model.zip"
    assert runner.invoke(app, ["models", "pack", "tiny-baseline", "-o", str(pack)]).exit_code == 0
    bad = tmp_path / "deep.cxr-model.zip"
    with zipfile.ZipFile(pack) as source, zipfile.ZipFile(bad, "w") as out:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "cxr-covid-pack.json":
                data = DEEP.encode()
            out.writestr(info, data)
    result = runner.invoke(app, ["models", "import", str(bad), "--name", "deep"])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_MODEL, result.output
    assert "nested too deeply" in result.stderr


# --- case 6: the stored decision rule --------------------------------------------------------


def _edit_record(folder: Path, **fields: object) -> None:
    path = folder / store.RECORD_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    data.update(fields)
    path.write_text(json.dumps(data), encoding="utf-8")


BAD_RULES = [
    ({"operating_point": {"class": "covid", "threshold": "abc"}}, "threshold"),
    ({"operating_point": {"class": "covid", "threshold": [1]}}, "threshold"),
    ({"operating_point": {"class": "covid", "threshold": -1}}, "between 0 and 1"),
    ({"operating_point": {"class": "covid", "threshold": 5}}, "between 0 and 1"),
    ({"operating_point": {"class": "covid", "threshold": float("inf")}}, "between 0 and 1"),
    ({"operating_point": {"class": "covid", "threshold": float("nan")}}, "between 0 and 1"),
    ({"operating_point": {"class": "lung_opacity", "threshold": 0.3}}, "lung_opacity"),
    ({"calibration": {"temperature": "x"}}, "temperature"),
    ({"calibration": {"temperature": 0}}, "temperature"),
]


@pytest.mark.parametrize(("fields", "word"), BAD_RULES)
def test_bad_stored_decision_rule_is_refused_on_load(
    tiny: Path, xrays: list[Path], fields: dict[str, object], word: str
) -> None:
    _edit_record(tiny, **fields)
    with pytest.raises(Exception) as caught:
        store.StoredModel(tiny).record()
    assert type(caught.value).__name__ == "ModelError"
    assert word in str(caught.value)
    result = runner.invoke(app, ["predict", str(xrays[0]), "-m", "tiny-baseline", "-o", "-"])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_MODEL, result.output
    assert "broken model record" in result.stderr


def test_bad_stored_decision_rule_is_refused_on_import(tiny: Path, tmp_path: Path) -> None:
    _edit_record(tiny, operating_point={"class": "covid", "threshold": "abc"})
    # Pack the folder's files by hand: `models pack` itself refuses the broken record.
    pack = tmp_path / "bad.cxr-model.zip"
    from cxr_covid.sharing import packs

    texts = {
        store.RECORD_FILE: (tiny / store.RECORD_FILE).read_bytes(),
        packs.CARD_FILE: b"card\n",
        packs.PREPROCESSING_FILE: b"{}\n",
        store.MODEL_FILE: (tiny / store.MODEL_FILE).read_bytes(),
    }
    import hashlib

    manifest = {
        "kind": packs.PACK_KIND,
        "pack_format": packs.PACK_FORMAT,
        "model_id": "x",
        "files": {
            n: {"sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in texts.items()
        },
    }
    with zipfile.ZipFile(pack, "w") as archive:
        archive.writestr(packs.PACK_MANIFEST, json.dumps(manifest))
        for name, data in texts.items():
            archive.writestr(name, data)
    result = runner.invoke(app, ["models", "import", str(pack), "--name", "bad"])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_MODEL, result.output
    assert "threshold" in result.stderr


def test_good_stored_decision_rule_still_loads(tiny: Path) -> None:
    _edit_record(
        tiny,
        operating_point={"class": "covid", "threshold": 0.3, "temperature": 1.5},
        calibration={"temperature": 1.5},
    )
    record = store.StoredModel(tiny).record()
    assert record.operating_point["threshold"] == 0.3


# --- case 7: models pack -o DEVICE / -o - ----------------------------------------------------


def test_pack_never_replaces_a_device_even_with_force(tiny: Path, tmp_path: Path) -> None:
    # Never the machine's own /dev/null: before the fix this test replaced its target. A
    # null device made here (root can mknod) and a FIFO stand in for it.
    targets = [tmp_path / "fifo"]
    os.mkfifo(targets[0])
    with contextlib.suppress(OSError):
        os.mknod(tmp_path / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        targets.append(tmp_path / "null")
    for target in targets:
        before = os.lstat(target)
        result = runner.invoke(
            app, ["models", "pack", "tiny-baseline", "-o", str(target), "--force"]
        )
        _no_traceback(result.output)
        assert result.exit_code == EXIT_USAGE, result.output
        assert "not a regular file" in result.stderr
        after = os.lstat(target)
        assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)
        assert not target.with_name(target.name + ".sha256").exists()


def test_pack_to_dash_is_refused_not_written_as_a_file_named_dash(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["models", "pack", "tiny-baseline", "-o", "-"])
    assert result.exit_code == EXIT_USAGE, result.output
    assert "standard output" in result.stderr
    assert not (tmp_path / "-").exists()


# --- case 5: a bomb inside model.keras -------------------------------------------------------


def _rewrite_keras(path: Path, pad: int, compress: int) -> None:
    """The same model file with `pad` spaces (valid JSON whitespace) after its config."""
    with zipfile.ZipFile(path) as source:
        members = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as out:
        for name, data in members:
            if name == "config.json":
                out.writestr(name, data + b" " * pad, compress)
            else:
                out.writestr(name, data, zipfile.ZIP_STORED)


def test_deflate_bomb_in_model_keras_is_refused_before_keras_opens_it(
    tiny: Path, xrays: list[Path]
) -> None:
    # 4 MiB of spaces deflate ~1000x: the 1 GiB config.json, scaled down.
    _rewrite_keras(tiny / store.MODEL_FILE, 4 * 1024**2, zipfile.ZIP_DEFLATED)
    assert (tiny / store.MODEL_FILE).stat().st_size < 1024**2
    with pytest.raises(Exception, match="inflates") as caught:
        store.StoredModel(tiny).load()
    assert type(caught.value).__name__ == "ModelError"
    result = runner.invoke(app, ["predict", str(xrays[0]), "-m", "tiny-baseline", "-o", "-"])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_MODEL, result.output
    assert "refused model file" in result.stderr


def test_oversized_config_in_model_keras_is_refused(
    tiny: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stored, not deflated (no ratio to catch): the size bound alone, scaled down.
    monkeypatch.setattr(store, "MAX_KERAS_JSON_BYTES", 64 * 1024)
    _rewrite_keras(tiny / store.MODEL_FILE, 100 * 1024, zipfile.ZIP_STORED)
    with pytest.raises(Exception, match=r"config\.json would inflate") as caught:
        store.StoredModel(tiny).load()
    assert type(caught.value).__name__ == "ModelError"
