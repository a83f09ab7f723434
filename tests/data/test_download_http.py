"""`cxr-covid download` against a real HTTP server on 127.0.0.1 (requests is never mocked).

Every bad case must exit with its documented code and leave no dataset, visible or hidden.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.errors import EXIT_ARCHIVE, EXIT_DATA, EXIT_DOWNLOAD
from tests.data.conftest import Server
from tests.data.zips import CHAR_DEVICE, SYMLINK, layout_zip, special_member, with_member

runner = CliRunner()
GOOD = layout_zip("current", per_class=10, size=48)


def _download(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["download", *args])
    return result.exit_code, result.stdout, result.stderr


def _datasets(home: Path) -> list[str]:
    root = home / "datasets"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def _downloads(home: Path) -> list[str]:
    root = home / "downloads"
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_downloads_folder_is_removed_when_empty(http_server: Server, cxr_home: Path) -> None:
    http_server.routes["/a.zip"] = lambda h, n: h.send_body(GOOD)
    code, _out, err = _download("--url", http_server.url("/a.zip"))
    assert code == 0, err
    assert not (cxr_home / "downloads").exists()


def _counts(stdout: str) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = json.loads(stdout)["counts"]
    return counts


def test_kaggle_endpoint_current_release(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Kaggle answers with a redirect to a signed storage URL; follow it like the real thing.
    http_server.routes["/api/dataset"] = lambda h, n: (
        h.send_response(302),
        h.send_header("Location", http_server.url("/signed/archive.zip")),
        h.send_header("Content-Length", "0"),
        h.end_headers(),
    )
    http_server.routes["/signed/archive.zip"] = lambda h, n: h.send_body(GOOD)
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", http_server.url("/api/dataset"))
    code, out, err = _download("--json")
    assert code == 0, err
    counts = _counts(out)
    assert (
        sum(counts["train"].values()) + sum(counts["val"].values()) + sum(counts["test"].values())
        == 30
    )  # lung opacity not selected by default
    assert _datasets(cxr_home) == ["kaggle-current"]
    info = json.loads((cxr_home / "datasets" / "kaggle-current" / "dataset.json").read_text())
    assert info["source"]["kind"] == "kaggle"
    assert info["source"]["release"] == "current"
    assert _downloads(cxr_home) == []  # the archive is removed once unpacked


def test_release_number_is_sent_and_names_the_dataset(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.routes["/api/dataset"] = lambda h, n: h.send_body(layout_zip("first", 10))
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", http_server.url("/api/dataset"))
    code, _out, err = _download("--release", "1")
    assert code == 0, err
    assert http_server.log[0][0] == "/api/dataset?datasetVersionNumber=1"
    assert _datasets(cxr_home) == ["kaggle-r1"]


def test_interrupted_transfer_resumes_with_range(http_server: Server, cxr_home: Path) -> None:
    cut = len(GOOD) // 3

    def flaky(h: object, hit: int) -> None:
        h.send_body(GOOD, cut_after=cut if hit == 1 else None)  # type: ignore[attr-defined]

    http_server.routes["/flaky.zip"] = flaky
    code, out, err = _download("--url", http_server.url("/flaky.zip"), "--json")
    assert code == 0, err
    first, second = http_server.requests_to("/flaky.zip")
    assert "Range" not in first
    # The client resumes where its .part file ends: at most the last unfinished read chunk
    # of the broken transfer is fetched again.
    start = int(second["Range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut
    assert http_server.sent["/flaky.zip"] == cut + len(GOOD) - start
    assert sum(sum(c.values()) for c in _counts(out).values()) == 30


def test_interrupted_run_resumes_on_the_next_run(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut = len(GOOD) // 2
    http_server.routes["/big.zip"] = lambda h, n: h.send_body(
        GOOD, cut_after=cut if n == 1 else None
    )
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_RETRIES", "1")
    code, _out, err = _download("--url", http_server.url("/big.zip"))
    assert code == EXIT_DOWNLOAD
    assert "partial file kept" in err
    assert _datasets(cxr_home) == []
    [part] = _downloads(cxr_home)
    assert part.endswith(".zip.part")
    kept = (cxr_home / "downloads" / part).stat().st_size
    assert 0 < kept <= cut
    code, _out, err = _download("--url", http_server.url("/big.zip"))
    assert code == 0, err
    assert http_server.requests_to("/big.zip")[-1]["Range"] == f"bytes={kept}-"
    assert _downloads(cxr_home) == []


def test_changed_file_is_not_spliced_onto_an_old_part(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = GOOD, layout_zip("current", per_class=12, size=48, seed=9)
    http_server.routes["/v.zip"] = lambda h, n: h.send_body(
        old if n == 1 else new,
        etag='"v1"' if n == 1 else '"v2"',
        cut_after=len(old) // 2 if n == 1 else None,
    )
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_RETRIES", "1")
    code, _out, _err = _download("--url", http_server.url("/v.zip"))
    assert code == EXIT_DOWNLOAD
    assert sorted(_downloads(cxr_home))[1].endswith(".zip.part.etag")
    code, out, err = _download("--url", http_server.url("/v.zip"), "--json")
    assert code == 0, err
    second = http_server.requests_to("/v.zip")[1]
    assert second["If-Range"] == '"v1"' and "Range" in second
    assert sum(sum(c.values()) for c in _counts(out).values()) == 36  # the new file, whole
    assert _downloads(cxr_home) == []


def test_server_that_ignores_range_gets_a_fresh_start(http_server: Server) -> None:
    cut = len(GOOD) // 4
    http_server.routes["/norange.zip"] = lambda h, n: h.send_body(
        GOOD, honour_range=False, cut_after=cut if n == 1 else None
    )
    code, _out, err = _download("--url", http_server.url("/norange.zip"))
    assert code == 0, err
    assert http_server.hits["/norange.zip"] == 2


def test_429_then_200_is_retried(http_server: Server) -> None:
    def limited(h: object, hit: int) -> None:
        if hit == 1:
            h.send_status(429, {"Retry-After": "1"})  # type: ignore[attr-defined]
        else:
            h.send_body(GOOD)  # type: ignore[attr-defined]

    http_server.routes["/limited.zip"] = limited
    started = time.monotonic()
    code, _out, err = _download("--url", http_server.url("/limited.zip"))
    assert code == 0, err
    assert http_server.hits["/limited.zip"] == 2
    # Retry-After is honoured only up to the (tiny, test-configured) cap.
    assert time.monotonic() - started < 30


def test_persistent_503_gives_up_with_download_error(http_server: Server, cxr_home: Path) -> None:
    http_server.routes["/down.zip"] = lambda h, n: h.send_status(503)
    code, _out, err = _download("--url", http_server.url("/down.zip"))
    assert code == EXIT_DOWNLOAD
    assert "HTTP 503" in err and "4 attempts" in err
    assert http_server.hits["/down.zip"] == 4
    assert _datasets(cxr_home) == []


def test_401_says_how_to_supply_credentials(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.routes["/api/dataset"] = lambda h, n: h.send_status(401)
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", http_server.url("/api/dataset"))
    code, _out, err = _download()
    assert code == EXIT_DOWNLOAD
    assert "HTTP 401" in err
    assert "KAGGLE_USERNAME" in err and "kaggle.json" in err and "--from-zip" in err
    assert _datasets(cxr_home) == [] and _downloads(cxr_home) == []


def test_credentials_are_sent_to_kaggle_never_printed(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-kaggle-key-0123456789"
    http_server.routes["/api/dataset"] = lambda h, n: h.send_status(403)
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", http_server.url("/api/dataset"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", secret)
    code, out, err = _download()
    assert code == EXIT_DOWNLOAD
    [headers] = http_server.requests_to("/api/dataset")
    assert headers["Authorization"].startswith("Basic ")
    assert "KAGGLE_USERNAME/KAGGLE_KEY were refused" in err
    assert secret not in out + err


def test_kaggle_json_and_bearer_token(
    http_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def needs_token(h: object, hit: int) -> None:
        auth = h.headers.get("Authorization", "")  # type: ignore[attr-defined]
        if auth == "Bearer tok-123":
            h.send_body(GOOD)  # type: ignore[attr-defined]
        else:
            h.send_status(401)  # type: ignore[attr-defined]

    http_server.routes["/api/dataset"] = needs_token
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", http_server.url("/api/dataset"))
    config = tmp_path / "kaggle-config"
    config.mkdir()
    (config / "kaggle.json").write_text('{"username": "u", "key": "k"}')
    code, _out, _err = _download("--name", "a")
    assert code == EXIT_DOWNLOAD  # basic auth from kaggle.json is refused by this server
    assert http_server.log[-1][1]["Authorization"].startswith("Basic ")
    (config / "access_token").write_text("tok-123\n")
    code, _out, err = _download("--name", "b")
    assert code == 0, err


def test_credentials_are_not_sent_to_a_mirror(
    http_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    http_server.routes["/mirror.zip"] = lambda h, n: h.send_body(GOOD)
    monkeypatch.setenv("KAGGLE_API_TOKEN", "tok-should-stay-home")
    code, _out, err = _download("--url", http_server.url("/mirror.zip"))
    assert code == 0, err
    assert "Authorization" not in http_server.requests_to("/mirror.zip")[0]


def test_404(http_server: Server, cxr_home: Path) -> None:
    code, _out, err = _download("--url", http_server.url("/nothing.zip"))
    assert code == EXIT_DOWNLOAD
    assert "HTTP 404" in err and "/nothing.zip" in err
    assert _datasets(cxr_home) == []


def test_secrets_in_a_url_are_never_printed(http_server: Server) -> None:
    url = http_server.url("/gone.zip?X-Goog-Signature=SIGNED-SECRET").replace(
        "http://", "http://user:PASSWORD-SECRET@"
    )
    code, out, err = _download("--url", url)
    assert code == EXIT_DOWNLOAD
    assert "SECRET" not in out + err


@pytest.mark.parametrize("ctype", ["text/html; charset=utf-8", "application/octet-stream"])
def test_html_page_instead_of_zip(http_server: Server, cxr_home: Path, ctype: str) -> None:
    page = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    http_server.routes["/page.zip"] = lambda h, n: h.send_body(page, ctype=ctype)
    code, _out, err = _download("--url", http_server.url("/page.zip"))
    assert code == EXIT_DOWNLOAD
    assert "web page instead of a zip" in err
    assert _datasets(cxr_home) == [] and _downloads(cxr_home) == []


def test_json_message_instead_of_zip(http_server: Server, cxr_home: Path) -> None:
    message = b'{"code": 404, "message": "Dataset version not found"}'
    http_server.routes["/api.zip"] = lambda h, n: h.send_body(message, ctype="application/json")
    code, _out, err = _download("--url", http_server.url("/api.zip"))
    assert code == EXIT_DOWNLOAD
    assert "Dataset version not found" in err
    assert _datasets(cxr_home) == [] and _downloads(cxr_home) == []


def test_sha256_mismatch(http_server: Server, cxr_home: Path) -> None:
    http_server.routes["/a.zip"] = lambda h, n: h.send_body(GOOD)
    code, _out, err = _download("--url", http_server.url("/a.zip"), "--sha256", "0" * 64)
    assert code == EXIT_DOWNLOAD
    assert "sha256" in err
    assert _datasets(cxr_home) == [] and _downloads(cxr_home) == []


def test_read_timeout_is_retried(http_server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_COVID_DOWNLOAD_TIMEOUT", "0.3")

    def slow_first(h: object, hit: int) -> None:
        if hit == 1:
            time.sleep(0.8)
        h.send_body(GOOD)  # type: ignore[attr-defined]

    http_server.routes["/slow.zip"] = slow_first
    code, _out, err = _download("--url", http_server.url("/slow.zip"))
    assert code == 0, err
    assert http_server.hits["/slow.zip"] >= 2


HOSTILE = {
    "truncated": GOOD[: len(GOOD) // 2],
    "dotdot": with_member(GOOD, "../evil.png", b"x"),
    "nested-dotdot": with_member(GOOD, "COVID-19_Radiography_Dataset/../../evil.png", b"x"),
    "absolute": with_member(GOOD, "/tmp/evil.png", b"x"),
    "symlink": with_member(
        GOOD, special_member("COVID-19_Radiography_Dataset/link", SYMLINK), b"/etc/passwd"
    ),
    "device": with_member(GOOD, special_member("dev0", CHAR_DEVICE), b""),
    "not-a-zip": b"\x00\x01 definitely not a zip archive" * 10,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_or_broken_archive_is_refused(
    http_server: Server, cxr_home: Path, case: str
) -> None:
    http_server.routes["/bad.zip"] = lambda h, n: h.send_body(HOSTILE[case])
    code, _out, err = _download("--url", http_server.url("/bad.zip"))
    assert code == EXIT_ARCHIVE, err
    assert "Error:" in err
    assert _datasets(cxr_home) == []  # nothing visible, no .tmp-* leftovers either
    assert _downloads(cxr_home) == []
    assert not (cxr_home.parent / "evil.png").exists()
    assert not Path("/tmp/evil.png").exists()


def test_zip_bomb_is_refused_by_the_size_bound(
    http_server: Server, cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = with_member(GOOD, "COVID-19_Radiography_Dataset/COVID/images/big.png", b"\0" * 4_000_000)
    assert len(bomb) < len(GOOD) + 20_000  # 4 MB of zeros deflate to a few KiB
    monkeypatch.setenv("CXR_COVID_MAX_UNZIPPED_BYTES", "1000000")
    http_server.routes["/bomb.zip"] = lambda h, n: h.send_body(bomb)
    code, _out, err = _download("--url", http_server.url("/bomb.zip"))
    assert code == EXIT_ARCHIVE
    assert "unpack" in err and "CXR_COVID_MAX_UNZIPPED_BYTES" in err
    assert _datasets(cxr_home) == []


def test_failed_replacement_keeps_the_previous_dataset(http_server: Server, cxr_home: Path) -> None:
    http_server.routes["/good.zip"] = lambda h, n: h.send_body(GOOD)
    http_server.routes["/bad.zip"] = lambda h, n: h.send_body(HOSTILE["dotdot"])
    code, _out, err = _download("--url", http_server.url("/good.zip"), "--name", "mine")
    assert code == 0, err
    manifest = (cxr_home / "datasets" / "mine" / "manifest.csv").read_bytes()
    code, _out, err = _download("--url", http_server.url("/bad.zip"), "--name", "mine", "--force")
    assert code == EXIT_ARCHIVE
    assert _datasets(cxr_home) == ["mine"]
    assert (cxr_home / "datasets" / "mine" / "manifest.csv").read_bytes() == manifest


def test_corrupt_png_is_excluded_and_listed(http_server: Server, cxr_home: Path) -> None:
    broken = "COVID-19_Radiography_Dataset/COVID/images/COVID-99.png"
    archive = with_member(GOOD, broken, b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20)
    http_server.routes["/c.zip"] = lambda h, n: h.send_body(archive)
    code, out, err = _download("--url", http_server.url("/c.zip"), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert [e["path"] for e in report["excluded"]] == [f"images/{broken}"]
    assert sum(sum(c.values()) for c in report["counts"].values()) == 30
    manifest = (cxr_home / "datasets" / "c" / "manifest.csv").read_text()
    assert "COVID-99" not in manifest


def test_empty_archive_is_a_data_error(http_server: Server, cxr_home: Path) -> None:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "no images here")
    http_server.routes["/empty.zip"] = lambda h, n: h.send_body(buffer.getvalue())
    code, _out, err = _download("--url", http_server.url("/empty.zip"))
    assert code == EXIT_DATA
    assert "no images" in err
    assert _datasets(cxr_home) == []
