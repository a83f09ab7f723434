"""`download` as one transaction: fetch, extract, catalogue, split, write, rename into place.

The dataset folder is built under a hidden `.tmp-*` name beside its final place and renamed
only when complete (manifest, dataset.json, report.json written), so a failed or interrupted
run leaves the previous dataset of that name untouched and no partial one. With `force` an
existing dataset is swapped out atomically (atomic.commit_dir).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from cxr_covid import atomic, paths
from cxr_covid import classes as cls
from cxr_covid.about import __version__
from cxr_covid.data import confounding
from cxr_covid.data import dedupe as dd
from cxr_covid.data import provenance as prov
from cxr_covid.data.catalog import (
    MASK_FOLDERS,
    Catalog,
    Item,
    build_catalog,
    class_of,
    is_candidate,
    is_ignored_folder,
    is_xray,
    natural_key,
    parse_classes,
)
from cxr_covid.data.dataset import Dataset, check_name, dataset_path
from cxr_covid.data.download import check_url, download_lock, fetch, part_path
from cxr_covid.data.extract import MAX_BYTES_ENV, Limits, copy_tree, safe_extract
from cxr_covid.data.images import DICOM_SUFFIXES, IMAGE_SUFFIXES, read_image
from cxr_covid.data.manifest import (
    MANIFEST_FORMAT,
    ManifestRow,
    counts,
    manifest_hash,
    sha256_file,
    split_hash,
)
from cxr_covid.data.sources import (
    CREDENTIALS_HELP,
    MIRROR_ACCESS_HELP,
    Source,
    find_credentials,
    kaggle_source,
)
from cxr_covid.data.splits import (
    STUDY_FRACTIONS,
    STUDY_SEED,
    assign_splits,
    check_dataset_fractions,
)
from cxr_covid.errors import CxrCovidError, DataError, DownloadError, UsageError
from cxr_covid.progress import NULL, Reporter

IMAGES = "images"
DOWNLOADING = "Downloading"  # the progress task of the transfer (cxr_covid.progress)
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
    provenance: prov.ProvenanceReport = field(default_factory=prov.ProvenanceReport)

    @property
    def total(self) -> int:
        return sum(n for by_class in self.counts.values() for n in by_class.values())

    def to_dict(self) -> dict[str, Any]:
        """`download --json`'s document."""
        return {
            "dataset": self.dataset.name,
            "path": str(self.dataset.root),
            "source": self.source,
            "layout": self.layout,
            "counts": self.counts,
            "total": self.total,
            "excluded": [{"path": p, "reason": r} for p, r in self.excluded],
            "duplicates": self.duplicates,
            "near_duplicates": {
                "pairs": len(self.near_duplicates),
                "across_classes": sum(n.across_classes for n in self.near_duplicates),
                "across_splits": sum(n.across_splits for n in self.near_duplicates),
            },
            "dropped": self.dropped,
            "skipped_classes": self.skipped,
            "unmatched_folders": self.unmatched,
            "provenance": {
                **self.provenance.to_dict(),
                **confounding.summarize(self.dataset.rows()).to_dict(),
            },
        }


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
        check_url(url, "--url")
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


