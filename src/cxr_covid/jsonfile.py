"""Reading a JSON record written by someone else: nesting is bounded.

`'[' * 100000 + ']' * 100000` as a model.json, dataset.json or pack manifest made Python's
parser raise RecursionError (a traceback, and every listing broken). Our records nest about
six levels; anything deeper than MAX_DEPTH is refused as a decoding error, so callers treat it
like any other corrupt record (docs/hostile-input.md).
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64  # levels of arrays/objects; model.json nests 5, dataset.json 4


def loads(text: str) -> Any:
    """`json.loads`, except that a document nested deeper than MAX_DEPTH raises
    json.JSONDecodeError (never RecursionError)."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise _too_deep(text) from None
    if _depth_exceeds(data, MAX_DEPTH):
        raise _too_deep(text)
    return data


def _too_deep(text: str) -> json.JSONDecodeError:
    return json.JSONDecodeError(f"nested too deeply (more than {MAX_DEPTH} levels)", text, 0)


def _depth_exceeds(data: Any, limit: int) -> bool:
    """Whether `data` nests deeper than `limit`, walked without recursion."""
    todo: list[tuple[Any, int]] = [(data, 0)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth + 1 > limit:
            return True
        todo.extend((child, depth + 1) for child in children)
    return False
