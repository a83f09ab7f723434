"""The command line's face: help for every command, version, exit codes, no TF at import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from cxr_covid.about import __version__
from cxr_covid.cli import app
from cxr_covid.errors import EXIT_CODES
from tests.cli_tree import command_paths, command_tree, top_level_commands

runner = CliRunner()

# Read from the app: a new command is checked without anyone listing it here.
COMMANDS = top_level_commands()
ALL_COMMANDS = command_paths()


def test_help_lists_every_command_and_the_disclaimer() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in COMMANDS:
        assert command in result.output
    assert "not a diagnostic device" in result.output
    assert "Exit codes" in result.output


@pytest.mark.parametrize("command", ALL_COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = runner.invoke(app, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    described = dict(command_tree())[command]
    assert (described.help or "").strip(), f"`cxr-covid {command}` has no help text"


@pytest.mark.parametrize("sub", [p.split()[1] for p in ALL_COMMANDS if p.startswith("models ")])
def test_models_subcommands_have_help(sub: str) -> None:
    result = runner.invoke(app, ["models", sub, "--help"])
    assert result.exit_code == 0, result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"cxr-covid {__version__}"


def test_unknown_command_is_a_usage_error() -> None:
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_exit_codes_are_distinct() -> None:
    codes = [code for code, _ in EXIT_CODES]
    assert len(codes) == len(set(codes))


def test_cli_import_and_help_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cxr_covid.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"for c in {ALL_COMMANDS!r}:\n"
        "    assert CliRunner().invoke(app, [*c.split(), '--help']).exit_code == 0, c\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
        "assert 'keras' not in sys.modules, 'keras imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    # Importing the CLI does not even load NumPy (help texts are built from light modules).
    light = "import sys\nimport cxr_covid.cli.app\nassert 'numpy' not in sys.modules\n"
    subprocess.run([sys.executable, "-c", light], check=True)


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cxr_covid", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == f"cxr-covid {__version__}"
