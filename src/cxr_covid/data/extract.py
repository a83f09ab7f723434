"""Safe zip extraction: an archive from the internet is treated as hostile until checked.

Before a single byte is written, every member is checked, and the whole archive is refused
(ArchiveError) if any member has an absolute path, a `..` component, a drive letter, or is a
symlink, device, FIFO or socket; and if the members' declared total size or count exceeds the
bounds (zip bombs). During extraction the bytes actually written are counted too, so a member
that lies about its size cannot get past the bound. Callers extract into a temporary folder
and rename it into place (see ingest.py), so a refused or broken archive leaves nothing behind.

Zip bombs are bounded three ways (docs/hostile-input.md, "Archives, folders, downloads"):
- every member that is not tiny may inflate at most MAX_RATIO times its compressed size;
- the whole archive may unpack to at most MAX_ARCHIVE_RATIO times its size on disk (plus a
  small floor), which stops a "split" bomb of many moderate members that each look harmless;
- an absolute cap on the total (MAX_BYTES_ENV) and on the member count.
"""

from __future__ import annotations

import os
import stat
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cxr_covid.atomic import WRITE_ERRNOS, write_error
from cxr_covid.errors import ArchiveError
from cxr_covid.progress import NULL, Reporter
from cxr_covid.text import escape_name

# Progress task names (cxr_covid.progress).
UNPACKING = "Unpacking"
COPYING = "Copying"

MAX_BYTES_ENV = "CXR_COVID_MAX_UNZIPPED_BYTES"
MAX_MEMBERS_ENV = "CXR_COVID_MAX_ZIP_MEMBERS"
MAX_RATIO_ENV = "CXR_COVID_MAX_UNZIP_RATIO"
# The current Kaggle release unpacks to about 1.2 GB in ~42,000 members (images + masks);
# these defaults leave room for larger mirrors while stopping a bomb long before the disk fills.
DEFAULT_MAX_BYTES = 20 * 1024**3
DEFAULT_MAX_MEMBERS = 250_000
# A member inflating more than this many times its compressed size, and to more than
# SUSPICIOUS_SIZE bytes (tiny members are exempt: a short text file may deflate 100x and
# harms nobody), is refused: image formats are already compressed (PNG/JPEG inflate about
# 1x), while deflate bombs inflate ~1000x.
MAX_RATIO = 100
SUSPICIOUS_SIZE = 1024**2
# The whole archive may unpack to at most this many times its own size on disk, plus
# RATIO_FLOOR bytes (so a small zip of text files is never refused). Real image archives sit
# near 1x: the 360-PNG development zip unpacks to 0.99x its size (measured: 8,525,572 bytes
# from 8,597,346), since PNG and JPEG are already compressed; uncompressed DICOM or BMP
# deflated in a zip may reach a few x. A split bomb (40 members of 50 MiB of zeros in a
# 3.5 MB zip) is ~600x.
MAX_ARCHIVE_RATIO = 20
RATIO_FLOOR = 16 * 1024**2


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_members: int = DEFAULT_MAX_MEMBERS
    max_ratio: int = MAX_RATIO
    suspicious_size: int = SUSPICIOUS_SIZE
    max_archive_ratio: float = MAX_ARCHIVE_RATIO
    ratio_floor: int = RATIO_FLOOR

    @classmethod
    def from_env(cls) -> Limits:
        try:
            limits = cls(
                max_bytes=int(os.environ.get(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)),
                max_members=int(os.environ.get(MAX_MEMBERS_ENV, DEFAULT_MAX_MEMBERS)),
                max_archive_ratio=float(os.environ.get(MAX_RATIO_ENV, MAX_ARCHIVE_RATIO)),
            )
        except ValueError as exc:
            raise ArchiveError(f"bad archive limit in the environment: {exc}") from exc
        if not limits.max_archive_ratio > 0:  # also refuses nan
            raise ArchiveError(f"bad archive limit in the environment: {MAX_RATIO_ENV} must be > 0")
        return limits

    def unpacked_cap(self, archive_size: int) -> int:
        """The most bytes an archive of `archive_size` bytes may unpack to."""
        by_ratio = int(self.max_archive_ratio * archive_size) + self.ratio_floor
        return min(self.max_bytes, by_ratio)


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


def check_archive(
    archive: zipfile.ZipFile, limits: Limits, archive_size: int | None = None
) -> list[zipfile.ZipInfo]:
    """Validate every member (see module doc); returns the members in archive order.

    `archive_size` (bytes on disk) enables the whole-archive ratio check."""
    members = archive.infolist()
    if len(members) > limits.max_members:
        raise ArchiveError(
            f"archive has {len(members):,} members, more than the limit of "
            f"{limits.max_members:,} (set {MAX_MEMBERS_ENV} to allow more)"
        )
    for info in members:
        problem = member_problem(info)
        if problem:
            raise ArchiveError(f"refusing archive: member {info.filename!r} has {problem}")
    total = sum(info.file_size for info in members)
    if total > limits.max_bytes:
        raise ArchiveError(
            f"refusing archive: it would unpack to {_fmt(total)}, more than the limit of "
            f"{_fmt(limits.max_bytes)} (set {MAX_BYTES_ENV} to allow more)"
        )
    for info in members:
        if info.file_size > limits.suspicious_size and info.file_size > limits.max_ratio * max(
            1, info.compress_size
        ):
            raise ArchiveError(
                f"refusing archive: member {info.filename!r} inflates "
                f"{info.file_size // max(1, info.compress_size)}x to {_fmt(info.file_size)} "
                "(a zip bomb?)"
            )
    if archive_size is not None and total > limits.unpacked_cap(archive_size):
        raise ArchiveError(_ratio_message(archive_size, limits))
    return members


