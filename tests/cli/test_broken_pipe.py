"""Issue 22, case 2: a closed pipe ends every command with 141 and no word, not 1 (a bug).

rich's console and Click's main both turned a closed stdout into SystemExit(1); only
`predict -o -` was caught. The reader is gone before the command starts (the read end of the
pipe is closed), so every write fails: no race with a real `| head -1`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import cxr_covid

EXIT_BROKEN_PIPE = 141


def _run_into_closed_pipe(home: Path, args: list[str], *, stderr_too: bool) -> tuple[int, bytes]:
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = dict(os.environ, CXR_COVID_HOME=str(home), TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = str(Path(cxr_covid.__file__).parents[1])
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cxr_covid", *args],
            stdout=write_end,
            stderr=write_end if stderr_too else subprocess.PIPE,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    return done.returncode, done.stderr or b""


@pytest.mark.parametrize(
    "args",
    [["models", "list"], ["--version"], ["datasets", "list"], ["info"]],
    ids=["models-list", "version", "datasets-list", "info"],
)
def test_closed_stdout_exits_141_silently(tmp_path: Path, args: list[str]) -> None:
    code, err = _run_into_closed_pipe(tmp_path, args, stderr_too=False)
    assert code == EXIT_BROKEN_PIPE, err.decode(errors="replace")[-2000:]
    assert err == b""


def test_closed_stdout_and_stderr_exit_141(tmp_path: Path) -> None:
    # `cmd 2>&1 | head -3`: even the error line has nowhere to go.
    code, _ = _run_into_closed_pipe(tmp_path, ["models", "show", "nope"], stderr_too=True)
    assert code == EXIT_BROKEN_PIPE
