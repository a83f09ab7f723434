"""Hostile and careless inputs to `download`/`reproduce` (issue 13, items 1, 2, 11, 15, 19).

Network cases run against a real HTTP server on 127.0.0.1 (requests is never mocked); the
offline case uses a name under `.invalid`, which never resolves (RFC 6761), so it fails at
once with or without a network.
"""

from __future__ import annotations

import io
import json
import os
import signal
import threading
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data.extract import (
    MAX_ARCHIVE_RATIO,
    RATIO_FLOOR,
    SUSPICIOUS_SIZE,
    Limits,
    safe_extract,
)
from cxr_covid.errors import EXIT_ARCHIVE, EXIT_DOWNLOAD, ArchiveError
from tests.data.conftest import Server
from tests.data.zips import layout_zip, png_bytes, with_member

runner = CliRunner()
GOOD = layout_zip("current", per_class=10, size=48)
COVID_DIR = "COVID-19_Radiography_Dataset/COVID/images"


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def _everything_under(root: Path) -> list[str]:
    if not root.exists():
        return []
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


def _split_bomb(members: int, member_size: int) -> bytes:
    """GOOD plus `members` members of zeros, each small enough to pass a per-member check."""
    buffer = io.BytesIO(GOOD)
    with zipfile.ZipFile(buffer, "a", zipfile.ZIP_DEFLATED) as archive:
        for i in range(members):
            archive.writestr(f"{COVID_DIR}/zeros-{i}.png", b"\0" * member_size)
    return buffer.getvalue()


# --- item 1: split zip bombs ------------------------------------------------------------------


def test_split_bomb_of_many_moderate_members_is_refused_and_leaves_nothing(
    tmp_path: Path, cxr_home: Path
) -> None:
    # Each member is at the per-member threshold (so no single member is refused), but
    # together they unpack to hundreds of times the archive's size: the whole-archive
    # ratio must refuse it before a byte is written.
    bomb = _split_bomb(members=48, member_size=SUSPICIOUS_SIZE)
    unpacked = 48 * SUSPICIOUS_SIZE
    assert unpacked > MAX_ARCHIVE_RATIO * len(bomb) + RATIO_FLOOR  # a bomb by the policy
    path = tmp_path / "bomb.zip"
    path.write_bytes(bomb)
    code, _out, err = _run("download", "--from-zip", str(path))
    assert code == EXIT_ARCHIVE, err
    assert "zip bomb" in err and "CXR_COVID_MAX_UNZIP_RATIO" in err
    assert _everything_under(cxr_home / "datasets") == []  # no dataset, no .tmp-* either


def test_bomb_members_over_the_tiny_size_are_refused_one_by_one(tmp_path: Path) -> None:
    # 2 MiB of zeros deflates ~1000x: refused by the per-member ratio even when the
    # whole-archive ratio is switched off, and even though it is far below the old 64 MiB.
    path = tmp_path / "one.zip"
    path.write_bytes(with_member(GOOD, f"{COVID_DIR}/zeros.png", b"\0" * (2 * 1024**2)))
    with pytest.raises(ArchiveError, match="inflates"):
        safe_extract(path, tmp_path / "out", limits=Limits(max_archive_ratio=1e9))


def test_ratio_limit_can_be_raised_and_a_bad_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "bomb.zip"
    path.write_bytes(_split_bomb(members=24, member_size=SUSPICIOUS_SIZE))
    with pytest.raises(ArchiveError, match="zip bomb"):
        safe_extract(path, tmp_path / "a")
    monkeypatch.setenv("CXR_COVID_MAX_UNZIP_RATIO", "100000")  # the user knows better
    with zipfile.ZipFile(io.BytesIO(GOOD)) as good:
        members = len(good.infolist())
    assert len(safe_extract(path, tmp_path / "b")) == members + 24
    monkeypatch.setenv("CXR_COVID_MAX_UNZIP_RATIO", "nan")
    with pytest.raises(ArchiveError, match="CXR_COVID_MAX_UNZIP_RATIO"):
        safe_extract(path, tmp_path / "c")


def test_real_image_zip_is_near_1x_and_far_below_the_ratio(cxr_dev_zip: Path) -> None:
    with zipfile.ZipFile(cxr_dev_zip) as archive:
        unpacked = sum(info.file_size for info in archive.infolist())
    ratio = unpacked / cxr_dev_zip.stat().st_size
    assert 0.9 < ratio < 1.1  # PNGs are already compressed (docs: measured 0.99x)
    assert ratio * 10 < MAX_ARCHIVE_RATIO


