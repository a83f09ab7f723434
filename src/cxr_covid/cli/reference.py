"""Generate docs/cli.md from the application itself, so the reference cannot drift.

    python -m cxr_covid.cli.reference > docs/cli.md

A test regenerates it and fails when the committed file is stale.
"""

from __future__ import annotations

from typing import Any

import typer

from cxr_covid.cli.app import app

HEADER = (
    "# Command-line reference\n\n"
    "Generated from the application by `python -m cxr_covid.cli.reference > docs/cli.md`; "
    "do not edit by hand.\n"
)


def _param_line(param: Any) -> str:
    if param.param_type_name == "argument":
        name = f"`{param.name.upper()}`"
        kind = "argument"
    else:
        name = ", ".join(f"`{opt}`" for opt in [*param.opts, *param.secondary_opts])
        kind = "flag" if getattr(param, "is_flag", False) else "option"
    # Help is rich markup: `\[` is a literal bracket there, and just a bracket here.
    text = (getattr(param, "help", None) or "").strip().replace("\n", " ").replace("\\[", "[")
    extras = []
    descriptor = getattr(param, "type_descriptor", None)
    if descriptor is not None and descriptor.is_choice and descriptor.choices:
        extras.append("choices: " + ", ".join(f"`{c}`" for c in descriptor.choices))
    default = getattr(param, "default", None)
    if default not in (None, False, (), "") and kind != "flag" and not callable(default):
        extras.append(f"default: `{default}`")
    if getattr(param, "envvar", None):
        extras.append(f"env: `{param.envvar}`")
    if getattr(param, "required", False):
        extras.append("required")
    suffix = f" ({'; '.join(extras)})" if extras else ""
    return f"- {name} ({kind}): {text}{suffix}"


def _render(command: Any, path: str, level: int, lines: list[str]) -> None:
    lines.append(f"{'#' * level} `{path}`\n")
    help_text = (command.help or "").strip()
    if help_text:
        lines.append(help_text + "\n")
    # Hidden options (an old name kept working) are not part of the interface to document.
    params = [p for p in command.params if p.name != "help" and not getattr(p, "hidden", False)]
    if params:
        lines.extend(_param_line(p) for p in params)
        lines.append("")
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name in subcommands:
            if not getattr(subcommands[name], "hidden", False):
                _render(subcommands[name], f"{path} {name}", level + 1, lines)


def render() -> str:
    root = typer.main.get_command(app)
    lines = [HEADER]
    _render(root, "cxr-covid", 2, lines)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
