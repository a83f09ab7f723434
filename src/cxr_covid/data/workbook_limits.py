"""How much a `<Class>.metadata.xlsx` may unpack to before openpyxl reads it.

An .xlsx is a zip of XML. openpyxl keeps each cell's string in memory, so one 1 GiB
inline-string cell in a 2.8 MB dataset zip cost 2.27 GB (issue 22, case 8). The Kaggle
release's workbooks list a few thousand rows each and unpack to well under 1 MiB; a workbook
unpacking to more than MAX_WORKBOOK_BYTES, or one member inflating more than 100x past 1 MiB
(the dataset archives' rule), is refused from its declared sizes, before a byte is inflated.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from cxr_covid.data.extract import Limits, check_archive
from cxr_covid.errors import ArchiveError, DataError

MAX_WORKBOOK_BYTES = 64 * 1024**2
MAX_WORKBOOK_MEMBERS = 10_000


def check_workbook_size(path: Path) -> None:
    """DataError when the workbook at `path` would unpack beyond the bounds above. A file that
    is not a zip at all is left for openpyxl to refuse with its own words."""
    limits = Limits(max_bytes=MAX_WORKBOOK_BYTES, max_members=MAX_WORKBOOK_MEMBERS)
    try:
        with zipfile.ZipFile(path) as book:
            check_archive(book, limits)
    except ArchiveError as exc:
        message = str(exc).replace("refusing archive: ", "").split(" (set ")[0]
        raise DataError(f"{path.name}: refused workbook: {message}") from None
    except (zipfile.BadZipFile, OSError):
        return
