"""HTTP download done carefully: stream to `<target>.part`, resume, retry, verify, move.

- The bytes go to a `.part` file beside the target; only a complete, verified file is moved
  into place (`os.replace`), so the target is whole or absent.
- After a dropped connection or a timeout the transfer resumes from the `.part` file with an
  HTTP Range request (also across runs: the `.part` file stays for the next attempt). A server
  that ignores Range gets a fresh start.
- 429 and 5xx answers, timeouts and connection errors are retried with exponential back-off
  (honouring Retry-After up to a cap). 401/403 says how to supply credentials; 404 says the
  release or URL does not exist.
- Size is checked against Content-Length / Content-Range, and sha256 where one is known.
- A web page (a sign-in or error page) served instead of the archive is recognised and
  reported instead of being handed to the unzipper.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from cxr_covid.data.sources import CREDENTIALS_HELP, Credentials
from cxr_covid.errors import DownloadError

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
) -> Path:
    """Download `url` to `target` (resuming a `.part` file left by an earlier attempt).

    Raises DownloadError when every attempt failed, the server refused, or the file does not
    verify. A partial file is kept for resumption only after transfer failures; a file that
    proved wrong (web page, size or hash mismatch) is deleted.
    """
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
                total = _attempt(session, url, part, have, host, credentials, policy, progress)
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
        digest = _sha256(part)
        if digest.lower() != sha256.lower():
            _discard(part)
            raise DownloadError(
                f"download from {host} has sha256 {digest}, expected {sha256.lower()}"
            )
    os.replace(part, target)
    _discard(_validator_path(part))
    return target


def _attempt(
    session: requests.Session,
    url: str,
    part: Path,
    have: int,
    host: str,
    credentials: Credentials | None,
    policy: RetryPolicy,
    progress: ByteProgress | None,
) -> int | None:
    """One request. Returns the expected total size (None if the server did not say)."""
    headers = {"Range": f"bytes={have}-"} if have else {}
    validator = _validator_path(part)
    if have and validator.is_file():
        # If-Range: resume only if the file is still the one the .part holds the start of;
        # otherwise the server sends the new file whole (200) and we start over.
        headers["If-Range"] = validator.read_text(encoding="utf-8").strip()
    try:
        response = session.get(
            url, headers=headers, stream=True, timeout=(min(30.0, policy.timeout), policy.timeout)
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retry(f"cannot reach {host} ({type(exc).__name__})") from None
    except requests.RequestException as exc:
        detail = str(exc).replace(url, host)  # no user:password@ or signed query in messages
        raise DownloadError(f"cannot download from {host}: {detail}") from None
    with response:
        status = response.status_code
        if status == 416 and have:
            # Range past the end: the .part file is complete (or longer than the file).
            total = _content_range_total(response.headers.get("Content-Range"))
            if total == have:
                return total
            _discard(part)
            raise _Retry("server refused to resume; starting again")
        _check_status(response, host, credentials)
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
        ctype = response.headers.get("Content-Type", "").lower()
        if "text/html" in ctype:
            _discard(part)
            raise DownloadError(_html_message(host))
        if "json" in ctype:
            # An API error message with status 200 (Kaggle does this for some failures).
            text = response.raw.read(2000, decode_content=True).decode("utf-8", "replace")
            _discard(part)
            raise DownloadError(
                f"{host} answered with a message instead of a zip: {' '.join(text.split())}"
            )
        done = have
        first = True
        try:
            with part.open(mode) as handle:
                for chunk in response.iter_content(CHUNK):
                    if not chunk:
                        continue
                    if first and mode == "wb" and _looks_like_html(chunk):
                        handle.close()
                        _discard(part)
                        raise DownloadError(_html_message(host))
                    first = False
                    handle.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(done, total)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Retry(f"connection to {host} dropped after {done} bytes ({exc})") from None
        except requests.RequestException as exc:
            # ChunkedEncodingError / ContentDecodingError: the stream broke off mid-body.
            raise _Retry(f"transfer from {host} broke off after {done} bytes ({exc})") from None
    if total is not None and done < total:
        raise _Retry(f"{host} closed the connection after {done} of {total} bytes")
    return total


def _check_status(response: requests.Response, host: str, credentials: Credentials | None) -> None:
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
            f"HTTP {status} from {host}: the server wants credentials; {CREDENTIALS_HELP}"
        )
    if status == 404:
        raise DownloadError(
            f"HTTP 404 from {host}: no such file (check --release N, or the URL "
            f"{_host(response.url)}{urlparse(response.url).path})"
        )
    raise DownloadError(f"HTTP {status} {response.reason or ''} from {host}".rstrip())


def _host(url: str) -> str:
    """Host and port only: never a user:password@ part or a signed query string."""
    parsed = urlparse(url)
    if not parsed.hostname:
        return "the server"
    return parsed.hostname + (f":{parsed.port}" if parsed.port else "")


def _html_message(host: str) -> str:
    return (
        f"{host} sent a web page instead of a zip archive (a sign-in or error page?); "
        f"{CREDENTIALS_HELP}"
    )


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    if path.name.endswith(".part"):
        with contextlib.suppress(FileNotFoundError):
            _validator_path(path).unlink()
