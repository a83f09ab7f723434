"""The command line's shared behaviour (usage errors, bare groups, Ctrl-C): bugs found by
walking the documented commands as a new user would."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from tests.helpers import build_dataset

runner = CliRunner()


@pytest.mark.parametrize(
    "args",
    [
        ["augment", "--factor", "0"],
        ["predict"],
        ["train", "--no-such-option"],
        ["models", "show", "a", "b"],
        ["no-such-command"],
        ["--no-such-option"],
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(args: list[str]) -> None:
    # docs/exit-codes.md: "errors print one line, `Error: ...`"; Typer drew a framed box.
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("Error: ") and " -h`)" in lines[0]


def test_a_bare_group_still_prints_its_help() -> None:
    result = runner.invoke(app, ["models"])
    assert result.exit_code == 2
    assert "list" in result.output and "Error" not in result.output


def test_ctrl_c_in_a_command_without_its_own_handler_says_so(
    cxr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # augment, eval, download and reproduce exited 130 without a word on Ctrl-C.
    import cxr_covid.data.augment as augment_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    build_dataset(cxr_home, "d", per_class=4, size=16)
    monkeypatch.setattr(augment_module, "augment_dataset", interrupted)
    result = runner.invoke(app, ["augment"])
    assert result.exit_code == 130, result.output
    assert "Interrupted" in result.output
