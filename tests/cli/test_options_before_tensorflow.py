"""Hardening issue, item 20: a bad option value in a TensorFlow command is refused before
TensorFlow is imported (it costs seconds). Checked by whether the module was loaded, in a
fresh process, not by timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Runs the CLI in-process and reports whether TensorFlow got imported, whatever the exit.
RUNNER = """
import sys
from cxr_covid.cli.app import app
try:
    app(sys.argv[1:], prog_name="cxr-covid")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
else:
    code = 0
print("TF" if "tensorflow" in sys.modules else "NO-TF", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--epochs", "99999999999999999999"],
        ["train", "--arch", "resnet"],
        ["train", "--learning-rate", "nan"],
        ["eval", "--batch-size", "0"],
        ["eval", "--bootstrap", "-1"],
        ["predict", "x.png", "-o", "-", "--batch-size", "0"],
        ["heatmap", "x.png", "--alpha", "3"],
        ["reproduce", "--epochs", "0"],
        ["reproduce", "--preset", "nope"],
    ],
)
def test_bad_option_values_exit_2_without_importing_tensorflow(
    argv: list[str], cxr_home: Path
) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["CXR_COVID_HOME"] = str(cxr_home)
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "Error:" in result.stderr
    assert result.stderr.strip().endswith("NO-TF"), result.stderr
