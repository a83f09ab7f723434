"""A `sources.csv` that travels with the data, found without being named.

`download --from-dir/--from-zip` and `reproduce --from-zip` look for a file named exactly
`sources.csv` (the `path,source[,age_group]` shape `--sources` takes, docs/provenance.md):

- for a folder: inside it, else beside it (in its parent folder);
- for a zip: inside it (at its top, or in its one top folder), else beside it.

The name must match exactly: the Kaggle releases' attribution list `SOURCES.csv` is another
file with another shape, and on a case-insensitive disk the two must not be confused. An
explicit `--sources FILE` wins; `--no-sources` turns the search off.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path

from cxr_covid.data.provenance import SourcesFile, read_sources_csv
from cxr_covid.errors import DataError

SOURCES_NAME = "sources.csv"
# A sources list names each image once: tens of bytes a line. A member larger than this is
# not one (and must not be unpacked into memory).
MAX_SOURCES_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class FoundSources:
    sources: SourcesFile
    where: str  # how the file is named to the user (a zip member as `archive.zip:member`)


def _exactly_named(folder: Path) -> Path | None:
    try:
        names = os.listdir(folder)
    except OSError:
        return None
    path = folder / SOURCES_NAME
    return path if SOURCES_NAME in names and path.is_file() else None


def _zip_member(archive: Path) -> zipfile.ZipInfo | None:
    try:
        with zipfile.ZipFile(archive) as handle:
            infos = handle.infolist()
    except (OSError, zipfile.BadZipFile):
        return None  # the download itself says what is wrong with the archive
    for info in infos:
        parts = info.filename.rstrip("/").split("/")
        if parts[-1] == SOURCES_NAME and len(parts) <= 2 and not info.is_dir():
            return info
    return None


def _read_member(archive: Path, info: zipfile.ZipInfo) -> SourcesFile:
    where = f"{archive}:{info.filename}"
    if info.file_size > MAX_SOURCES_BYTES:
        raise DataError(f"{where}: {info.file_size} bytes is too large for a sources list")
    with zipfile.ZipFile(archive) as handle, tempfile.TemporaryDirectory() as scratch:
        copy = Path(scratch) / SOURCES_NAME
        copy.write_bytes(handle.read(info)[: MAX_SOURCES_BYTES + 1])
        parsed = read_sources_csv(copy)
    return replace(parsed, path=Path(where))


def find_sources(kind: str, location: str | Path) -> FoundSources | None:
    """The sources list that travels with a local folder (`kind` "dir") or zip ("zip"),
    parsed; None when there is none (or for a download). DataError when one is found but
    cannot be read."""
    place = Path(location).expanduser()
    if kind == "dir":
        for folder in (place, place.resolve().parent):
            found = _exactly_named(folder)
            if found is not None:
                return FoundSources(read_sources_csv(found), str(found))
        return None
    if kind == "zip":
        member = _zip_member(place)
        if member is not None:
            return FoundSources(_read_member(place, member), f"{place}:{member.filename}")
        beside = _exactly_named(place.resolve().parent)
        if beside is not None:
            return FoundSources(read_sources_csv(beside), str(beside))
    return None
