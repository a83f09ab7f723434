"""`download` as one transaction: fetch, extract, catalogue, split, write, rename into place.

The dataset folder is built under a hidden `.tmp-*` name beside its final place and renamed
only when complete (manifest, dataset.json, report.json written), so a failed or interrupted
run leaves the previous dataset of that name untouched and no partial one. With `force` an
existing dataset is swapped out atomically (atomic.commit_dir).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cxr_covid import __version__, atomic, paths
from cxr_covid import classes as cls
from cxr_covid.data import dedupe as dd
from cxr_covid.data.catalog import (
    Catalog,
    Item,
    build_catalog,
    class_of,
    is_candidate,
    natural_key,
    parse_classes,
)
from cxr_covid.data.dataset import Dataset, check_name, dataset_path
from cxr_covid.data.download import fetch
from cxr_covid.data.extract import Limits, copy_tree, safe_extract
from cxr_covid.data.images import IMAGE_SUFFIXES
from cxr_covid.data.manifest import ManifestRow, counts, manifest_hash, split_hash
from cxr_covid.data.sources import Source, find_credentials, kaggle_source
from cxr_covid.data.splits import (
    STUDY_FRACTIONS,
    STUDY_SEED,
    assign_splits,
    check_dataset_fractions,
)
from cxr_covid.errors import DownloadError, UsageError

Progress = Callable[[str, int, int | None], None]
IMAGES = "images"
SPLIT_PROTOCOL = (
    "sklearn train_test_split(test_size=1-train, stratify=class, random_state=seed), "
    "then the held-out part split the same way into val and test"
)


@dataclass(frozen=True)
class NearDuplicate:
    """Two images whose perceptual hashes differ in `distance` of 256 bits."""

    a: str
    b: str
    distance: int
    class_a: str
    class_b: str
    split_a: str  # "" when the image was dropped before splitting (--dedupe)
    split_b: str

    @property
    def across_classes(self) -> bool:
        return self.class_a != self.class_b

    @property
    def across_splits(self) -> bool:
        return self.split_a != self.split_b


@dataclass
class DownloadResult:
    dataset: Dataset
    counts: dict[str, dict[str, int]]  # split -> class -> n
    excluded: list[tuple[str, str]]  # (path, reason): images that do not decode
    duplicates: list[list[str]]  # groups of byte-identical images (paths)
    near_duplicates: list[NearDuplicate]
    dropped: list[str] = field(default_factory=list)  # removed by dedupe
    layout: str = ""
    skipped: dict[str, int] = field(default_factory=dict)  # known classes not selected
    unmatched: dict[str, int] = field(default_factory=dict)  # folders with no class
    source: dict[str, object] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(n for by_class in self.counts.values() for n in by_class.values())


def resolve_source(
    *,
    release: int | None,
    url: str | None,
    from_zip: Path | None,
    from_dir: Path | None,
) -> Source:
    given = [x for x in (url, from_zip, from_dir) if x is not None]
    if len(given) > 1:
        raise UsageError("give at most one of --url, --from-zip and --from-dir")
    if release is not None:
        if given:
            raise UsageError("--release selects a Kaggle release; it cannot go with another source")
        if release < 1:
            raise UsageError(f"--release {release}: Kaggle releases are numbered from 1")
    if url is not None:
        if not url.lower().startswith(("http://", "https://")):
            raise UsageError(f"--url {url!r}: expected an http:// or https:// URL")
        return Source("url", url)
    if from_zip is not None:
        path = Path(from_zip).expanduser()
        if not path.is_file():
            raise UsageError(f"--from-zip {from_zip}: no such file")
        return Source("zip", str(path.resolve()))
    if from_dir is not None:
        path = Path(from_dir).expanduser()
        if not path.is_dir():
            raise UsageError(f"--from-dir {from_dir}: no such folder")
        return Source("dir", str(path.resolve()))
    return kaggle_source(release)


def download_dataset(
    *,
    release: int | None = None,
    url: str | None = None,
    from_zip: Path | None = None,
    from_dir: Path | None = None,
    name: str | None = None,
    classes: Sequence[str] = cls.STUDY_CLASSES,
    split: tuple[float, float, float] = STUDY_FRACTIONS,
    seed: int = STUDY_SEED,
    dedupe: bool = False,
    force: bool = False,
    class_map: dict[str, str] | None = None,
    progress: Progress | None = None,
    sha256: str | None = None,
    near_distance: int = dd.DEFAULT_MAX_DISTANCE,
    limits: Limits | None = None,
) -> DownloadResult:
    """Get a dataset into the home as `<home>/datasets/<name>/`, verified and split."""
    selected = parse_classes(classes)
    if len(selected) < 2:
        raise UsageError(
            f"--classes {','.join(selected)}: a model tells classes apart, so a dataset needs "
            "at least two"
        )
    fractions = check_dataset_fractions(split)
    if name is not None:
        check_name(name)  # '' included: it would silently become the default name
    source = resolve_source(release=release, url=url, from_zip=from_zip, from_dir=from_dir)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise UsageError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
        if source.kind == "dir":
            raise UsageError("--sha256 checks a zip: use it with --from-zip, --url or Kaggle")
    target = dataset_path(name or source.default_name)
    if target.exists() and not force:
        raise UsageError(
            f"a dataset named {target.name!r} exists; add --force to replace it, "
            "or choose another --name"
        )
    report = progress or (lambda stage, done, total: None)

    def keep_member(name: str) -> bool:
        # Extract what the dataset needs: images of the selected classes (and of folders we
        # cannot classify, so the error message can name them), metadata; never masks.
        rel = name.replace("\\", "/")
        if not is_candidate(rel):
            return not PurePosixPath(rel).name.startswith(".") and (
                PurePosixPath(rel).suffix.lower() in (".csv", ".xlsx", ".txt", ".md")
            )
        label = class_of(rel, class_map)
        parts = {p.lower() for p in PurePosixPath(rel).parts[:-1]}
        if parts & {"masks", "mask", "__macosx"}:
            return False
        return label is None or label in selected

    downloaded: Path | None = None
    try:
        with atomic.building_dir(target, replace=force) as tmp:
            images = tmp / IMAGES
            images.mkdir()
            if source.kind in ("kaggle", "url"):
                downloaded = paths.ensure(paths.home() / "downloads") / source.download_key
                fetch(
                    source.location,
                    downloaded,
                    credentials=find_credentials() if source.kind == "kaggle" else None,
                    sha256=sha256,
                    progress=lambda done, total: report("download", done, total),
                )
                archive: Path | None = downloaded
            elif source.kind == "zip":
                archive = Path(source.location)
                if sha256:  # was silently ignored for a local zip
                    digest = _file_sha256(archive)
                    if digest != sha256:
                        raise DownloadError(
                            f"{archive.name} has sha256 {digest}, expected {sha256}: not the "
                            "file you meant, or a damaged download"
                        )
            else:
                archive = None
            if archive is not None:
                safe_extract(
                    archive,
                    images,
                    limits=limits,
                    keep=keep_member,
                    progress=lambda done, total: report("extract", done, total),
                )
            else:
                root = Path(source.location)
                copy_tree(
                    root,
                    images,
                    keep=lambda p: (
                        p.suffix.lower() in IMAGE_SUFFIXES
                        and keep_member(p.relative_to(root).as_posix())
                    ),
                    progress=lambda done, total: report("copy", done, total),
                )
            catalog = build_catalog(
                images,
                classes=selected,
                class_map=class_map,
                progress=lambda done, total: report("check", done, total),
                source_name=(
                    str(source.location)
                    if source.kind in ("zip", "dir")
                    else "the downloaded archive"
                ),
            )
            result = _finish(
                tmp,
                target.name,
                source,
                catalog,
                selected=selected,
                fractions=fractions,
                seed=seed,
                dedupe=dedupe,
                near_distance=near_distance,
            )
    except FileExistsError:
        raise UsageError(
            f"a dataset named {target.name!r} appeared while downloading; add --force to replace it"
        ) from None
    finally:
        # The archive (not a `.part` of an interrupted transfer, which stays for resuming)
        # is only needed until it is unpacked: successful or refused, it goes.
        if downloaded is not None:
            with contextlib.suppress(FileNotFoundError):
                downloaded.unlink()
            with contextlib.suppress(OSError):
                downloaded.parent.rmdir()  # only if empty: a kept .part stays
    result.dataset = Dataset(target)
    return result


def _finish(
    root: Path,
    name: str,
    source: Source,
    catalog: Catalog,
    *,
    selected: tuple[str, ...],
    fractions: tuple[float, float, float],
    seed: int,
    dedupe: bool,
    near_distance: int,
) -> DownloadResult:
    """Dedupe, split, and write manifest.csv, report.json and dataset.json into `root`."""
    rank = {c: i for i, c in enumerate(selected)}
    # The order fed to the split: class by class in the study's label order, files in natural
    # order, so the same images always give the same split.
    items = sorted(catalog.items, key=lambda it: (rank[it.label], natural_key(it.path)))
    pairs = dd.near_pairs([it.phash for it in items], max_distance=near_distance)
    groups = dd.clusters(len(items), pairs)
    drop = dd.to_drop(groups, [it.label for it in items]) if dedupe else set()
    kept: list[Item] = [it for i, it in enumerate(items) if i not in drop]
    if not kept:  # pragma: no cover - to_drop always keeps one image of a single-class group
        raise UsageError("deduplication removed every image")
    assigned = assign_splits(
        [it.label for it in kept],
        fractions=fractions,
        seed=seed,
        groups=[it.patient for it in kept],
    )
    split_of = {it.path: s for it, s in zip(kept, assigned, strict=True)}
    rows = [
        ManifestRow(
            path=f"{IMAGES}/{it.path}",
            label=it.label,
            sha256=it.sha256,
            width=it.width,
            height=it.height,
            split=split_of[it.path],
            patient=it.patient,
        )
        for it in kept
    ]
    near = [
        NearDuplicate(
            a=f"{IMAGES}/{items[p.a].path}",
            b=f"{IMAGES}/{items[p.b].path}",
            distance=p.distance,
            class_a=items[p.a].label,
            class_b=items[p.b].label,
            split_a=split_of.get(items[p.a].path, ""),
            split_b=split_of.get(items[p.b].path, ""),
        )
        for p in pairs
    ]
    table = counts(rows)
    result = DownloadResult(
        dataset=Dataset(root),
        counts={s: table.get(s, {}) for s in ("train", "val", "test")},
        excluded=[(f"{IMAGES}/{p}", reason) for p, reason in catalog.excluded],
        duplicates=[[f"{IMAGES}/{p}" for p in group] for group in catalog.duplicates],
        near_duplicates=near,
        dropped=sorted((f"{IMAGES}/{items[i].path}" for i in drop), key=natural_key),
        layout=catalog.layout,
        skipped=catalog.skipped,
        unmatched=catalog.unmatched,
        source=source.describe(),
    )
    dataset = Dataset(root)
    dataset.write_rows(rows)
    atomic.write_json(root / "report.json", _report(result))
    dataset.write_info(
        {
            "name": name,
            "source": source.describe(),
            "release": source.release if source.kind == "kaggle" else None,
            "layout": catalog.layout,
            "classes": list(selected),
            "split": {"fractions": list(fractions), "seed": seed, "protocol": SPLIT_PROTOCOL},
            "seed": seed,
            "dedupe": dedupe,
            "counts": result.counts,
            "images": len(rows),
            "excluded": len(result.excluded),
            "duplicate_groups": len(result.duplicates),
            "near_duplicate_pairs": len(near),
            "dropped": len(result.dropped),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "manifest_sha256": manifest_hash(rows),
            "split_sha256": split_hash(rows),
            "tool": f"cxr-covid {__version__}",
        }
    )
    return result


def _report(result: DownloadResult) -> dict[str, Any]:
    return {
        "excluded": [{"path": p, "reason": r} for p, r in result.excluded],
        "duplicates": result.duplicates,
        "near_duplicates": [asdict(n) for n in result.near_duplicates],
        "dropped": result.dropped,
        "skipped_classes": result.skipped,
        "unmatched_folders": result.unmatched,
    }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
