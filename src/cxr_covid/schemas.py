"""Names and versions of the JSON documents the tool prints (`--json`), one home for them.

Every document carries `"schema": "cxr-covid/<name>/<version>"` as its first key, so a script
can tell what it reads and notice when its shape changes: a key removed or its meaning changed
raises the version; a key added does not. docs/json.md lists each one with its top-level keys,
and a test checks that list against this table and that each command with `--json` says it.
"""

from __future__ import annotations

from typing import Any

# name -> version. A name is the command (`eval`, `models-list`) or a variant of its output.
VERSIONS: dict[str, int] = {
    "download": 1,
    "download-sources": 1,
    "augment": 1,
    "train": 1,
    "train-seeds": 1,
    "train-summary": 1,
    "eval": 1,
    "reproduce": 1,
    "predict": 1,
    "heatmap": 1,
    "calibrate": 1,
    "audit": 1,
    "compare": 1,
    "compare-list": 1,
    "info": 1,
    "models-list": 1,
    "models-show": 1,
    "models-export": 1,
    "models-pack": 1,
    "models-card": 1,
    "models-import": 1,
    "models-ensemble": 1,
    "models-rm": 1,
    "datasets-list": 1,
    "datasets-show": 1,
    "datasets-rm": 1,
}


def schema_id(name: str) -> str:
    """`cxr-covid/eval/1` for `eval`; a name not in the table is a programming error."""
    return f"cxr-covid/{name}/{VERSIONS[name]}"


def with_schema(name: str, data: dict[str, Any]) -> dict[str, Any]:
    """The document with its schema first (a `schema` already in `data` is replaced)."""
    return {"schema": schema_id(name), **{k: v for k, v in data.items() if k != "schema"}}
