"""Atomic writes: a reader sees the old content or the new, never half of either.

Every file the tool writes goes through here: a temporary file in the same folder (so the
final rename never crosses file systems), fsync, then `os.replace`. Folders are built under a
hidden temporary name and renamed into place, so a model or dataset appears whole or not at
all, and an interrupted run leaves only a hidden `.tmp-*` folder that listings ignore.

Permissions follow the umask, like any other tool's output (0666 & ~umask for files, 0777 &
~umask for folders): colleagues on a shared server can read results if the umask lets
them. A temporary file or folder stays private (mkstemp/mkdtemp: 0600/0700) while it is being
filled, and gets its final mode just before the rename that publishes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def current_umask() -> int:
    """The process's umask. Linux shows it in /proc (no change needed to read it); elsewhere
    it is read by setting it and setting it back at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _publish_mode(tmp: str) -> None:
    """Give a private temporary file the mode a plain `open()` would have given it."""
    os.chmod(tmp, 0o666 & ~current_umask())


def _publish_dir_mode(path: Path) -> None:
    os.chmod(path, 0o777 & ~current_umask())


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            _publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


@contextlib.contextmanager
def open_for_write(path: Path, mode: str = "w", **kwargs: Any) -> Iterator[Any]:
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
            _publish_mode(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_dir_beside(target: Path) -> Path:
    """A new hidden, empty folder next to `target`, to be filled then `commit_dir`-ed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent))


def commit_dir(tmp: Path, target: Path, *, replace: bool = False) -> None:
    """Move a finished temporary folder into place.

    With `replace`, an existing `target` is swapped out first and removed only after the new
    folder is in place, so at every instant one complete version exists on disk. The folder
    gets the umask's mode (it was private while being filled).
    """
    _publish_dir_mode(tmp)
    if target.exists():
        if not replace:
            raise FileExistsError(str(target))
        old = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + ".old.", dir=target.parent))
        old.rmdir()
        os.rename(target, old)
        try:
            os.rename(tmp, target)
        except BaseException:
            os.rename(old, target)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


@contextlib.contextmanager
def building_dir(target: Path, *, replace: bool = False) -> Iterator[Path]:
    """`with building_dir(final) as tmp:` fill `tmp`; on success it becomes `final`."""
    tmp = temp_dir_beside(target)
    try:
        yield tmp
        commit_dir(tmp, target, replace=replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_temporary(path: Path) -> bool:
    """True for the hidden work-in-progress names that listings must skip."""
    return path.name.startswith(TMP_PREFIX) or path.name.startswith(".")
