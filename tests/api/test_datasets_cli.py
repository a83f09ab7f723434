"""`cxr-covid datasets list|show|rm`, and the archive's sha256 and size in dataset.json."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_DATA, EXIT_USAGE
from tests.data.zips import layout_zip
from tests.helpers import build_dataset

runner = CliRunner()


def _run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["datasets", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_list_table_and_json(cxr_home: Path) -> None:
    code, out, _ = _run("list")
    assert code == 0 and "No datasets yet" in out
    build_dataset(cxr_home, "alpha", per_class=5)
    build_dataset(cxr_home, "beta", per_class=3)
    code, out, err = _run("list")
    assert code == 0, err
    assert "Datasets" in out and "alpha" in out and "beta" in out
    code, out, _ = _run("list", "--json")
    listed = json.loads(out)["datasets"]
    assert [d["name"] for d in listed] == ["alpha", "beta"]
    assert listed[0]["images"] == 15
    assert listed[0]["splits"] == {"train": 9, "val": 3, "test": 3}


def test_show_names_unknown_and_known(cxr_home: Path) -> None:
    build_dataset(cxr_home, "alpha", per_class=2)
    code, out, err = _run("show", "alpha", "--json")
    assert code == 0, err
    assert json.loads(out)["name"] == "alpha"
    code, out, _ = _run("show")
    assert code == 0 and "Dataset alpha" in out
    code, _out, err = _run("show", "gamma")
    assert code == EXIT_DATA and "known: alpha" in err


def test_rm_asks_refuses_unknown_and_removes(cxr_home: Path) -> None:
    build_dataset(cxr_home, "alpha", per_class=2)
    build_dataset(cxr_home, "beta", per_class=2)
    code, _out, err = _run("rm", "alpha", "nope", "--yes")
    assert code == EXIT_DATA and "known: alpha, beta" in err
    assert (cxr_home / "datasets" / "alpha").is_dir()  # nothing removed when one name is bad
    code, out, _ = _run("rm", "alpha", stdin="n\n")
    assert code == 0 and "kept alpha" in out
    assert (cxr_home / "datasets" / "alpha").is_dir()
    code, _out, err = _run("rm", "alpha")  # no answer at all (stdin closed)
    assert code == EXIT_USAGE and "--yes" in err
    code, out, _ = _run("rm", "alpha", stdin="y\n")
    assert code == 0 and "removed alpha" in out
    code, out, _ = _run("rm", "beta", "-y")
    assert code == 0
    assert sorted(p.name for p in (cxr_home / "datasets").iterdir()) == []


def test_download_records_the_archive_sha256_and_size(cxr_home: Path, tmp_path: Path) -> None:
    data = layout_zip("current", per_class=10, size=32)
    archive = tmp_path / "db.zip"
    archive.write_bytes(data)
    result = runner.invoke(app, ["download", "--from-zip", str(archive), "--name", "db"])
    assert result.exit_code == 0, result.stderr
    info = json.loads((cxr_home / "datasets" / "db" / "dataset.json").read_text())
    assert info["archive"] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    code, out, _ = _run("show", "db")
    assert code == 0 and hashlib.sha256(data).hexdigest()[:20] in out.replace("\n", "")


def test_old_records_without_archive_still_list(cxr_home: Path) -> None:
    build_dataset(cxr_home, "old", per_class=2)  # dataset.json without "archive"
    code, out, _ = _run("show", "old", "--json")
    assert code == 0 and "archive" not in json.loads(out)
