"""Issue 13, items 5, 6, 9, 10 and 16: environment problems and damaged files end in one
`Error:` line and a documented exit code, never a traceback, and leave nothing half-written.

Tests run as root in CI, where chmod does not stop a write: a full disk is /dev/full, an
impossible place is a path under /proc, and a read-only home is a read-only bind mount made
in a user namespace (`unshare -rm`; skipped where the kernel does not allow it).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import cxr_covid
from cxr_covid import atomic, classes
from cxr_covid.cli import app
from cxr_covid.errors import EXIT_MODEL, EXIT_USAGE, EXIT_WRITE, WriteError
from tests.helpers import blob_image, build_dataset, write_class_folders
from tests.predict.conftest import TINY_SIZE, save_tiny_model

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
HAS_DEV_FULL = Path("/dev/full").exists()
HAS_PROC = Path("/proc/self").exists()


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["CXR_COVID_HOME"] = str(home)
    # The same sources as this test process (a checkout's src/, or the installed package).
    env["PYTHONPATH"] = os.pathsep.join([str(Path(cxr_covid.__file__).parents[1]), str(REPO)])
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    env.update(extra)
    return env


def _no_traceback(text: str) -> None:
    assert "Traceback" not in text, text[-3000:]
    assert "Exception ignored" not in text, text[-3000:]


@pytest.fixture(scope="module")
def model_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A home with one tiny 24 px model, `tiny-baseline`."""
    home = tmp_path_factory.mktemp("h13-home")
    save_tiny_model(home)
    return home


