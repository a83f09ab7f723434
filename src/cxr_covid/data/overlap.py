"""Is an "external" image really new to the model? Check it against the training data.

Public chest X-ray collections copy each other: an external test set may hold the very
radiographs a model was trained on, byte for byte or re-encoded. Such an image measures
memory, not generalisation. `external_overlaps` finds every external image that is identical
(sha256) or a near-duplicate (the perceptual hash of data/dedupe.py, same threshold as
`download`) of one of the model's training or validation images, so callers (`eval --data`,
`audit --external`) can report and leave them out.

The perceptual hashes of a dataset's images are cached in its `cache/` folder, keyed by the
images' sha256, so a second check does not decode the dataset again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic
from cxr_covid.data import dedupe as dd
from cxr_covid.data.dataset import Dataset, resolve_dataset
from cxr_covid.data.images import DICOM_SUFFIXES, read_image
from cxr_covid.data.manifest import ORIGINAL, ManifestRow, split_hash
from cxr_covid.errors import CxrCovidError, DataError

IDENTICAL = "identical"
NEAR_DUPLICATE = "near-duplicate"
TRAINING_SPLITS: tuple[str, ...] = ("train", "val")
_CACHE_NAME = "dhash-v1.json"


@dataclass(frozen=True)
class Overlap:
    """An external image that the model has (nearly) seen."""

    path: Path  # the external image
    kind: str  # IDENTICAL or NEAR_DUPLICATE
    match: str  # the dataset image it matches (manifest path)
    split: str  # that image's split
    distance: int  # bits of 256 that differ (0 for identical files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "match": self.match,
            "split": self.split,
            "distance": self.distance,
        }


@dataclass
class OverlapCheck:
    overlaps: list[Overlap] = field(default_factory=list)
    checked_against: str = ""  # "dataset NAME, train+val (N images)"
    warnings: list[str] = field(default_factory=list)

    @property
    def paths(self) -> set[Path]:
        return {o.path for o in self.overlaps}

    def summary(self) -> str:
        """One line for a report: how many overlapped, of which kind."""
        identical = sum(o.kind == IDENTICAL for o in self.overlaps)
        near = len(self.overlaps) - identical
        return (
            f"{len(self.overlaps)} external image(s) overlap the model's training data "
            f"({self.checked_against}): {identical} identical, {near} near-duplicate; "
            "left out of the evaluation"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "checked_against": self.checked_against,
            "overlaps": [o.to_dict() for o in self.overlaps],
            "warnings": self.warnings,
        }


def _hash_file(path: Path) -> tuple[str, bytes | None]:
    """(sha256, perceptual hash or None when the image does not decode)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    try:
        pixels = read_image(data if path.suffix.lower() not in DICOM_SUFFIXES else path)
    except CxrCovidError:
        return digest, None
    return digest, dd.dhash(np.asarray(pixels))


def _map(function: Any, items: Sequence[Any], workers: int | None) -> list[Any]:
    # Pillow releases the GIL while decoding: threads give a real speed-up.
    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 1)) as pool:
        return list(pool.map(function, items))


def dataset_hashes(
    dataset: Dataset, rows: Sequence[ManifestRow], workers: int | None = None
) -> dict[str, bytes]:
    """Perceptual hash per sha256 of `rows`, from the dataset's cache where it has them."""
    cache = dataset.cache_dir / _CACHE_NAME
    known: dict[str, bytes] = {}
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
        stored = json.loads(cache.read_text(encoding="utf-8"))
        known = {k: bytes.fromhex(v) for k, v in stored.get("hashes", {}).items()}
    missing = [r for r in rows if r.sha256 not in known]
    if missing:

        def one(row: ManifestRow) -> tuple[str, bytes | None]:
            try:
                return _hash_file(dataset.file(row))
            except OSError:
                return row.sha256, None

        for digest, phash in _map(one, missing, workers):
            if phash is not None:
                known[digest] = phash
        # A cache that cannot be written (read-only home) only costs time next run.
        with contextlib.suppress(OSError):
            atomic.write_json(cache, {"hashes": {k: v.hex() for k, v in sorted(known.items())}})
    return known


