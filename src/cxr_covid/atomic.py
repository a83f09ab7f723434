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
import errno
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cxr_covid.errors import WriteError

TMP_PREFIX = ".tmp-"

# errno values that mean "this place cannot be written", whatever the operation was.
WRITE_ERRNOS = frozenset(
    code
    for code in (
        errno.EROFS,
        errno.ENOSPC,
        errno.EACCES,
        errno.EPERM,
        errno.EFBIG,
        getattr(errno, "EDQUOT", None),
    )
    if code is not None
)


def write_error(path: Path | str, exc: OSError) -> WriteError:
    """The one-line error for a failed write: the path, and the system's reason."""
    reason = exc.strerror or str(exc)
    where = exc.filename if exc.filename and str(exc.filename) != str(path) else None
    detail = f" ({where})" if where else ""
    return WriteError(f"cannot write {path}: {reason}{detail}")


@contextlib.contextmanager
def writing(path: Path | str) -> Iterator[None]:
    """Turn any OSError raised inside into a WriteError naming `path`."""
    try:
        yield
    except (WriteError, FileExistsError):
        raise  # FileExistsError: callers ask "did someone else make it?", not a disk problem
    except OSError as exc:
        raise write_error(path, exc) from exc


@contextlib.contextmanager
def disk_errors(path: Path | str) -> Iterator[None]:
    """Around the caller's own code: only a full, read-only or forbidden file system becomes
    a WriteError naming `path`; any other OSError is the caller's and passes unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno in WRITE_ERRNOS:
            raise write_error(path, exc) from exc
        raise


def _is_special(path: Path) -> bool:
    """An existing device or pipe (/dev/null, /dev/stdout, a FIFO): written in place, since
    renaming a file over it would replace the device itself, not write to it."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISBLK(mode)


def check_writable(folder: Path) -> None:
    """Fail now, with a WriteError, if files cannot be created in `folder` (made if needed).

    For commands that compute for minutes before writing: better to learn first.
    """
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=TMP_PREFIX + "probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)


def check_file_writable(path: Path) -> None:
    """Like `check_writable`, for the folder that will hold file `path` (or the device)."""
    if _is_special(path):
        with writing(path), open(path, "ab"):
            return
    check_writable(path.parent)


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
    with writing(path):
        if _is_special(path):
            with open(path, "wb") as device:
                device.write(data)
            return
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
    """Open a temporary sibling of `path` for writing; it replaces `path` only on success.

    OSErrors of the file itself (disk full, read-only, no permission) become a WriteError;
    ones raised by the caller's code inside the block pass through unchanged.
    """
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
        os.close(fd)
    try:
        with writing(path):
            handle = open(tmp, mode, **kwargs)  # noqa: SIM115 - closed below
        with handle:
            with disk_errors(path):
                yield handle
            with writing(path):
                handle.flush()
                os.fsync(handle.fileno())
                _publish_mode(tmp)
        with writing(path):
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_dir_beside(target: Path) -> Path:
    """A new hidden, empty folder next to `target`, to be filled then `commit_dir`-ed."""
    with writing(target.parent):
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=TMP_PREFIX + target.name + ".", dir=target.parent))


def commit_dir(tmp: Path, target: Path, *, replace: bool = False) -> None:
    """Move a finished temporary folder into place.

    With `replace`, an existing `target` is swapped out first and removed only after the new
    folder is in place, so at every instant one complete version exists on disk. The folder
    gets the umask's mode (it was private while being filled).
    """
    if target.exists() and not replace:
        raise FileExistsError(str(target))
    with writing(target):
        _publish_dir_mode(tmp)
        _swap_in(tmp, target)


def _swap_in(tmp: Path, target: Path) -> None:
    if target.exists():
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
        # Whatever fills the folder (Keras saving a model, an extraction) may hit a full or
        # read-only disk: an environment problem, said as one line.
        with disk_errors(target):
            yield tmp
        commit_dir(tmp, target, replace=replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def is_temporary(path: Path) -> bool:
    """True for the hidden work-in-progress names that listings must skip."""
    return path.name.startswith(TMP_PREFIX) or path.name.startswith(".")
