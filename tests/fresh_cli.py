"""Run the CLI in a fresh Python process and tell whether TensorFlow got imported.

Used by the tests that check a command fails early (a bad option value, a missing extra)
before paying for TensorFlow: judged by `sys.modules`, never by timing.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# argv[1]: modules to make unimportable (comma-separated; None in sys.modules is what
# `import` refuses), argv[2:]: the command line. The last stderr line says TF or NO-TF.
_RUNNER = """
import sys
for name in filter(None, sys.argv[1].split(",")):
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


def run_cli_fresh(
    argv: Sequence[str], home: Path, blocked: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    env["CXR_COVID_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-c", _RUNNER, ",".join(blocked), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def loaded_tensorflow(result: subprocess.CompletedProcess[str]) -> bool:
    return not result.stderr.strip().endswith("NO-TF")