def test_files_that_fail_to_decode_are_deleted_not_kept(tmp_path: Path, cxr_home: Path) -> None:
    archive = with_member(GOOD, f"{COVID_DIR}/broken.png", b"\0" * 300_000)
    archive = with_member(archive, "COVID-19_Radiography_Dataset/Other/images/x.png", b"x")
    path = tmp_path / "c.zip"
    path.write_bytes(archive)
    code, out, err = _run("download", "--from-zip", str(path), "--json")
    assert code == 0, err
    assert [e["path"] for e in json.loads(out)["excluded"]] == [f"images/{COVID_DIR}/broken.png"]
    images = cxr_home / "datasets" / "c" / "images"
    # Lung masks stay beside their images (for the lung field); they are not X-rays.
    kept = [p for p in _everything_under(images) if p.endswith(".png") and "/masks/" not in p]
    assert len(kept) == 30  # exactly the manifest's images
    assert not (images / COVID_DIR / "broken.png").exists()
    assert not (images / "COVID-19_Radiography_Dataset/Other/images/x.png").exists()


# --- item 2: --from-dir and links ------------------------------------------------------------


def _class_folders(root: Path) -> Path:
    import numpy as np

    rng = np.random.default_rng(0)
    for label in ("covid", "normal", "viral_pneumonia"):
        (root / label).mkdir(parents=True)
        for i in range(6):
            (root / label / f"{label}-{i}.png").write_bytes(png_bytes(label, 32, rng))
    return root


def test_from_dir_never_follows_links_out_of_the_folder(tmp_path: Path, cxr_home: Path) -> None:
    import numpy as np

    folder = _class_folders(tmp_path / "mine")
    secret = tmp_path / "private" / "shadow"
    secret.parent.mkdir()
    secret.write_text("root:$6$hash:19000:0:99999:7:::\n")
    outside_png = tmp_path / "private" / "someone-else.png"
    outside_png.write_bytes(png_bytes("covid", 32, np.random.default_rng(1)))
    (folder / "covid" / "x.png").symlink_to(secret)
    (folder / "covid" / "y.png").symlink_to(outside_png)  # decodes, but lives outside
    (folder / "covid" / "inside.png").symlink_to(folder / "normal" / "normal-0.png")
    (folder / "covid" / "notes.png").write_text("not an image at all")

    code, out, err = _run("download", "--from-dir", str(folder), "--json")
    assert code == 0, err
    images = cxr_home / "datasets" / "mine" / "images"
    assert not (images / "covid" / "x.png").exists()
    assert not (images / "covid" / "y.png").exists()
    assert not (images / "covid" / "notes.png").exists()  # never copied: does not decode
    assert (images / "covid" / "inside.png").is_file()  # a link inside the folder is fine
    copied = [path for path in images.rglob("*") if path.is_file()]
    assert copied
    for path in copied:
        assert b"root:$6$" not in path.read_bytes()
    reasons = {Path(e["path"]).name: e["reason"] for e in json.loads(out)["excluded"]}
    assert set(reasons) == {"x.png", "y.png", "notes.png"}
    assert "outside" in reasons["x.png"] and "outside" in reasons["y.png"]
    report = json.loads((cxr_home / "datasets" / "mine" / "report.json").read_text())
    assert len(report["excluded"]) == 3


def test_from_dir_of_only_outside_links_says_why(tmp_path: Path, cxr_home: Path) -> None:
    real = _class_folders(tmp_path / "real")
    links = tmp_path / "links"
    for label in ("covid", "normal", "viral_pneumonia"):
        (links / label).mkdir(parents=True)
        for image in (real / label).iterdir():
            (links / label / image.name).symlink_to(image)
    code, _out, err = _run("download", "--from-dir", str(links))
    assert code == 3, err
    assert "outside" in err
    assert _everything_under(cxr_home / "datasets") == []


# --- item 3: the umask is respected ----------------------------------------------------------


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o077, 0o600, 0o700)]
)
def test_dataset_files_follow_the_umask(
    tmp_path: Path, cxr_home: Path, umask: int, file_mode: int, dir_mode: int
) -> None:
    path = tmp_path / "u.zip"
    path.write_bytes(GOOD)
    old = os.umask(umask)
    try:
        code, _out, err = _run("download", "--from-zip", str(path))
    finally:
        os.umask(old)
    assert code == 0, err
    root = cxr_home / "datasets" / "u"
    assert root.stat().st_mode & 0o777 == dir_mode
    for name in ("manifest.csv", "dataset.json", "report.json"):
        assert (root / name).stat().st_mode & 0o777 == file_mode, name


# --- item 11: one download of a file at a time -----------------------------------------------


