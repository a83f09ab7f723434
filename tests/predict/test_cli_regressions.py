"""Predict from the command line: bugs found by walking the documented commands as a
new user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

runner = CliRunner()


def test_predict_refuses_resume_with_overwrite(tmp_path: Path) -> None:
    # Both were accepted and --resume silently won, keeping rows the user asked to replace.
    from cxr_covid.errors import UsageError
    from cxr_covid.inference.predict import predict_to_file

    out = tmp_path / "results.csv"
    out.write_text("path,predicted_class\n", encoding="utf-8")

    class NoModel:  # the check must come before the model is even looked at
        def record(self) -> None:
            raise AssertionError("model looked at before the options were checked")

    with pytest.raises(UsageError, match="exclude each other"):
        predict_to_file([tmp_path / "a.png"], NoModel(), str(out), resume=True, overwrite=True)  # type: ignore[arg-type]
    assert out.read_text(encoding="utf-8") == "path,predicted_class\n"
