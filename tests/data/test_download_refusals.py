"""Hardening issue, item 13: splits, class counts and names that cannot make a usable
dataset are refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli import app
from cxr_covid.data.splits import parse_fractions
from cxr_covid.errors import EXIT_DATA, EXIT_USAGE, UsageError
from tests.helpers import write_class_folders

runner = CliRunner()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split", "nan,nan,nan"], "must be a number"),
        (["--split", "inf,0,0"], "must be a number"),
        (["--split", "0.9,0,0.1"], "no val images"),
        (["--split", "0.9,0.1,0"], "no test images"),
        (["--classes", "covid"], "at least two"),
        (["--classes", "covid,COVID-19"], "at least two"),
        (["--name", ""], "invalid name"),
    ],
)
def test_unusable_options_are_refused_and_nothing_is_written(
    tmp_path: Path, cxr_home: Path, argv: list[str], message: str
) -> None:
    source = write_class_folders(tmp_path / "src", per_class=10, size=16)
    result = runner.invoke(app, ["download", "--from-dir", str(source), *argv])
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not (cxr_home / "datasets").exists() or not any((cxr_home / "datasets").iterdir())


def test_a_folder_with_one_class_of_images_leaves_no_dataset(
    tmp_path: Path, cxr_home: Path
) -> None:
    source = write_class_folders(tmp_path / "src", per_class=10, size=16, labels=(classes.COVID,))
    result = runner.invoke(app, ["download", "--from-dir", str(source), "--name", "solo"])
    assert result.exit_code == EXIT_DATA, result.output
    assert "no images of class normal, viral_pneumonia" in result.stderr
    assert not (cxr_home / "datasets" / "solo").exists()


def test_the_library_split_parser_refuses_the_same() -> None:
    for text in ("nan,nan,nan", "0.9,0,0.1", "nan,0.5,0.5"):
        with pytest.raises(UsageError):
            parse_fractions(text)
    assert parse_fractions("0.8,0.1,0.1") == pytest.approx((0.8, 0.1, 0.1))
