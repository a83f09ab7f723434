"""Turn the PATH... a user typed into the list of files to read.

Shared by `predict` and `heatmap` so both understand the same things:

- a file is taken as given, whatever its suffix (naming it is a request to read it; if it is
  not an image, its row says so), but only a regular file: a pipe or device is refused;
- a folder contributes the image files directly inside it, or below it with `recursive`;
  other files (CSV, notes, masks saved as .txt...) and hidden files are skipped quietly;
- a glob pattern (`scans/*.png`, `scans/**/*.dcm` with `recursive`) is expanded by Python,
  so it also works where the shell does not (Windows, quoted arguments).

Only file names are held, in a list: 100,000 inputs cost a few megabytes.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from cxr_covid.data.images import IMAGE_SUFFIXES, is_image_file
from cxr_covid.errors import DataError, UsageError

_GLOB_CHARS = frozenset("*?[")


def _folder_images(
    folder: Path, recursive: bool, visited: set[str] | None = None
) -> Iterator[Path]:
    """Image files in `folder` (sorted, so runs are reproducible), skipping hidden entries.

    Each real folder is visited once, so a symbolic link pointing back up cannot loop.
    """
    visited = set() if visited is None else visited
    real = os.path.realpath(folder)
    if real in visited:
        return
    visited.add(real)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise UsageError(f"{folder}: cannot list folder ({exc.strerror or exc})") from exc
    subfolders: list[Path] = []
    for entry in entries:
        if entry.name.startswith("."):
            continue
        path = Path(entry.path)
        if entry.is_dir():
            subfolders.append(path)
        elif entry.is_file() and is_image_file(path):
            yield path
    if recursive:
        for sub in subfolders:
            yield from _folder_images(sub, recursive, visited)


def _expand_one(spec: str, recursive: bool) -> tuple[list[Path], int]:
    """(files, skipped sub-folders count) for one PATH argument."""
    path = Path(spec).expanduser()
    if path.is_dir():
        files = list(_folder_images(path, recursive))
        skipped = 0 if recursive else sum(1 for p in path.iterdir() if p.is_dir())
        return files, skipped
    if path.exists():
        if not path.is_file():
            # A FIFO would block the read forever and a device (/dev/zero) never ends.
            raise UsageError(
                f"{spec}: not a regular file (a pipe, device or socket); only image files are read"
            )
        return [path], 0
    if _GLOB_CHARS & set(spec):
        matches = sorted(glob.glob(os.path.expanduser(spec), recursive=recursive))
        globbed: list[Path] = []
        for match in matches:
            found = Path(match)
            if found.is_dir():
                globbed.extend(_folder_images(found, recursive))
            elif found.is_file() and is_image_file(found):
                globbed.append(found)
        return globbed, 0
    raise UsageError(f"{spec}: no such file or folder")


def expand_inputs(specs: Sequence[str], recursive: bool = False) -> list[Path]:
    """Every file named by `specs`, in the order given, each once.

    Raises UsageError for a name that does not exist or a pattern that matches nothing (the
    command line is wrong), DataError when the folders given hold no image (the data is:
    exit 3, with a hint about `-r` when sub-folders were skipped).
    """
    if not specs:
        raise UsageError("give at least one image, folder or glob pattern")
    files: list[Path] = []
    skipped_folders = 0
    for spec in specs:
        found, skipped = _expand_one(spec, recursive)
        files.extend(found)
        skipped_folders += skipped
    files = list(_unique(files))
    if not files:
        hint = (
            f" ({skipped_folders} sub-folder(s) skipped: add -r to look inside them)"
            if skipped_folders
            else ""
        )
        message = f"no image files found in {', '.join(specs)}{hint}"
        if any(Path(spec).expanduser().is_dir() for spec in specs):
            raise DataError(f"{message} (image files: {', '.join(IMAGE_SUFFIXES)})")
        raise UsageError(message)
    return files


def _unique(paths: Iterable[Path]) -> Iterator[Path]:
    seen: set[str] = set()
    for path in paths:
        key = os.path.normcase(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            yield path


def output_stems(paths: Sequence[Path]) -> list[Path]:
    """A relative output name (without suffix) per input, unique across the run.

    Plain file stems where they are unique; where two inputs share a stem (`covid/1.png`,
    `normal/1.png`) their folders below the inputs' common parent are kept, so writing
    `<out>/<stem>.heatmap.png` never overwrites another input's picture.
    """
    stems = [Path(p.stem) for p in paths]
    if len({s.as_posix() for s in stems}) == len(stems):
        return stems
    absolute = [Path(os.path.abspath(p)) for p in paths]
    common = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    result = [a.relative_to(common).with_suffix("") for a in absolute]
    # Same folder and stem, different suffix (x.png and x.jpg): keep the suffix in the name.
    seen: dict[str, int] = {}
    for r in result:
        seen[r.as_posix()] = seen.get(r.as_posix(), 0) + 1
    return [
        r.with_name(f"{r.name}_{a.suffix.lstrip('.')}") if seen[r.as_posix()] > 1 else r
        for r, a in zip(result, absolute, strict=True)
    ]
