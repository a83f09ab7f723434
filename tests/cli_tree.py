"""The application's commands, read from the Typer app itself.

Tests that need "every command" take them from here, so a new command cannot escape them.
"""

from __future__ import annotations

from typing import Any

import typer

from cxr_covid.cli import app


def command_tree() -> list[tuple[str, Any]]:
    """(path, click command) for the root ("") and every command and sub-command, in order."""
    found: list[tuple[str, Any]] = []

    def walk(command: Any, path: list[str]) -> None:
        found.append((" ".join(path), command))
        for name, sub in getattr(command, "commands", {}).items():
            if not getattr(sub, "hidden", False):
                walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


def command_paths() -> list[str]:
    """`download`, ..., `models`, `models list`, ...: every command below the root."""
    return [path for path, _ in command_tree() if path]


def top_level_commands() -> list[str]:
    return [path for path in command_paths() if " " not in path]
