"""HTTP download done carefully: stream to `<target>.part`, resume, retry, verify, move.

- The bytes go to a `.part` file beside the target; only a complete, verified file is moved
  into place (`os.replace`), so the target is whole or absent.
- After a dropped connection or a timeout the transfer resumes from the `.part` file with an
  HTTP Range request (also across runs: the `.part` file stays for the next attempt). A server
  that ignores Range gets a fresh start.
- 429 and 5xx answers, timeouts and connection errors are retried with exponential back-off
  (honouring Retry-After up to a cap). A failed name lookup (offline, no DNS) is not: it
  fails at once and says how to get the zip another way. 401/403 says how to supply
  credentials (Kaggle's for the Kaggle endpoint only); 404 says the release or URL does not
  exist.
- One download of a file at a time: the `.part` file is guarded by an fcntl lock on a
  `.lock` file beside it, and a second download of the same file fails at once
  ("another download of this file is in progress") instead of writing into the same `.part`.
- Size is checked against Content-Length / Content-Range, and sha256 where one is known.
- A web page (a sign-in or error page) served instead of the archive is recognised and
  reported instead of being handed to the unzipper.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from cxr_covid.atomic import WRITE_ERRNOS
from cxr_covid.data.manifest import sha256_file
from cxr_covid.data.sources import CREDENTIALS_HELP, OFFLINE_HELP, Credentials
from cxr_covid.errors import DownloadError, UsageError, WriteError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: an exclusively created lock file instead
    fcntl = None  # type: ignore[assignment]

CHUNK = 1 << 14  # small enough that a broken-off transfer loses little
RETRIES_ENV = "CXR_COVID_DOWNLOAD_RETRIES"
BACKOFF_ENV = "CXR_COVID_DOWNLOAD_BACKOFF"
TIMEOUT_ENV = "CXR_COVID_DOWNLOAD_TIMEOUT"

ByteProgress = Callable[[int, int | None], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try. `backoff` is the first wait in seconds, doubled per failure and capped
    at `max_wait` (which also caps a server's Retry-After)."""

    attempts: int = 6
    backoff: float = 1.0
    max_wait: float = 60.0
    timeout: float = 60.0  # seconds without a byte before the read is abandoned

    @classmethod
    def from_env(cls) -> RetryPolicy:
        """Defaults, overridden by CXR_COVID_DOWNLOAD_{RETRIES,BACKOFF,TIMEOUT}."""
        policy = cls()
        try:
            attempts = int(os.environ.get(RETRIES_ENV, policy.attempts))
            backoff = float(os.environ.get(BACKOFF_ENV, policy.backoff))
            timeout = float(os.environ.get(TIMEOUT_ENV, policy.timeout))
        except ValueError as exc:
            raise DownloadError(f"bad download setting in the environment: {exc}") from exc
        return cls(
            attempts=max(1, attempts),
            backoff=max(0.0, backoff),
            max_wait=max(0.0, backoff) * 60.0,
            timeout=max(0.01, timeout),
        )

    def wait(self, failures: int, retry_after: str | None = None) -> float:
        seconds = self.backoff * float(2 ** max(0, failures - 1))
        if retry_after:
            with contextlib.suppress(ValueError):
                seconds = max(seconds, float(retry_after))
        return min(seconds, self.max_wait)


