"""Documentation that must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from cxr_covid.cli.reference import render
from cxr_covid.errors import EXIT_CODES

REPO = Path(__file__).resolve().parents[2]


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_cli_reference_is_current() -> None:
    committed = (REPO / "docs" / "cli.md").read_text()
    assert committed == render(), (
        "docs/cli.md is stale: run `python -m cxr_covid.cli.reference > docs/cli.md`"
    )


def test_readme_opens_with_two_setup_commands() -> None:
    commands = _readme_commands()
    assert len(commands) >= 2
    main_job, tests = commands[0], commands[1]
    assert "cxr-covid" in main_job
    assert "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _readme_commands()[1]
    ci_lines = (REPO / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines


def test_exit_codes_are_documented() -> None:
    page = (REPO / "docs" / "exit-codes.md").read_text()
    for code, _ in EXIT_CODES:
        assert re.search(rf"^\|\s*{code}\s*\|", page, re.M), f"exit code {code} not documented"


def test_every_command_has_a_docs_page() -> None:
    for command in (
        "download",
        "augment",
        "train",
        "eval",
        "reproduce",
        "predict",
        "heatmap",
        "models",
        "datasets",
        "info",
        "audit",
    ):
        assert (REPO / "docs" / "commands" / f"{command}.md").is_file(), command