@pytest.fixture
def xrays(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(3)
    folder = tmp_path / "xrays"
    folder.mkdir()
    files = []
    for i in range(6):
        path = folder / f"x{i}.png"
        Image.fromarray(blob_image(classes.STUDY_CLASSES[i % 3], 32, rng), mode="L").save(path)
        files.append(path)
    return files


def _copy_model(src_home: Path, home: Path, model_id: str = "tiny-baseline") -> Path:
    target = home / "models" / model_id
    shutil.copytree(src_home / "models" / "tiny-baseline", target)
    return target


def _edit_record(folder: Path, **changes: object) -> None:
    record = json.loads((folder / "model.json").read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            record[outer][inner] = value
        else:
            record[key] = value
    (folder / "model.json").write_text(json.dumps(record))


# --- item 5: every write failure is exit 10 with one line ---------------------------------


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_atomic_writes_to_a_pipe_go_through_it_and_keep_it(tmp_path: Path) -> None:
    """Renaming a temporary file over a device or pipe replaces it (as root, even /dev/full
    or /dev/null): such targets are written in place."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()), daemon=True)
    reader.start()
    atomic.write_text(fifo, "through the pipe\n")
    reader.join(20)
    assert received == [b"through the pipe\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


@pytest.mark.skipif(not HAS_DEV_FULL, reason="no /dev/full")
def test_atomic_write_to_a_full_device_is_a_write_error() -> None:
    # Guard first: were devices not written in place, the write below would replace the
    # machine's /dev/full with a regular file (tests run as root).
    if not stat.S_ISCHR(Path("/dev/full").stat().st_mode):
        pytest.skip("/dev/full is not a device here")
    assert atomic._is_special(Path("/dev/full"))
    with pytest.raises(WriteError, match="cannot write /dev/full: No space left"):
        atomic.write_text(Path("/dev/full"), "x" * 100_000)
    assert stat.S_ISCHR(Path("/dev/full").stat().st_mode)


@pytest.mark.skipif(not HAS_PROC, reason="no /proc")
def test_atomic_writes_under_proc_are_write_errors(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="cannot write /proc/cxr-covid-test"):
        atomic.write_json(Path("/proc/cxr-covid-test/report.json"), {"a": 1})
    with pytest.raises(WriteError), atomic.building_dir(Path("/proc/cxr-covid-test")):
        pass
    with pytest.raises(WriteError):
        atomic.check_writable(Path("/proc/cxr-covid-test"))


@pytest.mark.skipif(not HAS_DEV_FULL, reason="no /dev/full")
def test_predict_to_a_full_disk_exits_10(model_home: Path, xrays: list[Path]) -> None:
    model = str(model_home / "models" / "tiny-baseline")
    result = runner.invoke(app, ["predict", *map(str, xrays), "-m", model, "-o", "/dev/full"])
    assert result.exit_code == EXIT_WRITE, result.output
    assert "Error: cannot write /dev/full: No space left on device" in result.output
    _no_traceback(result.output)


@pytest.mark.skipif(not HAS_PROC, reason="no /proc")
def test_predict_out_under_proc_exits_10_and_leaves_nothing(
    model_home: Path, xrays: list[Path]
) -> None:
    model = str(model_home / "models" / "tiny-baseline")
    out = "/proc/cxr-covid-test/out.csv"
    result = runner.invoke(app, ["predict", str(xrays[0]), "-m", model, "-o", out])
    assert result.exit_code == EXIT_WRITE, result.output
    assert f"cannot write {out}" in result.output
    _no_traceback(result.output)


@pytest.mark.skipif(not HAS_PROC, reason="no /proc")
def test_eval_checks_its_outputs_before_computing(
    monkeypatch: pytest.MonkeyPatch, model_home: Path, tmp_path: Path
) -> None:
    import cxr_covid.evaluation.evaluate

    def must_not_run(*args: object, **kwargs: object) -> None:
        raise AssertionError("evaluated before checking that the outputs can be written")

    monkeypatch.setattr(cxr_covid.evaluation.evaluate, "evaluate", must_not_run)
    data = write_class_folders(tmp_path / "data", 2, 24)
    model = str(model_home / "models" / "tiny-baseline")
    for flag, target in (
        ("--json-out", "/proc/cxr-covid-test/r.json"),
        ("--markdown", "/proc/cxr-covid-test/r.md"),
        ("--plots", "/proc/cxr-covid-test/plots"),
    ):
        args = ["eval", model, "--data", str(data), "--no-save", flag, target]
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_WRITE, result.output
        assert "cannot write /proc/cxr-covid-test" in result.output
        _no_traceback(result.output)


@pytest.mark.skipif(not HAS_PROC, reason="no /proc")
def test_heatmap_out_under_proc_exits_10_before_any_image(
    model_home: Path, xrays: list[Path]
) -> None:
    model = str(model_home / "models" / "tiny-baseline")
    args = ["heatmap", *map(str, xrays[:2]), "-m", model, "--out", "/proc/cxr-covid-test/maps"]
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_WRITE, result.output
    assert "cannot write /proc/cxr-covid-test/maps" in result.output
    _no_traceback(result.output)


@pytest.mark.parametrize("filename", ["/somewhere/file.bin", None])
def test_an_unwrapped_write_error_is_still_exit_10(
    monkeypatch: pytest.MonkeyPatch, filename: str | None
) -> None:
    """The last resort in the CLI's one error handler: a core write the atomic helpers did
    not cover (a full disk under an open file) is still one line and exit 10."""
    import errno

    import cxr_covid.system

    def full_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", filename)

    monkeypatch.setattr(cxr_covid.system, "summarize_models", full_disk)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == EXIT_WRITE, result.output
    assert "Error: cannot write" in result.output and "No space left" in result.output
    if filename:
        assert filename in result.output
    _no_traceback(result.output)


def test_other_os_errors_are_not_called_write_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    import cxr_covid.system

    def broken() -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(cxr_covid.system, "summarize_models", broken)
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 1  # a bug or a failing disk: not "cannot write"
    assert "cannot write" not in result.output


def _read_only_mount_works(tmp_path: Path) -> bool:
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        return False
    probe = tmp_path / "ro-probe"
    probe.mkdir()
    script = f"mount --bind -o ro {probe} {probe} && ! touch {probe}/x 2>/dev/null"
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True)
    return done.returncode == 0


def test_read_only_home_download_train_eval_rm_exit_10(tmp_path: Path, model_home: Path) -> None:
    """Each command on a home mounted read-only: exit 10, one line, the home unchanged."""
    if not _read_only_mount_works(tmp_path):
        pytest.skip("read-only bind mounts in a user namespace are not allowed here")
    home = tmp_path / "home"
    build_dataset(home, "blobs", per_class=4, size=16)
    _copy_model(model_home, home)
    before = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    source = write_class_folders(tmp_path / "incoming", 2, 16)
    cli = f"{sys.executable} -m cxr_covid"
    commands = {
        "download": f"{cli} download --from-dir {source} --name fresh",
        "train": f"{cli} train --dataset blobs --epochs 1 --image-size 16 --name t1",
        "eval": f"{cli} eval tiny-baseline",
        "rm": f"{cli} models rm tiny-baseline --yes",
    }
    script = [f"mount --bind -o ro {home} {home} || exit 99"]
    for name, command in commands.items():
        logs = f"{tmp_path}/{name}"
        script.append(f"{command} >{logs}.out 2>{logs}.err; echo $? >{logs}.rc")
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "\n".join(script)],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    for name in commands:
        rc = int((tmp_path / f"{name}.rc").read_text())
        stderr = (tmp_path / f"{name}.err").read_text()
        assert rc == EXIT_WRITE, f"{name}: exit {rc}\n{stderr[-3000:]}"
        assert "Error: cannot write" in stderr and "Read-only file system" in stderr, stderr
        assert str(home) in stderr, stderr
        _no_traceback(stderr)
    after = sorted(str(p.relative_to(home)) for p in home.rglob("*"))
    assert after == before


# --- item 6: one broken record never breaks the store -------------------------------------


def test_a_broken_record_is_listed_as_broken_and_hides_nothing(
    cxr_home: Path, model_home: Path
) -> None:
    _copy_model(model_home, cxr_home, "good")
    _edit_record(cxr_home / "models" / "good", id="good")
    broken = _copy_model(model_home, cxr_home, "bad")
    _edit_record(broken, id="bad", **{"preprocessing.image_size": "abc"})

    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    _no_traceback(listed.output)
    assert "good" in listed.output and "bad" in listed.output
    assert "bad is broken" in listed.output and "image_size" in listed.output

    as_json = runner.invoke(app, ["models", "list", "--json"])
    assert as_json.exit_code == 0, as_json.output
    by_id = {m["id"]: m for m in json.loads(as_json.stdout)["models"]}
    assert by_id["good"]["broken"] is None
    assert "image_size" in by_id["bad"]["broken"]

    info = runner.invoke(app, ["info"])
    assert info.exit_code == 0, info.output
    assert "good" in info.output and "bad is broken" in info.output

    show = runner.invoke(app, ["models", "show", "bad"])
    assert show.exit_code == EXIT_MODEL
    assert "image_size" in show.output
    _no_traceback(show.output)


def test_broken_metrics_values_do_not_crash_the_listing(cxr_home: Path, model_home: Path) -> None:
    folder = _copy_model(model_home, cxr_home, "odd")
    _edit_record(folder, id="odd", metrics={"best_val_accuracy": "high"})
    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert "odd is broken" in listed.output


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"preprocessing.image_size": TINY_SIZE * 2}, "inputs but the network takes"),
        ({"classes": ["covid", "normal"]}, "the network has 3 outputs"),
        ({"preprocessing.resize": "sharpest"}, "unknown resize method"),
        ({"classes": "covid"}, "no class list"),
    ],
)
def test_predict_with_a_record_that_disagrees_with_its_network_exits_6(
    cxr_home: Path,
    model_home: Path,
    xrays: list[Path],
    tmp_path: Path,
    change: dict[str, object],
    reason: str,
) -> None:
    folder = _copy_model(model_home, cxr_home, "liar")
    _edit_record(folder, id="liar", **change)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", *map(str, xrays), "-m", "liar", "-o", str(out)])
    assert result.exit_code == EXIT_MODEL, result.output
    assert reason in result.output
    _no_traceback(result.output)
    assert not out.exists()  # no header-only CSV


# --- item 9: damaged and hostile model files -----------------------------------------------


def test_a_truncated_model_file_says_corrupt_or_truncated(
    cxr_home: Path, model_home: Path, xrays: list[Path], tmp_path: Path
) -> None:
    folder = _copy_model(model_home, cxr_home)
    data = (folder / "model.keras").read_bytes()
    (folder / "model.keras").write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["predict", str(xrays[0]), "-o", str(out)])
    assert result.exit_code == EXIT_MODEL, result.output
    assert "corrupt or truncated" in result.output
    assert "File not found" not in result.output
    assert not out.exists()


def _lambda_model(path: Path) -> None:
    import keras

    inputs = keras.Input((16, 16, 3))
    outputs = keras.layers.Lambda(lambda x: x * 2.0)(inputs)
    keras.Model(inputs, outputs).save(path)


def _interrupted_run(home: Path, run_id: str = "r1") -> Path:
    from cxr_covid.training.run import TrainConfig

    build_dataset(home, "blobs", per_class=4, size=16)
    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    config = TrainConfig(dataset="blobs", epochs=2, batch_size=4, image_size=16, name=run_id)
    (folder / "config.json").write_text(json.dumps({"run_id": run_id, "config": config.to_dict()}))
    (folder / "state.json").write_text(json.dumps({"epochs_done": 1}))
    return folder


@pytest.mark.parametrize("damage", ["hostile", "truncated", "state"])
def test_resume_with_a_damaged_or_hostile_checkpoint_exits_6(cxr_home: Path, damage: str) -> None:
    folder = _interrupted_run(cxr_home)
    _lambda_model(folder / "checkpoint.keras")
    if damage == "truncated":
        data = (folder / "checkpoint.keras").read_bytes()
        (folder / "checkpoint.keras").write_bytes(data[: len(data) // 3])
    if damage == "state":
        (folder / "state.json").write_text(json.dumps({"epochs_done": "one"}))
    result = runner.invoke(app, ["train", "--resume", "r1"])
    assert result.exit_code == EXIT_MODEL, result.output
    _no_traceback(result.output)
    expected = {
        "hostile": "safe mode",
        "truncated": "corrupt or truncated",
        "state": "corrupt training run",
    }[damage]
    assert expected in result.output
    assert not (cxr_home / "models" / "r1").exists()


# --- item 10: a closed pipe, and inputs that are not regular files -------------------------


def test_a_closed_pipe_ends_quietly_with_141(model_home: Path, xrays: list[Path]) -> None:
    """`predict -o - | head -0`: the reader is gone before the first row."""
    model = str(model_home / "models" / "tiny-baseline")
    command = [sys.executable, "-m", "cxr_covid", "predict", *map(str, xrays * 50)]
    command += ["-m", model, "-o", "-", "--batch-size", "4"]
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will ever read
    done = subprocess.run(
        command,
        env=_env(model_home),
        stdout=write_end,
        stderr=subprocess.PIPE,
        text=True,
        timeout=300,
    )
    os.close(write_end)
    assert done.returncode == 141, done.stderr[-3000:]
    _no_traceback(done.stderr)
    assert "Error" not in done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_predict_refuses_a_fifo_and_dev_zero_at_once(model_home: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "scan.png"
    os.mkfifo(fifo)
    model = str(model_home / "models" / "tiny-baseline")
    for source in (str(fifo), "/dev/zero"):
        results: list[object] = []
        args = ["predict", source, "-m", model, "-o", str(tmp_path / "o.csv")]
        worker = threading.Thread(
            target=lambda r=results, a=args: r.append(runner.invoke(app, a)), daemon=True
        )
        worker.start()
        worker.join(60)
        if worker.is_alive() and source == str(fifo):
            _release(fifo)  # let the blocked reader go, so the suite can end
        assert not worker.is_alive(), f"predict blocked on {source}"
        result = results[0]
        assert result.exit_code == EXIT_USAGE, result.output  # type: ignore[attr-defined]
        assert "not a regular file" in result.output  # type: ignore[attr-defined]


def _release(fifo: Path) -> None:
    """Open the FIFO for writing and close it: a reader blocked on it sees end of file."""
    with contextlib.suppress(OSError):
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


# --- item 16: rows reach stdout even with a progress bar on a terminal --------------------


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_predict_to_redirected_stdout_under_a_terminal_keeps_every_row(
    model_home: Path, xrays: list[Path], tmp_path: Path
) -> None:
    """`predict -o - > out.csv` typed in a terminal: stdin and stderr are the terminal."""
    import pty

    model = str(model_home / "models" / "tiny-baseline")
    master, slave = pty.openpty()
    out = tmp_path / "out.csv"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cxr_covid",
                "predict",
                *map(str, xrays),
                "-m",
                model,
                "-o",
                "-",
            ],
            env=_env(model_home, TERM="xterm-256color", COLUMNS="100"),
            stdin=slave,
            stdout=sink,
            stderr=slave,
        )
        os.close(slave)
        terminal = bytearray()
        while True:  # drain the terminal, or the progress bar would block the child
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            terminal.extend(chunk)
        proc.wait(timeout=300)
    os.close(master)
    assert proc.returncode == 0, terminal.decode(errors="replace")[-3000:]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("path,predicted_class,")
    assert [line.split(",")[0] for line in lines[1:]] == [str(p) for p in xrays]
    assert b"path,predicted_class" not in bytes(terminal)  # rows went to the file only