def cross_pairs(
    queries: Sequence[bytes], references: Sequence[bytes], max_distance: int, block: int = 256
) -> dict[int, tuple[int, int]]:
    """For each query index, its closest reference (index, distance) within max_distance."""
    if not queries or not references:
        return {}
    q = np.frombuffer(b"".join(queries), dtype=np.uint8).reshape(len(queries), -1)
    r = np.frombuffer(b"".join(references), dtype=np.uint8).reshape(len(references), -1)
    popcount = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)
    best: dict[int, tuple[int, int]] = {}
    # Blocks both ways keep memory at block * block * 64 bytes, whatever the sizes.
    for q_start in range(0, len(q), block):
        rows = q[q_start : q_start + block]
        for start in range(0, len(r), block):
            xor = np.bitwise_xor(rows[:, None, :], r[None, start : start + block, :])
            dist = popcount[xor].sum(axis=2)
            nearest = dist.argmin(axis=1)
            for i in np.nonzero(dist.min(axis=1) <= max_distance)[0]:
                d = int(dist[i, nearest[i]])
                key = q_start + int(i)
                if key not in best or d < best[key][1]:
                    best[key] = (start + int(nearest[i]), d)
    return best


def external_overlaps(
    paths: Sequence[Path],
    dataset_name: str,
    *,
    split_sha256: str | None = None,
    splits: Sequence[str] = TRAINING_SPLITS,
    max_distance: int = dd.DEFAULT_MAX_DISTANCE,
    workers: int | None = None,
) -> OverlapCheck:
    """External images that are identical to, or near-duplicates of, the training images.

    `dataset_name`: the dataset the model was trained on; `split_sha256`: the split it
    recorded. When the dataset was re-split since, its current train/val need not be the
    model's, so every original image is checked against instead (and a warning says so).
    DataError when the dataset is not in the home."""
    dataset = resolve_dataset(dataset_name)
    rows = dataset.rows()
    warnings: list[str] = []
    chosen_splits = tuple(splits)
    if split_sha256 and split_sha256 != split_hash(rows):
        chosen_splits = ("train", "val", "test")
        warnings.append(
            f"dataset {dataset.name!r} was re-split after training: external images were "
            "checked against all of its images"
        )
    reference = [r for r in rows if r.origin == ORIGINAL and r.split in chosen_splits]
    check = OverlapCheck(
        checked_against=f"dataset {dataset.name}, {'+'.join(chosen_splits)} "
        f"({len(reference)} images)",
        warnings=warnings,
    )
    if not reference or not paths:
        return check
    hashes = dataset_hashes(dataset, reference, workers)
    by_sha = {r.sha256: r for r in reference}

    def external(path: Path) -> tuple[str, bytes | None]:
        try:
            return _hash_file(path)
        except OSError:
            return "", None  # unreadable: eval reports it as failed

    measured = _map(external, list(paths), workers)
    near_queries: list[int] = []
    for index, (digest, _phash) in enumerate(measured):
        row = by_sha.get(digest)
        if row is not None:
            check.overlaps.append(Overlap(paths[index], IDENTICAL, row.path, row.split, 0))
        elif measured[index][1] is not None:
            near_queries.append(index)
    usable = [r for r in reference if r.sha256 in hashes]
    nearest = cross_pairs(
        [measured[i][1] or b"" for i in near_queries],
        [hashes[r.sha256] for r in usable],
        max_distance,
    )
    for q, (ref, distance) in sorted(nearest.items()):
        row = usable[ref]
        check.overlaps.append(
            Overlap(paths[near_queries[q]], NEAR_DUPLICATE, row.path, row.split, distance)
        )
    order = {p: i for i, p in enumerate(paths)}
    check.overlaps.sort(key=lambda o: order[o.path])
    return check


def overlaps_for_model(paths: Sequence[Path], dataset: dict[str, Any]) -> OverlapCheck:
    """`external_overlaps` for a model's recorded `dataset` (its record's `dataset` field).
    Never raises for a missing dataset: the check is then skipped with a warning."""
    name = dataset.get("name")
    if not name:
        return OverlapCheck(
            warnings=[
                "the model does not record its training dataset: external images could not "
                "be checked against its training images"
            ]
        )
    try:
        split = dataset.get("split_sha256")
        return external_overlaps(paths, str(name), split_sha256=str(split) if split else None)
    except DataError as exc:
        return OverlapCheck(
            warnings=[f"external images could not be checked against the training images ({exc})"]
        )
