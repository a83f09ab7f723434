"""Real processes: Ctrl-C mid-run then --resume; two workers on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.models import store
from tests.helpers import build_dataset

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CXR_COVID_HOME=str(home),
        PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]),
        TF_CPP_MIN_LOG_LEVEL="3",
        **extra,
    )
    if "TF_CONFIG" not in extra:
        env.pop("TF_CONFIG", None)
    return env


@pytest.mark.parametrize(
    "sig",
    [
        signal.SIGINT,  # Ctrl-C
        pytest.param(signal.SIGKILL, marks=pytest.mark.slow),  # a crash: no clean-up at all
    ],
)
def test_interrupt_leaves_a_checkpoint_and_resume_finishes(
    cxr_home: Path, sig: signal.Signals
) -> None:
    build_dataset(cxr_home, "blobs", per_class=8, size=32)
    epochs = 30
    command = [sys.executable, "-m", "cxr_covid", "train", "--dataset", "blobs", "--name", "r1"]
    command += ["--epochs", str(epochs), "--image-size", "32", "--batch-size", "4"]
    proc = subprocess.Popen(
        command,
        env=_env(cxr_home),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    checkpoint = cxr_home / "runs" / "r1" / "checkpoint.keras"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert checkpoint.exists(), proc.communicate()[1][-2000:]
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    if sig == signal.SIGINT:
        assert proc.returncode == 130, stderr[-2000:]
        assert "--resume r1" in stderr
    else:
        assert proc.returncode == -signal.SIGKILL

    # Nothing in the store; the run folder holds whole epochs only.
    assert not (cxr_home / "models" / "r1").exists()
    state = json.loads((cxr_home / "runs" / "r1" / "state.json").read_text())
    done = state["epochs_done"]
    assert 1 <= done < epochs
    assert len(state["history"]["loss"]) == done

    result = runner.invoke(app, ["train", "--resume", "r1", "--json"])
    assert result.exit_code == 0, result.output
    record = store.resolve("r1").record()
    assert record.training["resumed"] == 1
    assert record.training["epochs_run"] == epochs
    assert len(record.history.val_accuracy) == epochs
    # The epochs before the interrupt are kept as they were.
    assert record.history.loss[:done] == state["history"]["loss"]
    assert not (cxr_home / "runs" / "r1").exists()

    again = runner.invoke(app, ["train", "--resume", "r1"])
    assert again.exit_code == 2
    assert "nothing to resume" in again.output


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# 9-18 s on 2 shared cores (two TensorFlow start-ups plus gRPC set-up): under the
# project's 20 s limit, so it runs by default.
def test_two_workers_train_one_model_and_only_the_chief_writes(tmp_path: Path) -> None:
    workers = [f"127.0.0.1:{_free_port()}", f"127.0.0.1:{_free_port()}"]
    homes = [tmp_path / "chief-home", tmp_path / "worker-home"]
    for home in homes:  # each worker reads its own copy of the same data
        build_dataset(home, "blobs", per_class=8, size=32)
    procs = []
    for index, home in enumerate(homes):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        command = [sys.executable, "-m", "cxr_covid", "train", "--strategy", "multi-worker"]
        command += ["--dataset", "blobs", "--epochs", "1", "--image-size", "16"]
        command += ["--batch-size", "8", "--name", "mw", "--json"]
        procs.append(
            subprocess.Popen(
                command,
                env=_env(home, TF_CONFIG=json.dumps(tf_config)),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outputs = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=240)
            assert proc.returncode == 0, stderr[-3000:]
            outputs.append(json.loads(stdout))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    chief, other = outputs
    training = chief["record"]["training"]
    assert training["strategy_used"] == "multi-worker"
    assert training["workers"] == 2
    assert training["replicas"] == 2
    # Both workers computed the same all-reduced epoch.
    assert chief["record"]["history"]["loss"] == other["record"]["history"]["loss"]
    assert (homes[0] / "models" / "mw" / "model.keras").is_file()
    assert not (homes[1] / "models").exists()
    assert not (homes[1] / "runs" / "mw" / "checkpoint.keras").exists()


@pytest.mark.parametrize("strategy", ["one-device", "mirrored"])
def test_single_machine_strategies(cxr_home: Path, strategy: str) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    result = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            "blobs",
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--batch-size",
            "4",
            "--strategy",
            strategy,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["record"]["training"]["strategy_used"] == strategy
