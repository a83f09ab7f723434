"""docs/json.md as data: each `--json` document's schema id and top-level keys.

`assert_documented(name, data)` checks a document a command really printed against that page,
so the page cannot drift from the code (used by tests/cli/test_json_schema.py and by the tests
that already run the heavier commands with --json).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_covid.schemas import schema_id

PAGE = Path(__file__).resolve().parents[1] / "docs" / "json.md"


@dataclass(frozen=True)
class Documented:
    command: str
    always: frozenset[str]
    sometimes: frozenset[str]


def documented() -> dict[str, Documented]:
    """schema id -> what docs/json.md says about it."""
    rows: dict[str, Documented] = {}
    for line in PAGE.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[1].startswith("`cxr-covid/"):
            continue
        command, schema, always, sometimes = cells
        rows[schema.strip("`")] = Documented(
            command.strip("`"),
            frozenset(re.findall(r"`([a-z0-9_]+)`", always)),
            frozenset(_keys(sometimes)),
        )
    return rows


def _keys(cell: str) -> list[str]:
    # "`group` (with `--group`)": the key names; an option (`--group`) does not match.
    return re.findall(r"`([a-z0-9_]+)`", cell)


def assert_documented(name: str, data: Any) -> None:
    """`data` carries schema `name`'s id first, and exactly the keys docs/json.md lists."""
    assert isinstance(data, dict), f"{name}: a JSON document is an object, got {type(data)}"
    expected = schema_id(name)
    assert next(iter(data), None) == "schema" and data["schema"] == expected, data.get("schema")
    doc = documented().get(expected)
    assert doc is not None, f"{expected} is not in docs/json.md"
    keys = set(data) - {"schema"}
    assert doc.always <= keys, f"{expected}: documented but missing: {doc.always - keys}"
    assert keys <= doc.always | doc.sometimes, (
        f"{expected}: printed but not in docs/json.md: {keys - doc.always - doc.sometimes}"
    )