def partial_download(
    *,
    release: int | None = None,
    url: str | None = None,
    from_zip: Path | None = None,
    from_dir: Path | None = None,
) -> Path | None:
    """The `.part` file an interrupted download of this source left for resuming, if any."""
    try:
        source = resolve_source(release=release, url=url, from_zip=from_zip, from_dir=from_dir)
    except UsageError:
        return None
    if source.kind not in ("kaggle", "url"):
        return None
    part = part_path(paths.home() / "downloads" / source.download_key)
    return part if part.is_file() else None


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
    reporter: Reporter = NULL,
    sha256: str | None = None,
    near_distance: int = dd.DEFAULT_MAX_DISTANCE,
    limits: Limits | None = None,
    sources: Path | None = None,
    find_sources: bool = True,
) -> DownloadResult:
    """Get a dataset into the home as `<home>/datasets/<name>/`, verified and split.

    `sources`: a `path,source[,age_group]` CSV saying where each image comes from (see
    data/provenance.py), else one found with a local folder or zip (data/sources_lookup.py;
    not with `find_sources=False`). `reporter` sees the stages:
    Downloading (bytes), Unpacking or Copying (files), Checking images."""
    selected = parse_classes(classes)
    if len(selected) < 2:
        raise UsageError(
            f"--classes {','.join(selected)}: a model tells classes apart, so a dataset needs "
            "at least two"
        )
    fractions = check_dataset_fractions(split)
    if name is not None:
        check_name(name)  # '' included: it would silently become the default name
    sources_file = prov.read_sources_csv(sources) if sources is not None else None
    source = resolve_source(release=release, url=url, from_zip=from_zip, from_dir=from_dir)
    sources_file = sources_file or (_travelling_sources(source, reporter) if find_sources else None)
    sha256 = _checked_sha256(sha256, source)
    target = dataset_path(name or source.default_name)
    if target.exists() and not force:
        raise UsageError(
            f"a dataset named {target.name!r} exists; add --force to replace it, "
            "or choose another --name"
        )
    keep_member = _member_filter(selected, class_map)
    downloaded: Path | None = None
    held = contextlib.ExitStack()  # the download lock, released after the cleanup below
    try:
        with atomic.building_dir(target, replace=force) as tmp:
            images = tmp / IMAGES
            images.mkdir()
            if source.kind in ("kaggle", "url"):
                # Set before the transfer, so a failed one still has its folder tidied.
                downloaded = paths.ensure(paths.home() / "downloads") / source.download_key
                _fetch_archive(source, downloaded, sha256, held, reporter)
            archive = downloaded if downloaded is not None else _local_zip(source)
            archive_info = _archive_identity(archive, source, sha256)
            refused: list[tuple[str, str]] = []  # (source path, reason): files not copied
            if archive is not None:
                safe_extract(archive, images, limits=limits, keep=keep_member, reporter=reporter)
            else:
                refused = _copy_folder(Path(source.location), images, keep_member, reporter)
            catalog = build_catalog(
                images,
                classes=selected,
                class_map=class_map,
                reporter=reporter,
                source_name=(
                    str(source.location)
                    if source.kind in ("zip", "dir")
                    else "the downloaded archive"
                ),
            )
            _prune(images, catalog)
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
                sources=sources_file,
                # The workbooks sit beside the class folders: extracted with the images from
                # a zip, but never copied from a folder (only images are).
                workbook_root=Path(source.location) if source.kind == "dir" else images,
                refused=refused,
                archive=archive_info,
            )
    except FileExistsError:
        raise UsageError(
            f"a dataset named {target.name!r} appeared while downloading; add --force to replace it"
        ) from None
    finally:
        _drop_archive(downloaded, held)
    result.dataset = Dataset(target)
    return result


def _travelling_sources(source: Source, reporter: Reporter) -> prov.SourcesFile | None:
    from cxr_covid.data.sources_lookup import find_sources

    try:
        found = find_sources(source.kind, source.location)
    except DataError as exc:
        raise DataError(f"{exc} (found with the data; --no-sources ignores it)") from None
    if found is not None:
        reporter.message(
            f"where the images come from: {found.where} (found with the data; "
            "--sources FILE names another, --no-sources ignores it)"
        )
    return None if found is None else found.sources


def _checked_sha256(sha256: str | None, source: Source) -> str | None:
    """--sha256 normalised, refused unless it is 64 hex digits checking a zip."""
    if sha256 is None:
        return None
    sha256 = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", sha256):
        raise UsageError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    if source.kind == "dir":
        raise UsageError("--sha256 checks a zip: use it with --from-zip, --url or Kaggle")
    return sha256


