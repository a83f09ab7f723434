"""Hardening issue, item 20: a bad option value in a TensorFlow command is refused before
TensorFlow is imported (it costs seconds). Checked by whether the module was loaded, in a
fresh process, not by timing."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fresh_cli import loaded_tensorflow, run_cli_fresh


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
    result = run_cli_fresh(argv, cxr_home)
    assert result.returncode == 2, result.stderr
    assert "Error:" in result.stderr
    assert not loaded_tensorflow(result), result.stderr
