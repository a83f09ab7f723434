"""A dataset in the home: a folder with its images, `manifest.csv` and `dataset.json`.

<home>/datasets/<name>/
    dataset.json     source, release, classes, split settings, counts, creation time
    manifest.csv     one row per image (see manifest.py)
    images/          the extracted images, in the source's own layout
    augmented/       offline augmentations of training images (`cxr-covid augment`)
    cache/           resized uint8 copies for fast training (safe to delete)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_covid import atomic, jsonfile, paths
from cxr_covid.data.manifest import ManifestRow, manifest_hash, read_manifest, write_manifest
from cxr_covid.errors import DataError, UsageError

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def check_name(name: str) -> str:
    """A dataset or model name must be a safe single folder name."""
    if not _NAME_PATTERN.match(name):
        raise UsageError(
            f"invalid name {name!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Dataset:
    root: Path

    @property
    def name(self) -> str:
        return self.root.name

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.csv"

    @property
    def info_path(self) -> Path:
        return self.root / "dataset.json"

    @property
    def images_dir(self) -> Path:
        return self.root / "images"

    @property
    def augmented_dir(self) -> Path:
        return self.root / "augmented"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    def rows(self) -> list[ManifestRow]:
        return read_manifest(self.manifest_path)

    def write_rows(self, rows: list[ManifestRow]) -> None:
        write_manifest(self.manifest_path, rows)

    def info(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = jsonfile.loads(self.info_path.read_text(encoding="utf-8"))
            return data
        except FileNotFoundError:
            return {}
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.info_path}: corrupt dataset record ({exc})") from exc

    def write_info(self, info: dict[str, Any]) -> None:
        atomic.write_json(self.info_path, info)

    def manifest_hash(self) -> str:
        return manifest_hash(self.rows())

    def file(self, row: ManifestRow) -> Path:
        return self.root / row.path


def list_datasets() -> list[Dataset]:
    """Complete datasets in the home, oldest first (a folder without a manifest is skipped)."""
    root = paths.datasets_dir()
    if not root.is_dir():
        return []
    found = [
        Dataset(p)
        for p in root.iterdir()
        if p.is_dir() and not atomic.is_temporary(p) and (p / "manifest.csv").is_file()
    ]
    return sorted(found, key=_age_key)


def _age_key(dataset: Dataset) -> tuple[float, float, str]:
    """When the dataset was made: its recorded creation time, not the manifest's mtime,
    because `augment` rewrites the manifest and must not make an old dataset the "newest"
    (the default of every --dataset). The mtime breaks ties within the recorded second."""
    mtime = dataset.manifest_path.stat().st_mtime
    try:
        created = dataset.info().get("created")
        when = dt.datetime.fromisoformat(created).timestamp() if isinstance(created, str) else mtime
    except (ValueError, DataError):
        when = mtime
    return (when, mtime, dataset.name)


def dataset_path(name: str) -> Path:
    return paths.datasets_dir() / check_name(name)


def resolve_dataset(name: str | None = None) -> Dataset:
    """The named dataset, or the only/newest one when no name is given."""
    if name:
        root = dataset_path(name)
        if not (root / "manifest.csv").is_file():
            known = ", ".join(d.name for d in list_datasets()) or "none"
            raise DataError(f"no dataset named {name!r} (known: {known}); run `cxr-covid download`")
        return Dataset(root)
    datasets = list_datasets()
    if not datasets:
        raise DataError("no dataset yet: run `cxr-covid download` first")
    return datasets[-1]


def remove_dataset(dataset: Dataset) -> None:
    """Delete a dataset: renamed to a hidden name first, so it vanishes from listings at once
    and an interrupted removal leaves no half dataset (only a hidden folder)."""
    import shutil

    hidden = atomic.temp_dir_beside(dataset.root)
    hidden.rmdir()
    dataset.root.rename(hidden)
    shutil.rmtree(hidden, ignore_errors=True)
