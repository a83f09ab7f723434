"""`models pack` and `models import`: one verified archive, imported safely (file or HTTP)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cxr_covid
from cxr_covid.cli import app
from cxr_covid.errors import EXIT_ARCHIVE, EXIT_DOWNLOAD, EXIT_MODEL, EXIT_USAGE
from cxr_covid.models import store
from cxr_covid.sharing.packs import PACK_MANIFEST
from tests.api.conftest import TINY_ID, Server

runner = CliRunner()


def _pack(tmp_path: Path, model: str = TINY_ID) -> tuple[Path, str]:
    out = tmp_path / "shared" / "tiny.cxr-model.zip"
    result = runner.invoke(app, ["models", "pack", model, "-o", str(out), "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    return Path(report["path"]), report["sha256"]


def _import(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["models", "import", *args])
    return result.exit_code, result.stdout, result.stderr


def _models(home: Path) -> list[str]:
    root = home / "models"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_pack_holds_model_record_card_preprocessing_and_records_its_hash(
    tiny: Path, tmp_path: Path
) -> None:
    path, digest = _pack(tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert path.with_name(path.name + ".sha256").read_text() == f"{digest}  {path.name}\n"
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        card = archive.read("MODEL_CARD.md").decode()
        spec = json.loads(archive.read("preprocessing.json"))
    assert names == {
        PACK_MANIFEST,
        "model.keras",
        "model.json",
        "MODEL_CARD.md",
        "preprocessing.json",
    }
    assert "## Intended use" in card and spec["image_size"] == 24
    record = store.resolve(TINY_ID).record()
    assert record.sharing["packs"][-1]["sha256"] == digest


def test_pack_refuses_to_overwrite_without_force(tiny: Path, tmp_path: Path) -> None:
    path, first = _pack(tmp_path)
    result = runner.invoke(app, ["models", "pack", TINY_ID, "-o", str(path)])
    assert result.exit_code == EXIT_USAGE and "--force" in result.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == first
    result = runner.invoke(app, ["models", "pack", TINY_ID, "-o", str(path), "--force"])
    assert result.exit_code == 0, result.stderr
    assert "sha256" in result.stdout


def test_pack_is_about_the_size_of_the_weights(tiny: Path, tmp_path: Path) -> None:
    model = store.resolve(TINY_ID).load()
    weight_bytes = sum(int(np.prod(w.shape)) * 4 for w in model.weights)
    path, _ = _pack(tmp_path)
    # No optimizer state (it would double or triple the size): weights plus a few kB.
    assert weight_bytes < path.stat().st_size < weight_bytes * 1.15 + 64_000


def test_import_file_under_a_new_name_predicts_the_same(
    tiny: Path, tmp_path: Path, xrays: list[Path]
) -> None:
    path, digest = _pack(tmp_path)
    code, out, err = _import(str(path), "--sha256", digest.upper(), "--name", "shared-copy")
    assert code == 0, err
    assert "imported model shared-copy" in out
    record = store.resolve("shared-copy").record()
    assert record.id == "shared-copy"
    assert record.sharing["original_id"] == TINY_ID
    assert record.sharing["imported_from"]["sha256"] == digest
    a = cxr_covid.load_model(TINY_ID).predict(xrays).probabilities
    b = cxr_covid.load_model("shared-copy").predict(xrays).probabilities
    np.testing.assert_array_equal(a, b)


def test_pack_file_loads_directly_in_the_api_and_cli(
    tiny: Path, tmp_path: Path, xrays: list[Path]
) -> None:
    path, _ = _pack(tmp_path)
    from_pack = cxr_covid.load_model(path)
    assert from_pack.id == TINY_ID
    np.testing.assert_array_equal(
        from_pack.predict(xrays).probabilities,
        cxr_covid.load_model(TINY_ID).predict(xrays).probabilities,
    )
    out = tmp_path / "r.csv"
    result = runner.invoke(app, ["predict", str(xrays[0]), "--model", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.stderr
    assert TINY_ID in out.read_text()


def test_existing_id_is_never_overwritten_without_force(tiny: Path, tmp_path: Path) -> None:
    path, _ = _pack(tmp_path)
    before = (tiny / "model.json").read_text()
    code, _out, err = _import(str(path))
    assert code == EXIT_USAGE  # fixed on the command line (--force, --name): not "model missing"
    assert "already exists" in err and "--force" in err
    assert (tiny / "model.json").read_text() == before
    code, out, err = _import(str(path), "--force")
    assert code == 0, err
    assert "replaced" in out
    assert _models(tiny.parent.parent) == [TINY_ID]


def test_wrong_sha256_is_refused_and_nothing_is_stored(
    tiny: Path, tmp_path: Path, cxr_home: Path
) -> None:
    path, _ = _pack(tmp_path)
    code, _out, err = _import(str(path), "--sha256", "0" * 64, "--name", "x")
    assert code == EXIT_DOWNLOAD and "expected" in err
    code, _out, err = _import(str(path), "--sha256", "abc")
    assert code == EXIT_USAGE
    assert _models(cxr_home) == [TINY_ID]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("members", "message"),
    [
        ({"hello.txt": b"hi"}, "not a cxr-covid model pack"),
        ({PACK_MANIFEST: b'{"kind": "something-else"}'}, "not a cxr-covid model pack"),
        ({PACK_MANIFEST: b'{"kind": "cxr-covid-model", "pack_format": 99, "files": {}}'}, "newer"),
    ],
)
def test_not_a_model_pack_exits_6(
    tiny: Path, tmp_path: Path, cxr_home: Path, members: dict[str, bytes], message: str
) -> None:
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(_zip(members))
    code, _out, err = _import(str(bogus), "--name", "bogus")
    assert code == EXIT_MODEL
    assert message in err
    assert _models(cxr_home) == [TINY_ID]
    assert not [p for p in (cxr_home / "models").iterdir() if p.name.startswith(".")]


def test_not_a_zip_exits_6(tiny: Path, tmp_path: Path) -> None:
    text = tmp_path / "model.zip"
    text.write_text("hello")
    code, _out, err = _import(str(text))
    assert code == EXIT_MODEL and "not a zip" in err


def test_altered_member_is_refused(tiny: Path, tmp_path: Path, cxr_home: Path) -> None:
    path, _ = _pack(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["model.json"] = members["model.json"].replace(b'"baseline"', b'"inception"')
    altered = tmp_path / "altered.zip"
    altered.write_bytes(_zip(members))
    code, _out, err = _import(str(altered), "--name", "altered")
    assert code == EXIT_MODEL and "does not match" in err
    assert _models(cxr_home) == [TINY_ID]


def test_traversal_member_is_refused_by_the_extract_guards(
    tiny: Path, tmp_path: Path, cxr_home: Path
) -> None:
    path, _ = _pack(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    members["../../escape.txt"] = b"gotcha"
    hostile = tmp_path / "hostile.zip"
    hostile.write_bytes(_zip(members))
    code, _out, err = _import(str(hostile), "--name", "hostile")
    assert code == EXIT_ARCHIVE and "'..'" in err
    assert not list(tmp_path.rglob("escape.txt")) and not list(cxr_home.rglob("escape.txt"))


def test_code_in_the_archive_never_runs(tiny: Path, tmp_path: Path, cxr_home: Path) -> None:
    """A model with a Lambda layer (Python code in the file) is refused by safe mode."""
    import keras

    inputs = keras.Input((24, 24, 3), name="image")
    x = keras.layers.Lambda(lambda t: t * 2.0, name="code")(inputs)
    x = keras.layers.Conv2D(2, 3, name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    record = store.resolve(TINY_ID).record()
    record.id = "lambda-model"
    store.save(keras.Model(inputs, outputs), record)
    path, _ = _pack(tmp_path, "lambda-model")
    store.remove(store.resolve("lambda-model"))
    code, _out, err = _import(str(path))
    assert code == EXIT_MODEL and "carries code" in err and "safe mode" in err
    assert _models(cxr_home) == [TINY_ID]


def test_import_over_http_interrupted_then_resumed(
    tiny: Path,
    tmp_path: Path,
    cxr_home: Path,
    http_server: Server,
    monkeypatch: pytest.MonkeyPatch,
    xrays: list[Path],
) -> None:
    path, digest = _pack(tmp_path)
    data = path.read_bytes()
    cut = len(data) // 3
    # The first run's transfer breaks off, and it has only one attempt: it fails, keeping
    # the .part file. The second run resumes with a Range request, from where it stopped.
    http_server.routes["/releases/tiny.zip"] = lambda h, n: h.send_body(
        data, cut_after=cut if n == 1 else None, ctype="application/octet-stream"
    )
    url = http_server.url("/releases/tiny.zip")
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_RETRIES", "1")
    code, _out, err = _import(url, "--sha256", digest, "--name", "from-web")
    assert code == EXIT_DOWNLOAD and "partial file kept" in err
    assert _models(cxr_home) == [TINY_ID]

    monkeypatch.setenv("CXR_COVID_DOWNLOAD_RETRIES", "4")
    code, out, err = _import(url, "--sha256", digest, "--name", "from-web", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["model_id"] == "from-web" and report["sha256"] == digest
    assert report["source"] == url
    first, second = http_server.requests_to("/releases/tiny.zip")
    assert "Range" not in first
    start = int(second["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut
    assert http_server.sent["/releases/tiny.zip"] == cut + len(data) - start
    assert not (cxr_home / "downloads").exists()  # the archive goes once stored
    np.testing.assert_array_equal(
        cxr_covid.load_model("from-web").predict(xrays).probabilities,
        cxr_covid.load_model(TINY_ID).predict(xrays).probabilities,
    )


def test_http_import_with_wrong_hash_is_refused(
    tiny: Path, tmp_path: Path, cxr_home: Path, http_server: Server
) -> None:
    path, _ = _pack(tmp_path)
    http_server.routes["/m.zip"] = lambda h, n: h.send_body(path.read_bytes())
    code, _out, err = _import(http_server.url("/m.zip"), "--sha256", "1" * 64, "--name", "y")
    assert code == EXIT_DOWNLOAD and "sha256" in err
    assert _models(cxr_home) == [TINY_ID]


def test_unwritable_destination_is_a_clear_error(tiny: Path, tmp_path: Path) -> None:
    # A path "inside" a regular file cannot be created, even by root.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for args in (
        ["models", "pack", TINY_ID, "-o", str(blocker / "x.zip")],
        ["models", "card", TINY_ID, "-o", str(blocker / "MODEL_CARD.md")],
        ["models", "export", TINY_ID, "--out", str(blocker / "exported")],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_USAGE, (args, result.stderr)
        assert "cannot write" in result.stderr
    assert blocker.read_text() == "not a folder"


def test_record_that_does_not_fit_the_model_is_refused(
    tiny: Path, tmp_path: Path, cxr_home: Path
) -> None:
    """Hashes consistent, but the record says 32 px for a 24 px model: not a usable model."""
    path, _ = _pack(tmp_path)
    with zipfile.ZipFile(path) as archive:
        members = {n: archive.read(n) for n in archive.namelist()}
    record = json.loads(members["model.json"])
    record["preprocessing"]["image_size"] = 32
    members["model.json"] = json.dumps(record).encode()
    manifest = json.loads(members[PACK_MANIFEST])
    manifest["files"]["model.json"]["sha256"] = hashlib.sha256(members["model.json"]).hexdigest()
    members[PACK_MANIFEST] = json.dumps(manifest).encode()
    repacked = tmp_path / "repacked.zip"
    repacked.write_bytes(_zip(members))
    code, _out, err = _import(str(repacked), "--name", "misfit")
    assert code == EXIT_MODEL and "record says 32x32 px inputs but the network takes 24x24" in err
    assert _models(cxr_home) == [TINY_ID]


def test_a_model_folder_that_cannot_be_written_still_packs(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A model given by a read-only path: the pack and its .sha256 are written, the record
    cannot take the pack's hash, and the command says so instead of failing."""
    from cxr_covid import atomic

    def read_only(path: Path, data: object) -> None:
        raise atomic.write_error(path, OSError(30, "Read-only file system"))

    monkeypatch.setattr(atomic, "write_json", read_only)
    out = tmp_path / "x.cxr-model.zip"
    result = runner.invoke(app, ["models", "pack", TINY_ID, "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    assert "(the model record is read-only)" in result.stderr
    assert out.is_file() and out.with_name(out.name + ".sha256").is_file()