def test_second_download_of_the_same_url_fails_fast_and_the_first_completes(
    http_server: Server, cxr_home: Path
) -> None:
    from cxr_covid.data.ingest import download_dataset

    release = threading.Event()

    def slow_first(h: object, hit: int) -> None:
        if hit > 1:
            h.send_body(GOOD)  # type: ignore[attr-defined]
            return
        h.send_response(200)  # type: ignore[attr-defined]
        h.send_header("Content-Type", "application/zip")  # type: ignore[attr-defined]
        h.send_header("Content-Length", str(len(GOOD)))  # type: ignore[attr-defined]
        h.end_headers()  # type: ignore[attr-defined]
        h.wfile.write(GOOD[:1000])  # type: ignore[attr-defined]
        h.wfile.flush()  # type: ignore[attr-defined]
        release.wait(20)
        h.wfile.write(GOOD[1000:])  # type: ignore[attr-defined]

    http_server.routes["/same.zip"] = slow_first
    url = http_server.url("/same.zip")
    outcome: dict[str, object] = {}

    def first() -> None:
        try:
            outcome["result"] = download_dataset(url=url, name="first")
        except BaseException as exc:  # reported by the assertions below
            outcome["error"] = exc

    worker = threading.Thread(target=first)
    worker.start()
    try:
        downloads = cxr_home / "downloads"
        deadline = time.monotonic() + 10
        while not list(downloads.glob("*.part")) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert list(downloads.glob("*.part")), "the first download never started"
        code, _out, err = _run("download", "--url", url, "--name", "second")
    finally:
        release.set()
        worker.join(30)
    assert code == EXIT_DOWNLOAD, err
    assert "another download of this file is in progress" in err
    assert "error" not in outcome, outcome.get("error")
    assert (cxr_home / "datasets" / "first" / "manifest.csv").is_file()
    assert not (cxr_home / "datasets" / "second").exists()
    assert not downloads.exists()  # archive, .part and lock file all gone


# --- item 15: offline ------------------------------------------------------------------------

UNRESOLVABLE = "http://nonexistent.invalid/covid.zip"


def test_failed_name_lookup_is_not_retried_and_says_what_to_do(cxr_home: Path) -> None:
    code, _out, err = _run("download", "--url", UNRESOLVABLE)
    assert code == EXIT_DOWNLOAD, err
    assert "offline" in err and "--from-zip" in err and "--url" in err
    assert "attempts" not in err  # failed at the first lookup
    assert _everything_under(cxr_home / "datasets") == []
    assert not (cxr_home / "downloads").exists()


def test_reproduce_offline_fails_at_once_and_leaves_no_run_folder(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's first command, with the Kaggle endpoint unreachable by name.
    monkeypatch.setenv("CXR_COVID_KAGGLE_URL", "http://nonexistent.invalid/api/dataset")
    code, _out, err = _run("reproduce", "--preset", "quick")
    assert code == EXIT_DOWNLOAD, err
    assert "--from-zip" in err and "kaggle.com/datasets" in err
    assert "estimate: about" not in err  # failed before spending time on an estimate
    assert not (cxr_home / "reproduce").exists() or _everything_under(cxr_home / "reproduce") == []
    assert _everything_under(cxr_home / "datasets") == []


# --- item 19: Ctrl-C and a mirror's 401 ------------------------------------------------------


def test_ctrl_c_during_download_says_the_partial_file_resumes(
    http_server: Server, cxr_home: Path
) -> None:
    main_pid = os.getpid()

    def interrupt_midway(h: object, hit: int) -> None:
        h.send_response(200)  # type: ignore[attr-defined]
        h.send_header("Content-Type", "application/zip")  # type: ignore[attr-defined]
        h.send_header("Content-Length", str(len(GOOD)))  # type: ignore[attr-defined]
        h.end_headers()  # type: ignore[attr-defined]
        h.wfile.write(GOOD[: len(GOOD) // 2])  # type: ignore[attr-defined]
        h.wfile.flush()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        parts = cxr_home / "downloads"
        while time.monotonic() < deadline and not any(
            p.stat().st_size for p in parts.glob("*.part")
        ):
            time.sleep(0.02)
        os.kill(main_pid, signal.SIGINT)  # the user presses Ctrl-C
        time.sleep(0.5)

    http_server.routes["/big.zip"] = interrupt_midway
    code, _out, err = _run("download", "--url", http_server.url("/big.zip"))
    assert code == 130, err
    [part] = list((cxr_home / "downloads").glob("*.part"))
    assert part.stat().st_size > 0
    flat = " ".join(err.split())
    assert "nothing half-written was kept" not in flat
    assert "resume" in flat and part.name in flat
    assert _everything_under(cxr_home / "datasets") == []


@pytest.mark.parametrize("kind", ["401", "sign-in page"])
def test_a_mirror_wanting_a_login_is_not_told_about_kaggle(
    http_server: Server, cxr_home: Path, kind: str
) -> None:
    page = b"<!DOCTYPE html><html><body>Please sign in</body></html>"
    http_server.routes["/private.zip"] = lambda h, n: (
        h.send_status(401) if kind == "401" else h.send_body(page, ctype="text/html")
    )
    code, _out, err = _run("download", "--url", http_server.url("/private.zip"))
    assert code == EXIT_DOWNLOAD
    assert "KAGGLE" not in err and "kaggle.json" not in err
    assert "--from-zip" in " ".join(err.split())