def _ratio_message(archive_size: int, limits: Limits) -> str:
    return (
        f"refusing archive: its {_fmt(archive_size)} unpack to more than "
        f"{_fmt(limits.unpacked_cap(archive_size))}, over {limits.max_archive_ratio:g}x its "
        f"size (image archives unpack to about 1x: a zip bomb?); set {MAX_RATIO_ENV} to "
        "allow more"
    )


def safe_extract(
    zip_path: Path,
    dest: Path,
    *,
    limits: Limits | None = None,
    keep: Callable[[str], bool] | None = None,
    reporter: Reporter = NULL,
) -> list[Path]:
    """Extract the regular files of `zip_path` under `dest` (which should be a fresh temporary
    folder); `keep(name)` can skip members (they are still checked). Returns the files written.
    """
    limits = limits or Limits.from_env()
    written: list[Path] = []
    try:
        archive_size = zip_path.stat().st_size
        with zipfile.ZipFile(zip_path) as archive:
            members = check_archive(archive, limits, archive_size)
            files = [m for m in members if not m.is_dir() and (keep is None or keep(m.filename))]
            # Counted on the bytes really written: members may lie about their sizes.
            budget = limits.unpacked_cap(archive_size)
            dest_root = dest.resolve()
            reporter.start(UNPACKING, total=len(files), unit="files")
            for index, info in enumerate(files, 1):
                target = (dest_root / info.filename.replace("\\", "/")).resolve()
                if dest_root not in target.parents:  # belt and braces after member_problem
                    raise ArchiveError(f"refusing archive: {info.filename!r} escapes the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                budget = _copy_member(archive, info, target, budget, limits, archive_size)
                written.append(target)
                reporter.advance(UNPACKING, index)
            reporter.finish(UNPACKING)
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
        if exc.errno in WRITE_ERRNOS:  # the disk's problem, not the archive's: exit 10
            raise write_error(exc.filename or dest, exc) from exc
        raise ArchiveError(f"{zip_path.name}: cannot extract ({exc})") from exc
    return written


def _copy_member(
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    target: Path,
    budget: int,
    limits: Limits,
    archive_size: int,
) -> int:
    with archive.open(info) as source, target.open("wb") as sink:
        while True:
            chunk = source.read(1 << 20)
            if not chunk:
                break
            budget -= len(chunk)
            if budget < 0:
                raise ArchiveError(_overrun_message(limits, archive_size))
            sink.write(chunk)
    return budget


def _overrun_message(limits: Limits, archive_size: int) -> str:
    cap = limits.unpacked_cap(archive_size)
    if cap >= limits.max_bytes:
        return (
            f"refusing archive: it unpacks to more than {_fmt(limits.max_bytes)} "
            f"(set {MAX_BYTES_ENV} to allow more)"
        )
    return _ratio_message(archive_size, limits)


# A file in a --from-dir folder larger than this is not read: no chest X-ray comes near it
# (a 4300x4300 16-bit DICOM is ~37 MB), and reading a huge file to check it would cost memory.
MAX_IMAGE_FILE_BYTES = 256 * 1024**2


@dataclass
class CopyResult:
    """What `copy_tree` copied, and what it refused with the reason (relative POSIX paths)."""

    written: list[Path] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


def copy_tree(
    source: Path,
    dest: Path,
    keep: Callable[[Path], bool],
    reporter: Reporter = NULL,
    *,
    check: Callable[[Path, bytes], str | None] | None = None,
) -> CopyResult:
    """Copy the files of a local folder that `keep` accepts, preserving relative paths.

    A folder may be a trap (someone else's shared folder): links are never followed out of
    it. A symbolic link to a file inside `source` is copied as that file; one that leaves
    `source` (say `covid/x.png -> /etc/shadow`) is skipped with the reason, as is any file
    that `check(path, data)` refuses (it returns the reason, e.g. "does not decode"), so
    only files that passed the check are ever written. Folder links are never followed (no
    cycles, no escape).
    """
    root = source.resolve()
    files = sorted(p for p in _walk(source) if keep(p))
    result = CopyResult()
    reporter.start(COPYING, total=len(files), unit="files")
    for index, path in enumerate(files, 1):
        # A name that is not UTF-8 (`bad\xff.png`) is copied under its escaped name, so the
        # manifest, reports and the file on disk all agree (docs/json.md, "File names").
        rel = escape_name(path.relative_to(source).as_posix())
        real = path.resolve()
        if real != root and root not in real.parents:
            result.skipped.append((rel, f"a link to {real}, outside {root}: not followed"))
        else:
            problem, data = _read_checked(real, check)
            if problem is not None:
                result.skipped.append((rel, problem))
            else:
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
                result.written.append(target)
        reporter.advance(COPYING, index)
    reporter.finish(COPYING)
    return result


def _read_checked(
    path: Path, check: Callable[[Path, bytes], str | None] | None
) -> tuple[str | None, bytes]:
    try:
        size = path.stat().st_size
        if size > MAX_IMAGE_FILE_BYTES:
            return (
                f"{_fmt(size)} is too large for an image (limit {_fmt(MAX_IMAGE_FILE_BYTES)})",
                b"",
            )
        data = path.read_bytes()
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})", b""
    problem = check(path, data) if check is not None else None
    return problem, data


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found.extend(Path(folder) / n for n in names if not n.startswith("."))
    # is_file() follows a link: FIFOs, devices and dangling links are left out here.
    return [p for p in found if p.is_file()]