def _member_filter(
    selected: tuple[str, ...], class_map: dict[str, str] | None
) -> Callable[[str], bool]:
    """Which archive members (or folder files) the dataset needs: images of the selected
    classes (and of folders we cannot classify, so the error message can name them), the
    lung masks of those images, metadata; never macOS resource forks."""

    def keep_member(name: str) -> bool:
        rel = name.replace("\\", "/")
        if not is_candidate(rel):
            return not PurePosixPath(rel).name.startswith(".") and (
                PurePosixPath(rel).suffix.lower() in (".csv", ".xlsx", ".txt", ".md")
            )
        label = class_of(rel, class_map)
        parts = {p.lower() for p in PurePosixPath(rel).parts[:-1]}
        if any(is_ignored_folder(p) for p in parts - MASK_FOLDERS):
            return False
        if parts & MASK_FOLDERS:
            # Lung masks stay beside their images for the lung field (cxr_covid.data.lungs); the
            # catalogue never takes them for X-rays (catalog.is_xray).
            folders = [
                "images" if f.lower() in MASK_FOLDERS else f for f in PurePosixPath(rel).parts[:-1]
            ]
            owner = class_of("/".join([*folders, PurePosixPath(rel).name]), class_map)
            return owner in selected
        return label is None or label in selected

    return keep_member


def _fetch_archive(
    source: Source,
    archive_path: Path,
    sha256: str | None,
    held: contextlib.ExitStack,
    reporter: Reporter,
) -> None:
    """Download the source's archive to `archive_path` (resumable), holding its lock in
    `held` until the archive is unpacked and deleted, so a second run of the same download
    can neither share the .part file nor delete the archive under us."""
    held.enter_context(download_lock(archive_path))
    reporter.start(DOWNLOADING, unit="bytes")
    fetch(
        source.location,
        archive_path,
        credentials=find_credentials() if source.kind == "kaggle" else None,
        sha256=sha256,
        progress=lambda done, total: reporter.advance(DOWNLOADING, done, total),
        lock=False,
        access_help=CREDENTIALS_HELP if source.kind == "kaggle" else MIRROR_ACCESS_HELP,
        # An archive may not be larger than what it may unpack to (extract.Limits).
        max_bytes=Limits.from_env().max_bytes,
        limit_hint=f" (set {MAX_BYTES_ENV} to allow more)",
    )
    reporter.finish(DOWNLOADING)


def _local_zip(source: Source) -> Path | None:
    return Path(source.location) if source.kind == "zip" else None


def _archive_identity(
    archive: Path | None, source: Source, sha256: str | None
) -> dict[str, Any] | None:
    """The source archive's identity, kept in dataset.json (which exact file this is); a
    local zip whose digest is not --sha256 is refused."""
    if archive is None:
        return None
    info: dict[str, Any] = {"sha256": sha256_file(archive), "bytes": archive.stat().st_size}
    if source.kind == "zip" and sha256 and info["sha256"] != sha256:
        raise DownloadError(
            f"{Path(source.location).name} has sha256 {info['sha256']}, expected {sha256}: "
            "not the file you meant, or a damaged download"
        )
    return info


def _copy_folder(
    root: Path, images: Path, keep_member: Callable[[str], bool], reporter: Reporter
) -> list[tuple[str, str]]:
    """Copy the wanted images of a --from-dir folder; the files refused, with the reason."""
    copied = copy_tree(
        root,
        images,
        keep=lambda p: (
            p.suffix.lower() in IMAGE_SUFFIXES and keep_member(p.relative_to(root).as_posix())
        ),
        reporter=reporter,
        check=_decode_problem,
    )
    refused = [(str(root / rel), reason) for rel, reason in copied.skipped]
    if not copied.written and refused:
        raise DataError(
            f"none of the {len(refused)} image files under {root} can be used "
            f"(first: {refused[0][0]}: {refused[0][1]})"
        )
    return refused


def _drop_archive(downloaded: Path | None, held: contextlib.ExitStack) -> None:
    """The archive (not a `.part` of an interrupted transfer, which stays for resuming) is
    only needed until it is unpacked: successful or refused, it goes; then the lock."""
    if downloaded is not None:
        with contextlib.suppress(FileNotFoundError):
            downloaded.unlink()
    held.close()
    if downloaded is not None:
        with contextlib.suppress(OSError):
            downloaded.parent.rmdir()  # only if empty: a kept .part stays


