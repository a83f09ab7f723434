"""Safe zip extraction: an archive from the internet is treated as hostile until checked.

Before a single byte is written, every member is checked, and the whole archive is refused
(ArchiveError) if any member has an absolute path, a `..` component, a drive letter, or is a
symlink, device, FIFO or socket; and if the members' declared total size or count exceeds the
bounds (zip bombs). During extraction the bytes actually written are counted too, so a member
that lies about its size cannot get past the bound. Callers extract into a temporary folder
and rename it into place (see ingest.py), so a refused or broken archive leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cxr_covid.errors import ArchiveError

MAX_BYTES_ENV = "CXR_COVID_MAX_UNZIPPED_BYTES"
MAX_MEMBERS_ENV = "CXR_COVID_MAX_ZIP_MEMBERS"
# The current Kaggle release unpacks to about 1.2 GB in ~42,000 members (images + masks);
# these defaults leave room for larger mirrors while stopping a bomb long before the disk fills.
DEFAULT_MAX_BYTES = 20 * 1024**3
DEFAULT_MAX_MEMBERS = 250_000
# A member inflating more than this many times its compressed size, and to more than
# SUSPICIOUS_SIZE bytes, is refused: image formats are already compressed (PNG/JPEG inflate
# about 1x), while deflate bombs inflate ~1000x.
MAX_RATIO = 100
SUSPICIOUS_SIZE = 64 * 1024**2


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: int = MAX_RATIO
    suspicious_size: int = SUSPICIOUS_SIZE

    @classmethod
    def from_env(cls) -> Limits:
        try:
            return cls(
                max_bytes=int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)),
                max_members=int(os.environ.get(MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS)),
            )
        except ValueError as exc:
            raise ArchiveError(f"bad archive limit in the environment: {exc}") from exc


def _fmt(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} bytes"  # pragma: no cover


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a member is unsafe to extract, or None."""
    name = info.filename
    if "\x00" in name:
        return "a NUL byte in its name"
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "an absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "a '..' path component"
    mode = info.external_attr >> 16
    if info.create_system == 3 and mode:  # Unix attributes recorded
        kind = stat.S_IFMT(mode)
        if stat.S_ISLNK(mode):
            return "a symbolic link"
        if kind and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            return "a device, FIFO or socket"
    return None


def check_archive(archive: zipfile.ZipFile, limits: Limits) -> list[zipfile.ZipInfo]:
    """Validate every member (see module doc); returns the members in archive order."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise ArchiveError(
            f"archive has {len(members):,} members, more than the limit of "
            f"{limits.max_members:,} (set {MAX_MEMBERS_ENV} to allow more)"
        )
    total = 0
    for info in members:
        problem = member_problem(info)
        if problem:
            raise ArchiveError(f"refusing archive: member {info.filename!r} has {problem}")
        total += info.file_size
        if info.file_size > limits.suspicious_size and info.file_size > limits.max_ratio * max(
            1, info.compress_size
        ):
            raise ArchiveError(
                f"refusing archive: member {info.filename!r} inflates "
                f"{info.file_size // max(1, info.compress_size)}x to {_fmt(info.file_size)} "
                "(a zip bomb?)"
            )
    if total > limits.max_bytes:
        raise ArchiveError(
            f"refusing archive: it would unpack to {_fmt(total)}, more than the limit of "
            f"{_fmt(limits.max_bytes)} (set {MAX_BYTES_ENV} to allow more)"
        )
    return members


def safe_extract(
    zip_path: Path,
    dest: Path,
    *,
    limits: Limits | None = None,
    keep: Callable[[str], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Extract the regular files of `zip_path` under `dest` (which should be a fresh temporary
    folder); `keep(name)` can skip members (they are still checked). Returns the files written.
    """
    limits = limits or Limits.from_env()
    written: list[Path] = []
    try:
        with zipfile.ZipFile(zip_path) as archive:
            members = check_archive(archive, limits)
            files = [m for m in members if not m.is_dir() and (keep is None or keep(m.filename))]
            budget = limits.max_bytes
            dest_root = dest.resolve()
            for index, info in enumerate(files, 1):
                target = (dest_root / info.filename.replace("\\", "/")).resolve()
                if dest_root not in target.parents:  # belt and braces after member_problem
                    raise ArchiveError(f"refusing archive: {info.filename!r} escapes the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                budget = _copy_member(archive, info, target, budget, limits)
                written.append(target)
                if progress is not None:
                    progress(index, len(files))
    except ArchiveError:
        raise
    except FileNotFoundError as exc:
        raise ArchiveError(f"{zip_path}: no such file") from exc
    except zipfile.BadZipFile as exc:
        raise ArchiveError(f"{zip_path.name}: not a zip archive, or truncated ({exc})") from exc
    except (EOFError, zlib.error) as exc:
        raise ArchiveError(f"{zip_path.name}: truncated or corrupt archive ({exc})") from exc
    except NotImplementedError as exc:
        raise ArchiveError(f"{zip_path.name}: unsupported compression ({exc})") from exc
    except RuntimeError as exc:  # encrypted members
        raise ArchiveError(f"{zip_path.name}: cannot extract ({exc})") from exc
    except OSError as exc:  # e.g. a file and a folder of the same name, or a full disk
        raise ArchiveError(f"{zip_path.name}: cannot extract ({exc})") from exc
    return written


def _copy_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, budget: int, limits: Limits
) -> int:
    with archive.open(info) as source, target.open("wb") as sink:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            budget -= len(chunk)
            if budget < 0:
                raise ArchiveError(
                    f"refusing archive: it unpacks to more than {_fmt(limits.max_bytes)} "
                    f"(set {MAX_BYTES_ENV} to allow more)"
                )
            sink.write(chunk)
    return budget


def copy_tree(
    source: Path,
    dest: Path,
    keep: Callable[[Path], bool],
    progress: Callable[[int, int], None] | None = None,
) -> list[Path]:
    """Copy the files of a local folder that `keep` accepts, preserving relative paths;
    symbolic links are followed for files but never for folders (no cycles)."""
    files = sorted(p for p in _walk(source) if keep(p))
    written = []
    for index, path in enumerate(files, 1):
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        written.append(target)
        if progress is not None:
            progress(index, len(files))
    return written


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / n for n in names if not n.startswith("."))
    return [p for p in found if p.is_file()]
