"""TensorFlow's C++ start-up chatter must not reach the user's terminal."""

from __future__ import annotations

import os
import subprocess
import sys


def test_info_stderr_has_no_tensorflow_startup_noise(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if k != "CXR_COVID_TF_LOGS"}
    result = subprocess.run(
        [sys.executable, "-m", "cxr_covid", "info", "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "oneDNN" not in result.stderr
    assert "absl::InitializeLog" not in result.stderr
    assert '"tensorflow"' in result.stdout