class _Retry(Exception):
    """A failure worth another attempt (the message says what happened)."""

    def __init__(self, message: str, retry_after: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def part_path(target: Path) -> Path:
    return target.with_name(target.name + ".part")


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


def in_progress_message(target: Path) -> str:
    return (
        f"another download of this file is in progress (into {part_path(target)}); wait for "
        "it to finish, or stop it, then run this again"
    )


@contextlib.contextmanager
def download_lock(target: Path) -> Iterator[None]:
    """Hold the right to write `target`'s `.part` file; DownloadError at once if another
    process holds it. The lock file is removed on release."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(target)
    if fcntl is None:  # pragma: no cover - Windows
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            raise DownloadError(
                in_progress_message(target) + f" (if none is, delete {path})"
            ) from None
        try:
            yield
        finally:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        return
    fd = _locked_fd(path, target)
    try:
        yield
    finally:
        # Unlink while still holding the lock: a process that opened the old file meanwhile
        # sees that it is gone (inode check in _locked_fd) and takes a fresh one.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _locked_fd(path: Path, target: Path) -> int:
    assert fcntl is not None
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DownloadError(in_progress_message(target)) from None
        except OSError:
            return fd  # a file system without locks (some NFS mounts): go on unguarded
        except BaseException:
            os.close(fd)
            raise
        try:
            held, named = os.fstat(fd), os.stat(path)
            if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the previous holder removed it as we opened it: lock the new one


def _validator_path(part: Path) -> Path:
    """Beside the .part file: the ETag (or Last-Modified) of the file it is the start of."""
    return part.with_name(part.name + ".etag")


def fetch(
    url: str,
    target: Path,
    *,
    credentials: Credentials | None = None,
    expected_size: int | None = None,
    sha256: str | None = None,
    policy: RetryPolicy | None = None,
    progress: ByteProgress | None = None,
    sleep: Callable[[float], None] = time.sleep,
    lock: bool = True,
    access_help: str = CREDENTIALS_HELP,
    max_bytes: int | None = None,
    limit_hint: str = "",
) -> Path:
    """Download `url` to `target` (resuming a `.part` file left by an earlier attempt).

    Raises DownloadError when every attempt failed, the server refused, or the file does not
    verify. A partial file is kept for resumption only after transfer failures; a file that
    proved wrong (web page, size or hash mismatch) is deleted. `lock=False` when the caller
    already holds `download_lock(target)`. `access_help` is the advice given when the server
    wants a login (401/403, or a sign-in page): Kaggle's credentials only suit Kaggle.

    `max_bytes` bounds the transfer (issue 22, case 4): a declared length above it, or above
    the free space, is refused before a byte is written; a body that runs past it is cut off.
    Either way the `.part` file is removed and named in the error; `limit_hint` says how to
    raise the bound.
    """
    check_url(url)
    bound = _Bound(max_bytes, limit_hint)
    with download_lock(target) if lock else contextlib.nullcontext():
        return _fetch(
            url,
            target,
            credentials,
            expected_size,
            sha256,
            policy,
            progress,
            sleep,
            access_help,
            bound,
        )


@dataclass(frozen=True)
class _Bound:
    """How many bytes a transfer may bring, checked before and while writing."""

    max_bytes: int | None
    hint: str = ""

    def check_declared(self, part: Path, declared: int | None, have: int, host: str) -> None:
        if declared is None:
            return
        if self.max_bytes is not None and declared > self.max_bytes:
            _discard(part)
            raise DownloadError(
                f"{host} declares {declared:,} bytes, more than the limit of "
                f"{self.max_bytes:,} bytes{self.hint}; refused before writing ({part} removed)"
            )
        free = shutil.disk_usage(part.parent).free
        if declared - have > free:
            _discard(part)
            raise WriteError(
                f"cannot write {part}: {host} declares {declared:,} bytes but only {free:,} "
                f"are free in {part.parent}; free some space (refused before writing)"
            )

    def check_written(self, part: Path, done: int, host: str) -> None:
        if self.max_bytes is not None and done > self.max_bytes:
            _discard(part)
            raise DownloadError(
                f"download from {host} ran past {done:,} bytes, more than the limit of "
                f"{self.max_bytes:,} bytes{self.hint}; stopped ({part} removed)"
            )


def check_url(url: str, flag: str = "URL") -> None:
    """UsageError (one line) for a URL that cannot be parsed or names no host:
    `http://[::1/x.zip` made urllib raise ValueError deep in the download."""
    try:
        parsed = urlparse(url)
        parsed.port  # noqa: B018 - parsing the port is what raises for `:99999`
    except ValueError as exc:
        raise UsageError(f"{flag} {url!r}: not a valid URL ({exc})") from None
    if parsed.scheme.lower() not in ("http", "https") or not parsed.hostname:
        raise UsageError(f"{flag} {url!r}: not a valid URL (expected http(s)://HOST/...)")


def _fetch(
    url: str,
    target: Path,
    credentials: Credentials | None,
    expected_size: int | None,
    sha256: str | None,
    policy: RetryPolicy | None,
    progress: ByteProgress | None,
    sleep: Callable[[float], None],
    access_help: str,
    bound: _Bound,
) -> Path:
    policy = policy or RetryPolicy.from_env()
    target.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(target)
    host = _host(url)
    failures = 0
    last = ""
    with requests.Session() as session:
        session.headers["User-Agent"] = "cxr-covid (+https://github.com/cxr-covid/cxr-covid)"
        if credentials is not None:
            credentials.apply(session)
        while True:
            have = part.stat().st_size if part.exists() else 0
            try:
                total = _attempt(
                    session,
                    url,
                    part,
                    have,
                    host,
                    credentials,
                    policy,
                    progress,
                    access_help,
                    bound,
                )
                break
            except _Retry as exc:
                grown = part.exists() and part.stat().st_size > have
                # Progress resets the count: a flaky link that keeps delivering bytes is
                # worth following to the end; a dead one is given up after `attempts`.
                failures = 1 if grown else failures + 1
                last = str(exc)
                if failures >= policy.attempts:
                    raise DownloadError(
                        f"download from {host} failed after {policy.attempts} attempts: {last}"
                        + (f" (partial file kept for resuming: {part})" if part.exists() else "")
                    ) from None
                sleep(policy.wait(failures, exc.retry_after))
    size = part.stat().st_size
    want = expected_size if expected_size is not None else total
    if want is not None and size != want:
        _discard(part)
        raise DownloadError(f"download from {host} is {size} bytes, expected {want}")
    if sha256:
        digest = sha256_file(part)
        if digest.lower() != sha256.lower():
            _discard(part)
            raise DownloadError(
                f"download from {host} has sha256 {digest}, expected {sha256.lower()}"
            )
    os.replace(part, target)
    _discard(_validator_path(part))
    return target


def _send(
    session: requests.Session,
    url: str,
    have: int,
    validator: Path,
    host: str,
    policy: RetryPolicy,
) -> requests.Response:
    """Send the GET (a Range request when `have` bytes are already in the .part file), turning
    transport failures into a retry, or into a one-line error when retrying cannot help."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    if have and validator.is_file():
        # If-Range: resume only if the file is still the one the .part holds the start of;
        # otherwise the server sends the new file whole (200) and we start over.
        headers["If-Range"] = validator.read_text(encoding="utf-8").strip()
    try:
        return session.get(
            url, headers=headers, stream=True, timeout=(min(30.0, policy.timeout), policy.timeout)
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        if is_name_resolution_failure(exc):
            # Offline or no DNS: asking again in a few seconds will not change the answer.
            raise DownloadError(offline_message(host)) from None
        raise _Retry(f"cannot reach {host} ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        detail = str(exc).replace(url, host)  # no user:password@ or signed query in messages
        raise DownloadError(f"cannot download from {host}: {detail}") from None


def _refuse_message_body(
    response: requests.Response, part: Path, host: str, access_help: str
) -> None:
    """A web page or an API message served instead of the archive: say so, keep no .part."""
    ctype = response.headers.get("Content-Type", "").lower()
    if "text/html" in ctype:
        _discard(part)
        raise DownloadError(_html_message(host, access_help))
    if "json" in ctype:
        # An API error message with status 200 (Kaggle does this for some failures).
        text = response.raw.read(2000, decode_content=True).decode("utf-8", "replace")
        _discard(part)
        raise DownloadError(
            f"{host} answered with a message instead of a zip: {' '.join(text.split())}"
        )


def _attempt(
    session: requests.Session,
    url: str,
    part: Path,
    have: int,
    host: str,
    credentials: Credentials | None,
    policy: RetryPolicy,
    progress: ByteProgress | None,
    access_help: str,
    bound: _Bound,
) -> int | None:
    """One request. Returns the expected total size (None if the server did not say)."""
    validator = _validator_path(part)
    response = _send(session, url, have, validator, host, policy)
    with response:
        status = response.status_code
        if status == 416 and have:
            # Range past the end: the .part file is complete (or longer than the file).
            total = _content_range_total(response.headers.get("Content-Range"))
            if total == have:
                return total
            _discard(part)
            raise _Retry("server refused to resume; starting again")
        _check_status(response, host, credentials, access_help)
        if status == 206 and have:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != have:
                _discard(part)
                raise _Retry("server resumed at the wrong offset; starting again")
            total = _content_range_total(response.headers.get("Content-Range"))
            mode = "ab"
        else:
            # A 200 answer to a Range request means the server cannot resume: start over.
            have = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            mode = "wb"
            tag = response.headers.get("ETag") or response.headers.get("Last-Modified")
            if tag and not tag.startswith("W/"):  # weak ETags may not be used in If-Range
                validator.write_text(tag, encoding="utf-8")
            else:
                _discard(validator)
        bound.check_declared(part, total, have, host)
        _refuse_message_body(response, part, host, access_help)
        done = [have]  # bytes in the .part file, kept up to date by _write_chunks
        try:
            with part.open(mode) as handle:
                _write_chunks(
                    response.iter_content(CHUNK),
                    handle,
                    part,
                    mode == "wb",
                    done,
                    (total, host, access_help, bound, progress),
                )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(f"connection to {host} dropped after {done[0]} bytes ({exc})") from None
        except requests.RequestException as exc:
            # ChunkedEncodingError / ContentDecodingError: the stream broke off mid-body.
            raise _Retry(f"transfer from {host} broke off after {done[0]} bytes ({exc})") from None
        except OSError as exc:  # a full disk (on a write or the closing flush): name the file
            if exc.errno not in WRITE_ERRNOS:
                raise
            _discard(part)
            raise WriteError(f"cannot write {part}: {exc.strerror or exc} (removed)") from None
    if total is not None and done[0] < total:
        raise _Retry(f"{host} closed the connection after {done[0]} of {total} bytes")
    return total


def _write_chunks(
    chunks: Iterator[bytes],
    handle: Any,
    part: Path,
    fresh: bool,
    done: list[int],
    context: tuple[int | None, str, str, _Bound, ByteProgress | None],
) -> None:
    """Append the body to the open `.part` file, counting into `done[0]`: a web page as the
    first chunk of a fresh file, or a body past the bound, removes the file and raises."""
    total, host, access_help, bound, progress = context
    first = True
    for chunk in chunks:
        if not chunk:
            continue
        if first and fresh and _looks_like_html(chunk):
            handle.close()
            _discard(part)
            raise DownloadError(_html_message(host, access_help))
        first = False
        done[0] += len(chunk)
        if bound.max_bytes is not None and done[0] > bound.max_bytes:
            handle.close()
            bound.check_written(part, done[0], host)
        handle.write(chunk)
        if progress is not None:
            progress(done[0], total)


def _check_status(
    response: requests.Response,
    host: str,
    credentials: Credentials | None,
    access_help: str = CREDENTIALS_HELP,
) -> None:
    status = response.status_code
    if status in (200, 206):
        return
    if status == 429 or 500 <= status < 600:
        raise _Retry(f"HTTP {status} from {host}", response.headers.get("Retry-After"))
    if status in (401, 403):
        if credentials is not None:
            raise DownloadError(
                f"HTTP {status} from {host}: the Kaggle credentials from {credentials.origin} "
                f"were refused (check them, and accept the dataset's terms on kaggle.com); "
                f"otherwise {CREDENTIALS_HELP}"
            )
        raise DownloadError(
            f"HTTP {status} from {host}: the server wants credentials; {access_help}"
        )
    if status == 404:
        where = f"{_host(response.url)}{urlparse(response.url).path}"
        check = "--release N, or the URL" if access_help == CREDENTIALS_HELP else "the URL"
        raise DownloadError(f"HTTP 404 from {host}: no such file (check {check} {where})")
    raise DownloadError(f"HTTP {status} {response.reason or ''} from {host}".rstrip())


def _host(url: str) -> str:
    """Host and port only: never a user:password@ part or a signed query string."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return "the server"
    return parsed.hostname + (f":{parsed.port}" if parsed.port else "")


def _html_message(host: str, access_help: str = CREDENTIALS_HELP) -> str:
    return (
        f"{host} sent a web page instead of a zip archive (a sign-in or error page?); {access_help}"
    )


def is_name_resolution_failure(exc: BaseException) -> bool:
    """True when `exc` (a requests error) comes from a failed DNS lookup of the host."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, socket.gaierror) or type(current).__name__ == (
            "NameResolutionError"
        ):
            return True
        # requests wraps urllib3's MaxRetryError, whose `reason` holds the real cause.
        reason = getattr(current, "reason", None)
        todo.extend(
            [
                current.__cause__,
                current.__context__,
                reason if isinstance(reason, BaseException) else None,
                *(a for a in current.args if isinstance(a, BaseException)),
            ]
        )
    return False


def offline_message(host: str) -> str:
    return (
        f"cannot look up {host}: this machine seems to be offline (or has no DNS); {OFFLINE_HELP}"
    )


def check_resolvable(url: str) -> None:
    """DownloadError (with what to do instead) when `url`'s host name cannot be looked up.

    Lets a long command fail in a second, before it does anything else, when the machine is
    offline. Skipped when a proxy is configured for the URL: the proxy resolves names."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return
    if requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url)):
        return
    try:
        socket.getaddrinfo(parsed.hostname, parsed.port or 443, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise DownloadError(offline_message(_host(url))) from None
    except (OSError, UnicodeError):
        return  # anything else: let the download itself report it


def _looks_like_html(chunk: bytes) -> bool:
    head = chunk[:512].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml"))


def _content_range_total(value: str | None) -> int | None:
    # "bytes 100-199/200" or "bytes */200"
    if not value or "/" not in value:
        return None
    total = value.rsplit("/", 1)[1].strip()
    return int(total) if total.isdigit() else None


def _content_range_start(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return int(value.split()[1].split("-", 1)[0])
    except (IndexError, ValueError):
        return None


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if path.name.endswith(".part"):
        with contextlib.suppress(FileNotFoundError):
            _validator_path(path).unlink()