def _split_rows(
    items: list[Item], drop: set[int], fractions: tuple[float, float, float], seed: int
) -> tuple[list[ManifestRow], dict[str, str]]:
    """The manifest rows of the images kept, each with its split; the split of each path."""
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
    return rows, split_of


def _near_duplicates(
    items: list[Item], pairs: Sequence[Any], split_of: dict[str, str]
) -> list[NearDuplicate]:
    return [
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
    sources: prov.SourcesFile | None = None,
    workbook_root: Path | None = None,
    refused: Sequence[tuple[str, str]] = (),
    archive: dict[str, Any] | None = None,
) -> DownloadResult:
    """Dedupe, split, and write manifest.csv, report.json and dataset.json into `root`.

    `refused` lists source files that were never copied (path, reason); they are reported
    with the images that did not decode."""
    rank = {c: i for i, c in enumerate(selected)}
    # The order fed to the split: class by class in the study's label order, files in natural
    # order, so the same images always give the same split.
    items = sorted(catalog.items, key=lambda it: (rank[it.label], natural_key(it.path)))
    pairs = dd.near_pairs([it.phash for it in items], max_distance=near_distance)
    groups = dd.clusters(len(items), pairs)
    drop = dd.to_drop(groups, [it.label for it in items]) if dedupe else set()
    rows, split_of = _split_rows(items, drop, fractions, seed)
    rows, provenance = prov.annotate(
        rows,
        sources=sources,
        workbook_root=workbook_root,
        first_release=source.release == 1 or catalog.layout == "kaggle-first",
        expect_workbooks=catalog.layout == "kaggle-current",
    )
    near = _near_duplicates(items, pairs, split_of)
    table = counts(rows)
    result = DownloadResult(
        dataset=Dataset(root),
        counts={s: table.get(s, {}) for s in ("train", "val", "test")},
        excluded=[(f"{IMAGES}/{p}", reason) for p, reason in catalog.excluded] + list(refused),
        duplicates=[[f"{IMAGES}/{p}" for p in group] for group in catalog.duplicates],
        near_duplicates=near,
        dropped=sorted((f"{IMAGES}/{items[i].path}" for i in drop), key=natural_key),
        layout=catalog.layout,
        skipped=catalog.skipped,
        unmatched=catalog.unmatched,
        source=source.describe(),
        provenance=provenance,
    )
    dataset = Dataset(root)
    dataset.write_rows(rows)
    atomic.write_json(root / "report.json", _report(result))
    dataset.write_info(
        {
            "name": name,
            "source": source.describe(),
            **({"archive": archive} if archive is not None else {}),
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
            "manifest_format": MANIFEST_FORMAT,
            "provenance": provenance.to_dict(),
        }
    )
    return result


def _decode_problem(path: Path, data: bytes) -> str | None:
    """Why a file is not a usable image (None if it decodes): checked before it is copied."""
    try:
        read_image(path if path.suffix.lower() in DICOM_SUFFIXES else data)
    except CxrCovidError as exc:
        return str(exc).replace("<bytes>: ", "").replace(f"{path}: ", "")
    return None


def _prune(images: Path, catalog: Catalog) -> None:
    """Delete every image file the catalogue did not keep (it did not decode, or sits in a
    folder with no class), so nothing unusable, or a bomb's junk, stays in the home. Lung
    masks (not X-rays by the one rule, catalog.is_xray) stay beside their images."""
    kept = {item.path for item in catalog.items}
    for folder, _dirs, names in os.walk(images):
        for name in names:
            path = Path(folder, name)
            rel = path.relative_to(images).as_posix()
            if is_xray(rel) and rel not in kept:
                path.unlink()


def _report(result: DownloadResult) -> dict[str, Any]:
    return {
        "excluded": [{"path": p, "reason": r} for p, r in result.excluded],
        "duplicates": result.duplicates,
        "near_duplicates": [asdict(n) for n in result.near_duplicates],
        "dropped": result.dropped,
        "skipped_classes": result.skipped,
        "unmatched_folders": result.unmatched,
        "provenance": result.provenance.to_dict(),
    }
