"""Issue 21, item 10: `models export -f onnx` without its extra fails at once (exit 9, with the
install hint for PyPI and for a checkout), before TensorFlow is imported. Checked in a fresh
process by whether TensorFlow got loaded, not by timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_covid.errors import EXIT_DEPENDENCY
from tests.fresh_cli import loaded_tensorflow, run_cli_fresh


@pytest.mark.parametrize(
    ("fmt", "blocked", "extra"),
    [("onnx", "tf2onnx,onnxruntime", "onnx"), ("litert", "ai_edge_litert", "litert")],
)
def test_a_missing_extra_is_said_before_tensorflow_loads(
    tiny: Path, cxr_home: Path, tmp_path: Path, fmt: str, blocked: str, extra: str
) -> None:
    argv = ["models", "export", "-f", fmt, "-o", str(tmp_path / "out")]
    result = run_cli_fresh(argv, cxr_home, blocked=blocked.split(","))
    assert result.returncode == EXIT_DEPENDENCY, result.stderr
    assert f"pip install 'cxr-covid[{extra}]'" in result.stderr
    assert f"pip install -e '.[{extra}]'" in result.stderr
    assert not loaded_tensorflow(result), result.stderr
    assert not (tmp_path / "out").exists()
