"""Issue 22, cases 3, 4 and the model-import advice of 12: hostile servers and URLs.

Against a real HTTP server on 127.0.0.1 (requests is never mocked). Bounds are injected by
module constant or environment so no test needs more than a few MiB.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_DOWNLOAD, EXIT_USAGE, EXIT_WRITE
from cxr_covid.sharing import packs
from tests.data.conftest import Server

runner = CliRunner()
ENDLESS_SAFETY = 64 * 1024**2  # what an unbounded client would take before this test stops


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-2000:]


def _leftovers(home: Path) -> list[str]:
    root = home / "downloads"
    return sorted(p.name for p in root.rglob("*")) if root.exists() else []


def _endless(handler: object, hit: int) -> None:
    """200 with no Content-Length: bytes until the client hangs up (or 64 MiB)."""
    h = handler
    h.send_response(200)  # type: ignore[attr-defined]
    h.send_header("Content-Type", "application/zip")  # type: ignore[attr-defined]
    h.end_headers()  # type: ignore[attr-defined]
    h.close_connection = True  # type: ignore[attr-defined]
    chunk = b"PK" + b"\0" * (64 * 1024 - 2)
    try:
        for _ in range(ENDLESS_SAFETY // len(chunk)):
            h.wfile.write(chunk)  # type: ignore[attr-defined]
    except OSError:
        pass


def _declares(length: int) -> object:
    def route(h: object, hit: int) -> None:
        h.send_response(200)  # type: ignore[attr-defined]
        h.send_header("Content-Type", "application/zip")  # type: ignore[attr-defined]
        h.send_header("Content-Length", str(length))  # type: ignore[attr-defined]
        h.end_headers()  # type: ignore[attr-defined]
        h.close_connection = True  # type: ignore[attr-defined]
        h.wfile.write(b"PK" + b"\0" * 4094)  # type: ignore[attr-defined]

    return route


# --- case 3: malformed URLs ------------------------------------------------------------------


@pytest.mark.parametrize("command", [["models", "import"], ["download", "--url"]])
@pytest.mark.parametrize("url", ["http://[::1/x.zip", "http://127.0.0.1:99999/x.zip", "http:///x"])
def test_malformed_url_is_one_line(command: list[str], url: str, cxr_home: Path) -> None:
    result = runner.invoke(app, [*command, url])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "not a valid URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


# --- case 4: unbounded downloads -------------------------------------------------------------


def test_endless_pack_download_stops_at_the_cap(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs, "MAX_PACK_BYTES", 256 * 1024)
    http_server.routes["/endless.zip"] = _endless
    result = runner.invoke(app, ["models", "import", http_server.url("/endless.zip")])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_DOWNLOAD, result.output
    assert "more than the limit of 262,144 bytes" in result.stderr
    assert ".part" in result.stderr  # names the file it removed
    assert _leftovers(cxr_home) == []


def test_declared_length_above_the_cap_is_refused_before_writing(
    http_server: Server, cxr_home: Path
) -> None:
    http_server.routes["/huge.zip"] = _declares(10_000_000_000_000)
    result = runner.invoke(app, ["models", "import", http_server.url("/huge.zip")])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_DOWNLOAD, result.output
    assert "10,000,000,000,000 bytes" in result.stderr and "limit" in result.stderr
    assert http_server.hits["/huge.zip"] == 1  # refused, not retried
    assert _leftovers(cxr_home) == []


def test_dataset_declared_larger_than_free_space_is_refused(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXR_COVID_MAX_UNZIPPED_BYTES", str(10**15))  # lift the cap: space only
    http_server.routes["/huge.zip"] = _declares(10**14)  # 100 TB: more than any test disk
    result = runner.invoke(app, ["download", "--url", http_server.url("/huge.zip")])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_WRITE, result.output
    assert "free" in result.stderr and str(cxr_home / "downloads") in result.stderr
    assert _leftovers(cxr_home) == []


def test_dataset_declared_larger_than_its_cap_is_refused(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CXR_COVID_MAX_UNZIPPED_BYTES", str(1024**2))
    http_server.routes["/big.zip"] = _declares(2 * 1024**2)
    result = runner.invoke(app, ["download", "--url", http_server.url("/big.zip")])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_DOWNLOAD, result.output
    assert "CXR_COVID_MAX_UNZIPPED_BYTES" in result.stderr
    assert _leftovers(cxr_home) == []


# --- case 12: an HTML or 404 answer to a model import ----------------------------------------


@pytest.mark.parametrize("page", ["/missing.zip", "/login.zip"])
def test_model_import_advice_is_not_about_kaggle(
    http_server: Server, cxr_home: Path, page: str
) -> None:
    http_server.routes["/login.zip"] = lambda h, n: h.send_body(
        b"<!doctype html><title>Sign in</title>", ctype="text/html"
    )
    result = runner.invoke(app, ["models", "import", http_server.url(page)])
    _no_traceback(result.output)
    assert result.exit_code == EXIT_DOWNLOAD, result.output
    assert "kaggle" not in result.stderr.lower()
    assert "--release" not in result.stderr


def test_full_disk_during_a_download_removes_and_names_the_part_file(
    http_server: Server, tmp_path: Path
) -> None:
    """A home on a 1 MiB tmpfs (a user namespace; skipped where not allowed), and a server
    that sends bytes with no length: the disk fills before any cap."""
    import os
    import shutil
    import subprocess
    import sys

    import cxr_covid

    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("no unshare/mount here")
    probe = tmp_path / "probe"
    probe.mkdir()
    if subprocess.run(
        ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k none {probe}"],
        capture_output=True,
    ).returncode:
        pytest.skip("tmpfs mounts in a user namespace are not allowed here")
    http_server.routes["/endless.zip"] = _endless
    home = tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, CXR_COVID_HOME=str(home), CXR_COVID_DOWNLOAD_RETRIES="1")
    env["PYTHONPATH"] = str(Path(cxr_covid.__file__).parents[1])
    script = (
        f"mount -t tmpfs -o size=1m none {home} || exit 99\n"
        f"{sys.executable} -m cxr_covid models import {http_server.url('/endless.zip')}\n"
        f"echo $? > {tmp_path}/rc; find {home} -name '*.part' > {tmp_path}/left"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert (tmp_path / "rc").read_text().strip() == str(EXIT_WRITE), done.stderr[-3000:]
    assert "No space left" in done.stderr and ".part" in done.stderr, done.stderr
    _no_traceback(done.stderr)
    assert (tmp_path / "left").read_text() == ""
