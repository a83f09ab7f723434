"""Documentation that must not drift from the code."""

from __future__ import annotations

import re
from pathlib import Path

from cxr_covid.cli.reference import render
from cxr_covid.errors import EXIT_CODES
from tests.cli_tree import command_paths

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
    """Each top-level command has docs/commands/<name>.md; each sub-command is on its group's
    page (`models export` in models.md). The commands come from the app itself."""
    paths = command_paths()
    assert paths, "no commands found"
    for path in paths:
        top = path.split()[0]
        page = REPO / "docs" / "commands" / f"{top}.md"
        assert page.is_file(), f"docs/commands/{top}.md is missing"
        if " " in path:
            assert f"cxr-covid {path}" in page.read_text(), f"`{path}` not on {page.name}"


def test_every_docs_page_is_a_command() -> None:
    pages = {p.stem for p in (REPO / "docs" / "commands").glob("*.md")}
    assert pages == {p for p in command_paths() if " " not in p}
