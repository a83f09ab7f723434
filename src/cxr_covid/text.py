"""How durations, percentages and comma lists read and parse, in one place for the core and
the CLI.

(Accuracies with their interval read one way too: eval_report.cell and accuracy_cell.)
"""

from __future__ import annotations

import math
import os


def percent(fraction: float, digits: int = 1) -> str:
    """A fraction as a percentage, the one way every table and line writes it: `87.9%` (no
    space, as in the study's tables); `n/a` when there is no number."""
    if not math.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.{digits}f}%"


def format_duration(seconds: float, *, rough: bool = False) -> str:
    """A duration for people: exact (`4.2s`, `3m07s`, `2h05m`) for a measured time, or
    `rough` (`40 s`, `12 min`, `3.5 h`) for an estimate that should not look precise."""
    seconds = max(0.0, seconds)
    if rough:
        if seconds < 90:
            return f"{seconds:.0f} s"
        if seconds < 5400:
            return f"{seconds / 60:.0f} min"
        return f"{seconds / 3600:.1f} h"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def split_list(text: str) -> list[str]:
    """`"covid, normal,,"` -> `["covid", "normal"]`: a comma list as every option takes one."""
    return [part.strip() for part in text.split(",") if part.strip()]


def escape_name(name: str) -> str:
    """A file name as text that can be written anywhere: bytes that are not UTF-8 (which
    Python carries as lone surrogates) become `\\xNN`, e.g. `bad\\xff.png` (docs/json.md,
    "File names"). A name that is valid UTF-8 is returned unchanged, so this is idempotent."""
    try:
        raw = os.fsencode(name)
    except UnicodeEncodeError:  # a surrogate no file system gave: escape it as \\udNNN
        raw = name.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")
