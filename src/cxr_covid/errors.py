"""Every failure the tool expects, one class per family, each with its exit code.

The command line turns these into `Error: <message>` on stderr and the exit code, in one
place (`cxr_covid.cli.app`). Core code raises them; it never calls `sys.exit`.
"""

from __future__ import annotations

# Exit codes, documented in docs/exit-codes.md and in `cxr-covid --help`.
EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_DOWNLOAD = 4
EXIT_ARCHIVE = 5
EXIT_MODEL = 6
EXIT_IMAGE = 7
EXIT_PARTIAL = 8
EXIT_DEPENDENCY = 9
EXIT_WRITE = 10
EXIT_INTERRUPTED = 130


class CxrCovidError(Exception):
    """Base of every expected failure. `exit_code` is what the CLI exits with."""

    exit_code = EXIT_UNEXPECTED


class UsageError(CxrCovidError):
    """An option or argument value that cannot work (unknown architecture, bad split...)."""

    exit_code = EXIT_USAGE


class DataError(CxrCovidError):
    """A dataset is missing, empty, inconsistent, or its manifest cannot be read."""

    exit_code = EXIT_DATA


class NoSourceVariation(DataError):
    """`train --adversarial-source` on data where no class holds two recorded collections."""


class DownloadError(CxrCovidError):
    """The transfer failed: HTTP error, credentials refused, size or hash mismatch."""

    exit_code = EXIT_DOWNLOAD


class ArchiveError(CxrCovidError):
    """An archive is corrupt, truncated, not a zip, or hostile (path traversal, zip bomb)."""

    exit_code = EXIT_ARCHIVE


class ModelError(CxrCovidError):
    """A model is missing from the store, or its files are not a cxr-covid model."""

    exit_code = EXIT_MODEL


class ImageError(CxrCovidError):
    """An image cannot be decoded, is empty, or is too large to decode safely."""

    exit_code = EXIT_IMAGE


class PartialFailure(CxrCovidError):
    """A batch command finished, but some of its inputs failed (each one is reported)."""

    exit_code = EXIT_PARTIAL


class DependencyError(CxrCovidError):
    """An optional extra is needed but not installed (e.g. pydicom for DICOM)."""

    exit_code = EXIT_DEPENDENCY


class WriteError(CxrCovidError):
    """A file or folder cannot be written: disk full, read-only file system, no permission.

    An environment problem, not a bug: the message names the path and the reason.
    """

    exit_code = EXIT_WRITE


# (code, meaning) in order, for --help's epilog and the docs.
EXIT_CODES: list[tuple[int, str]] = [
    (EXIT_OK, "success"),
    (EXIT_UNEXPECTED, "unexpected error (a bug: please report it)"),
    (EXIT_USAGE, "bad command line or option value"),
    (EXIT_DATA, "dataset missing, empty or inconsistent"),
    (EXIT_DOWNLOAD, "download failed (network, HTTP, credentials, size/hash)"),
    (EXIT_ARCHIVE, "archive corrupt, truncated or unsafe"),
    (EXIT_MODEL, "model missing or not a cxr-covid model"),
    (EXIT_IMAGE, "image unreadable, empty or too large"),
    (EXIT_PARTIAL, "finished, but some inputs failed (see the report)"),
    (
        EXIT_DEPENDENCY,
        "optional dependency missing (e.g. pip install 'cxr-covid[dicom]'; from a checkout: "
        "pip install -e '.[dicom]')",
    ),
    (EXIT_WRITE, "cannot write: disk full, read-only or no permission"),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C); nothing half-written is left"),
]
