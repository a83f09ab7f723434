"""Issue 21, item 10: `models export -f onnx` without its extra fails at once (exit 9, with the
install hint for PyPI and for a checkout), before TensorFlow is imported. Checked in a fresh
process by whether TensorFlow got loaded, not by timing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cxr_covid.errors import EXIT_DEPENDENCY

REPO = Path(__file__).resolve().parents[2]

# The extra's modules made unimportable (None in sys.modules is what `import` refuses).
RUNNER = """
import sys
for name in sys.argv[1].split(","):
    sys.modules[name] = None
from cxr_covid.cli.app import app
try:
    app(sys.argv[2:], prog_name="cxr-covid")
except SystemExit as exc:
    code = exc.code if isinstance(exc.code, int) else 1
else:
    code = 0
print("TF" if "tensorflow" in sys.modules else "NO-TF", file=sys.stderr)
sys.exit(code)
"""


@pytest.mark.parametrize(
    ("fmt", "blocked", "extra"),
    [("onnx", "tf2onnx,onnxruntime", "onnx"), ("litert", "ai_edge_litert", "litert")],
)
def test_a_missing_extra_is_said_before_tensorflow_loads(
    tiny: Path, cxr_home: Path, tmp_path: Path, fmt: str, blocked: str, extra: str
) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["CXR_COVID_HOME"] = str(cxr_home)
    argv = ["models", "export", "-f", fmt, "-o", str(tmp_path / "out")]
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, blocked, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == EXIT_DEPENDENCY, result.stderr
    assert f"pip install 'cxr-covid[{extra}]'" in result.stderr
    assert f"pip install -e '.[{extra}]'" in result.stderr
    assert result.stderr.strip().endswith("NO-TF"), result.stderr
    assert not (tmp_path / "out").exists()
