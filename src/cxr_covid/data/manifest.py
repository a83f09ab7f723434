"""The manifest: one CSV row per image, read by every command after `download`.

Columns: path (relative to the dataset folder, POSIX), class (canonical), sha256, width,
height, split (train/val/test), origin (original/augmented), source (for augmented rows, the
path of the image it came from), patient (an id where file names or metadata carry one),
and since format 2: collection (where the image comes from: data/provenance.py's vocabulary)
and age_group (child/adult/unknown). A format-1 manifest, without the last two, still loads:
its images read as `unknown`.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from cxr_covid import atomic, csv_safe
from cxr_covid.errors import DataError

SPLITS: tuple[str, ...] = ("train", "val", "test")
ORIGINAL = "original"
AUGMENTED = "augmented"
UNKNOWN = "unknown"
# 1: path..patient; 2: + collection, age_group. Recorded in dataset.json as manifest_format.
MANIFEST_FORMAT = 2


@dataclass(frozen=True)
class ManifestRow:
    path: str
    label: str
    sha256: str
    width: int
    height: int
    split: str = ""
    origin: str = ORIGINAL
    source: str = ""
    patient: str = ""
    collection: str = UNKNOWN
    age_group: str = UNKNOWN


# CSV header names; `label` is written as `class` (a Python keyword could not be a field).
_COLUMN_FOR_FIELD = {
    f.name: ("class" if f.name == "label" else f.name) for f in fields(ManifestRow)
}
COLUMNS: tuple[str, ...] = tuple(_COLUMN_FOR_FIELD.values())
# Where an image comes from describes it; it is not what a model learns from. Kept out of
# manifest_hash, so datasets made before format 2 keep their identity (caches, resumable
# runs, model records) and sources can be attached later without invalidating them.
PROVENANCE_COLUMNS: tuple[str, ...] = ("collection", "age_group")
REQUIRED_COLUMNS: tuple[str, ...] = tuple(c for c in COLUMNS if c not in PROVENANCE_COLUMNS)


def to_csv_text(rows: list[ManifestRow], columns: tuple[str, ...] = COLUMNS) -> str:
    # Through csv_safe like every CSV the tool writes; its paths start with `images/`, so
    # real manifests (and their hashes) are unchanged by the formula rule.
    chosen = [f for f, c in _COLUMN_FOR_FIELD.items() if c in columns]
    return csv_safe.to_text([columns, *([getattr(row, f) for f in chosen] for row in rows)])


def write_manifest(path: Path, rows: list[ManifestRow]) -> None:
    atomic.write_text(path, to_csv_text(rows))


def read_manifest(path: Path) -> list[ManifestRow]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = set(REQUIRED_COLUMNS) - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: not a cxr-covid manifest (missing {sorted(missing)})")
            return [
                ManifestRow(
                    path=r["path"],
                    label=r["class"],
                    sha256=r["sha256"],
                    width=int(r["width"]),
                    height=int(r["height"]),
                    split=r["split"],
                    origin=r["origin"],
                    source=r["source"],
                    patient=r["patient"],
                    collection=r.get("collection") or UNKNOWN,
                    age_group=r.get("age_group") or UNKNOWN,
                )
                for r in map(_restored, reader)
            ]
    except FileNotFoundError as exc:
        raise DataError(f"{path}: manifest not found") from exc
    except (ValueError, KeyError, csv.Error) as exc:
        raise DataError(f"{path}: corrupt manifest ({exc})") from exc


def _restored(record: dict[str, Any]) -> dict[str, Any]:
    # Short or long rows leave None or a list in DictReader's record: they fail later, clearly.
    return {
        key: csv_safe.read_cell(value) if isinstance(value, str) else value
        for key, value in record.items()
    }


def manifest_hash(rows: list[ManifestRow]) -> str:
    """Identity of a manifest's content: the sha256 of its canonical CSV text, provenance
    columns left out (see PROVENANCE_COLUMNS)."""
    return hashlib.sha256(to_csv_text(rows, REQUIRED_COLUMNS).encode("utf-8")).hexdigest()


def split_hash(rows: list[ManifestRow]) -> str:
    """Identity of the split alone (original images and their assigned split), so two
    models can be checked to have been tested on the same images."""
    lines = sorted(f"{r.sha256},{r.label},{r.split}" for r in rows if r.origin == ORIGINAL)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def counts(rows: list[ManifestRow]) -> dict[str, dict[str, int]]:
    """{split: {class: n}}, with split '' for rows not yet split."""
    table: dict[str, Counter[str]] = {}
    for row in rows:
        table.setdefault(row.split, Counter())[row.label] += 1
    return {split: dict(counter) for split, counter in table.items()}


def select(
    rows: list[ManifestRow], split: str, *, include_augmented: bool = False
) -> list[ManifestRow]:
    """Rows of one split; augmented rows only when asked (they only ever sit in train)."""
    return [r for r in rows if r.split == split and (include_augmented or r.origin == ORIGINAL)]


def sha256_file(path: Path) -> str:
    """The file's sha256 (hex), read in 1 MiB chunks: the one file-digest helper."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
