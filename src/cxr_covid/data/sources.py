"""Where a dataset comes from: the Kaggle releases, mirrors, local archives and folders.

Also the Kaggle credentials: optional (the database is public), looked up in the places the
official `kaggle` client uses, never printed, and only ever sent to the Kaggle endpoint (never
to a `--url` mirror, and requests drops them on a redirect to another host).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import requests

KAGGLE_DATASET = "tawsifurrahman/covid19-radiography-database"
KAGGLE_DOWNLOAD_BASE = "https://www.kaggle.com/api/v1/datasets/download"
# Overrides the whole Kaggle download URL (without the `?datasetVersionNumber=` part): for a
# corporate mirror of the Kaggle API, and for the tests' local server.
KAGGLE_URL_ENV = "CXR_COVID_KAGGLE_URL"

# What the releases hold (from the Kaggle page and the study). Used in docs and messages;
# never to fake counts: the catalogue always counts what is really on disk.
KNOWN_RELEASES: dict[str, str] = {
    "1": "first release, the study's: COVID-19/ 219, NORMAL/ 1341, Viral Pneumonia/ 1345",
    "current": (
        "COVID-19_Radiography_Dataset/: COVID 3616, Normal 10192, Lung_Opacity 6012, "
        "Viral Pneumonia 1345 (299x299 PNG, with lung masks)"
    ),
}


@dataclass(frozen=True)
class Source:
    """One place to get a dataset from.

    kind: "kaggle" (the official endpoint, optionally a release), "url" (any mirror serving a
    zip), "zip" (a local archive) or "dir" (a local folder of class folders).
    """

    kind: str
    location: str
    release: int | None = None

    @property
    def default_name(self) -> str:
        if self.kind == "kaggle":
            return f"kaggle-r{self.release}" if self.release else "kaggle-current"
        if self.kind == "url":
            stem = Path(urlparse(self.location).path).name
            stem = stem[: -len(".zip")] if stem.lower().endswith(".zip") else stem
            return _safe_name(stem) or "download"
        path = Path(self.location)
        stem = path.stem if self.kind == "zip" else path.name
        return _safe_name(stem) or self.kind

    def describe(self) -> dict[str, object]:
        """The `source` record written to dataset.json (no secrets, ever)."""
        record: dict[str, object] = {"kind": self.kind}
        if self.kind == "kaggle":
            record["dataset"] = KAGGLE_DATASET
            record["url"] = self.location
            record["release"] = self.release if self.release else "current"
        elif self.kind == "url":
            parsed = urlparse(self.location)
            if parsed.username or parsed.password:  # keep credentials out of dataset.json
                netloc = parsed.hostname or ""
                netloc += f":{parsed.port}" if parsed.port else ""
                record["url"] = parsed._replace(netloc=netloc).geturl()
            else:
                record["url"] = self.location
        else:
            record["path"] = self.location
        return record

    @property
    def download_key(self) -> str:
        """A stable file name for the downloaded archive, so an interrupted download resumes
        on the next run from its `.part` file."""
        digest = hashlib.sha256(self.location.encode("utf-8")).hexdigest()[:10]
        return f"{self.default_name}-{digest}.zip"


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in text).strip("-._")
    return cleaned[:64]


def kaggle_url(release: int | None = None) -> str:
    """The dataset-download URL for the current release, or release N."""
    base = os.environ.get(KAGGLE_URL_ENV) or f"{KAGGLE_DOWNLOAD_BASE}/{KAGGLE_DATASET}"
    if release is None:
        return base
    joiner = "&" if "?" in base else "?"
    return f"{base}{joiner}datasetVersionNumber={int(release)}"


def kaggle_source(release: int | None = None) -> Source:
    return Source("kaggle", kaggle_url(release), release)


@dataclass(frozen=True)
class Credentials:
    """Kaggle credentials: HTTP Basic (username + key) or a bearer token.

    The secret is excluded from repr, so it cannot leak into a log or traceback by accident.
    """

    kind: str  # "basic" or "bearer"
    origin: str  # where they were found, safe to print
    username: str = field(default="", repr=False)
    secret: str = field(default="", repr=False)

    def apply(self, session: requests.Session) -> None:
        if self.kind == "basic":
            session.auth = (self.username, self.secret)
        else:
            session.headers["Authorization"] = f"Bearer {self.secret}"


def _kaggle_dir() -> Path:
    configured = os.environ.get("KAGGLE_CONFIG_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".kaggle"


def find_credentials() -> Credentials | None:
    """Kaggle credentials from the environment or ~/.kaggle, or None (public download).

    Order: KAGGLE_API_TOKEN, KAGGLE_USERNAME + KAGGLE_KEY, ~/.kaggle/access_token,
    ~/.kaggle/kaggle.json (KAGGLE_CONFIG_DIR moves ~/.kaggle, as in the kaggle client).
    """
    token = os.environ.get("KAGGLE_API_TOKEN", "").strip()
    if token:
        return Credentials("bearer", "KAGGLE_API_TOKEN", secret=token)
    user = os.environ.get("KAGGLE_USERNAME", "").strip()
    key = os.environ.get("KAGGLE_KEY", "").strip()
    if user and key:
        return Credentials("basic", "KAGGLE_USERNAME/KAGGLE_KEY", username=user, secret=key)
    folder = _kaggle_dir()
    access = folder / "access_token"
    try:
        token = access.read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    if token:
        return Credentials("bearer", str(access), secret=token)
    config = folder / "kaggle.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("username") and data.get("key"):
        return Credentials(
            "basic", str(config), username=str(data["username"]), secret=str(data["key"])
        )
    return None


KAGGLE_PAGE = f"https://www.kaggle.com/datasets/{KAGGLE_DATASET}"

OFFLINE_HELP = (
    "check the connection; or download the zip in a browser on a connected machine (the "
    f"Kaggle page: {KAGGLE_PAGE}), copy it here and run the command again with "
    "--from-zip PATH, or name a mirror you can reach with --url URL"
)

# For a --url mirror that wants a login: Kaggle credentials are never sent there.
MIRROR_ACCESS_HELP = (
    "this mirror wants a login that cxr-covid cannot give (Kaggle credentials are only ever "
    "sent to Kaggle); download the zip in a browser and use --from-zip PATH, or use a "
    "public --url"
)

CREDENTIALS_HELP = (
    "set KAGGLE_USERNAME and KAGGLE_KEY (or KAGGLE_API_TOKEN), or save kaggle.json from "
    "kaggle.com > Settings > API > Create New Token in ~/.kaggle/; or download the zip in a "
    "browser and use --from-zip PATH"
)
