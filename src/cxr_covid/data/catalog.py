"""The catalogue: which image is which class, which images decode, which are duplicates.

Layouts recognised (the class is the nearest enclosing folder whose name is a class alias;
folders like `images/` are looked through, `masks/` is ignored):

- first Kaggle release (the study's): `COVID-19/`, `NORMAL/`, `Viral Pneumonia/`, files like
  `COVID-19 (1).png`
- the intermediate release: `COVID/COVID (1).png`, ...
- the current release: `COVID-19_Radiography_Dataset/<Class>/images/<Class>-N.png` with a
  `masks/` sibling (lung masks, not X-rays: ignored)
- any folder of class folders (`--from-dir`), names mapped by classes.canonical or --class-map

Every image is decoded with the one decode path (data.images.read_image); an image that does
not decode is excluded and listed with the reason, never silently kept.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from cxr_covid import classes as cls
from cxr_covid.data.dedupe import dhash
from cxr_covid.data.images import is_image_name, read_image
from cxr_covid.errors import CxrCovidError, DataError
from cxr_covid.progress import NULL, Reporter

CHECKING = "Checking images"  # the progress task (cxr_covid.progress)

# Folders that sit between a class folder and its images, or hold something else.
PASS_THROUGH = {"images", "image", "img", "imgs", "png", "jpg", "files", "data"}
# The one list of folders whose files are never X-rays, for every command that reads a folder
# of class folders (download from a zip or --from-dir, eval --external): lung masks (Kaggle's
# current release keeps them beside the images), macOS archive debris, segmentations.
MASK_FOLDERS = frozenset({"masks", "mask"})
IGNORED_FOLDERS = frozenset({*MASK_FOLDERS, "__macosx", "segmentations", "lung_masks"})

# Patient ids carried in file names, per public collection:
#   Kermany et al. paediatric set: person1608_virus_2786.jpeg -> person1608
#   CheXpert-style:                patient00001_study1_view1  -> patient00001
#   NIH ChestX-ray14:              00000013_005.png           -> 00000013
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.I),
    re.compile(r"^(patient\d+)", re.I),
    re.compile(r"^(\d{8})_\d{3}\.\w+$"),
)


def patient_id(file_name: str) -> str:
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(file_name)
        if match:
            return match.group(1).lower()
    return ""


def parse_classes(names: Sequence[str]) -> tuple[str, ...]:
    """Canonical class names in the study's order; DataError for a name that is no class."""
    result: list[str] = []
    for name in names:
        canonical = name if name in cls.ALL_CLASSES else cls.canonical(name)
        if canonical is None:
            raise DataError(f"unknown class {name!r} (known: {', '.join(cls.ALL_CLASSES)})")
        if canonical not in result:
            result.append(canonical)
    if not result:
        raise DataError("no classes selected")
    return tuple(cls.label_order(result))


def class_of(relative: str, class_map: dict[str, str] | None = None) -> str | None:
    """The class of an image at `relative` (POSIX path inside the dataset root), or None.

    None also for anything under an ignored folder such as `masks/`.
    """
    if in_ignored_folder(relative):
        return None
    folders = PurePosixPath(relative).parts[:-1]
    for folder in reversed(folders):
        if folder.lower() in PASS_THROUGH:
            continue
        label = cls.canonical(folder, class_map)
        if label == cls.SKIP:
            return None
        if label is not None:
            return label
    return None


def is_ignored_folder(name: str) -> bool:
    """A folder none of whose files (at any depth) is read as an X-ray; hidden ones too."""
    return name.startswith(".") or name.lower() in IGNORED_FOLDERS


def in_ignored_folder(relative: str) -> bool:
    return any(is_ignored_folder(f) for f in PurePosixPath(relative).parts[:-1])


def is_candidate(relative: str) -> bool:
    """An image file by its name (masks included: download keeps them for the lung field)."""
    return is_image_name(PurePosixPath(relative).name)


def is_xray(relative: str) -> bool:
    """The one rule for which files of a folder of class folders are X-rays.

    `relative` is the file's POSIX path inside the folder being read. Used by download (zip
    and --from-dir, through build_catalog) and by eval --external, so both read a folder alike.
    """
    return is_candidate(relative) and not in_ignored_folder(relative)


def natural_key(text: str) -> list[object]:
    """ "COVID (2).png" before "COVID (10).png", as a person would sort them."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


@dataclass(frozen=True)
class Item:
    path: str  # relative to the catalogued folder, POSIX
    label: str
    sha256: str
    width: int
    height: int
    patient: str
    phash: bytes  # perceptual hash (dedupe.dhash), for near-duplicate detection


@dataclass
class Catalog:
    items: list[Item]
    excluded: list[tuple[str, str]]  # (path, reason) for images that do not decode
    layout: str
    skipped: dict[str, int] = field(default_factory=dict)  # known class, not selected -> n
    unmatched: dict[str, int] = field(default_factory=dict)  # folder without a class -> n
    duplicates: list[list[str]] = field(default_factory=list)  # groups of identical files


def detect_layout(paths: Sequence[str]) -> str:
    parts = [PurePosixPath(p).parts for p in paths]
    folders = {f.lower() for p in parts for f in p[:-1]}
    if any(len(p) > 2 and p[-2].lower() == "images" and cls.canonical(p[-3]) for p in parts):
        return "kaggle-current"  # <Class>/images/<Class>-N.png (masks/ beside it)
    if {"covid-19", "normal", "viral pneumonia"} <= folders:
        return "kaggle-first"
    if any(re.match(r"^covid \(\d+\)\.", p[-1], re.I) for p in parts if p):
        return "kaggle-intermediate"
    return "class-folders"


def build_catalog(
    root: Path,
    *,
    classes: Sequence[str] = cls.STUDY_CLASSES,
    class_map: dict[str, str] | None = None,
    reporter: Reporter = NULL,
    workers: int | None = None,
    source_name: str | None = None,
) -> Catalog:
    """Scan `root`, classify and decode-check every image. DataError if none is usable.

    `source_name` is what error messages call the images (the user's folder or zip, not
    the dataset's internal `images/` copy); default: root's name."""
    where = source_name or root.name
    relatives = _files_under(root)
    candidates, skipped, unmatched = _classify(relatives, set(classes), class_map)
    _check_classes_found(candidates, unmatched, classes, where)
    layout = detect_layout([rel for rel, _ in candidates] + relatives[:2000])
    items, excluded = _decode_all(root, candidates, workers, reporter)
    if not items:
        raise DataError(
            f"none of the {len(candidates)} images under {where} could be decoded "
            f"(first: {excluded[0][0]}: {excluded[0][1]})"
        )
    by_hash: dict[str, list[str]] = defaultdict(list)
    for item in items:
        by_hash[item.sha256].append(item.path)
    duplicates = [group for group in by_hash.values() if len(group) > 1]
    return Catalog(
        items=items,
        excluded=excluded,
        layout=layout,
        skipped=dict(skipped),
        unmatched=dict(unmatched),
        duplicates=duplicates,
    )


def _files_under(root: Path) -> list[str]:
    """Every file under `root`, relative, in natural order."""
    return sorted(
        (
            Path(folder, name).relative_to(root).as_posix()
            for folder, _dirs, names in os.walk(root)
            for name in names
        ),
        key=natural_key,
    )


def _classify(
    relatives: list[str], selected: set[str], class_map: dict[str, str] | None
) -> tuple[list[tuple[str, str]], Counter[str], Counter[str]]:
    """(image, class) of the selected classes; images per other class (skipped); images
    per folder that names no class (unmatched)."""
    candidates: list[tuple[str, str]] = []
    skipped: Counter[str] = Counter()
    unmatched: Counter[str] = Counter()
    for rel in relatives:
        if not is_xray(rel):
            continue
        label = class_of(rel, class_map)
        if label is None:
            unmatched[str(PurePosixPath(rel).parent)] += 1
        elif label not in selected:
            skipped[label] += 1
        else:
            candidates.append((rel, label))
    return candidates, skipped, unmatched


def _check_classes_found(
    candidates: list[tuple[str, str]],
    unmatched: Counter[str],
    classes: Sequence[str],
    where: str,
) -> None:
    """DataError unless every selected class has images, saying how to map folders."""
    found_labels = {label for _rel, label in candidates}
    missing = [c for c in classes if c not in found_labels]
    if candidates and missing:
        names = ", ".join(sorted(unmatched)[:5]) or "none"
        raise DataError(
            f"no images of class {', '.join(missing)} under {where} (folders without a "
            f"class: {names}); map folders with --class-map 'FOLDER=CLASS,...' or choose "
            "the classes present with --classes"
        )
    if not candidates:
        found = ", ".join(sorted(unmatched)[:5]) or "no image files at all"
        raise DataError(
            f"no images of the selected classes ({', '.join(classes)}) under {where}: "
            f"folders found: {found}; name class folders like covid/ normal/ "
            "viral_pneumonia/, or map them with --class-map 'FOLDER=CLASS,...'"
        )


def _check_image(root: Path, entry: tuple[str, str]) -> Item | tuple[str, str]:
    """The catalogue item of one image, or (image, why it cannot be used)."""
    rel, label = entry
    path = root / rel
    try:
        data = path.read_bytes()
        pixels = read_image(data if path.suffix.lower() not in (".dcm", ".dicom") else path)
    except CxrCovidError as exc:
        return (rel, str(exc).replace("<bytes>: ", ""))
    except OSError as exc:
        return (rel, f"cannot read ({exc.strerror or exc})")
    return Item(
        path=rel,
        label=label,
        sha256=hashlib.sha256(data).hexdigest(),
        width=int(pixels.shape[1]),
        height=int(pixels.shape[0]),
        patient=patient_id(PurePosixPath(rel).name),
        phash=dhash(np.asarray(pixels)),
    )


def _decode_all(
    root: Path, candidates: list[tuple[str, str]], workers: int | None, reporter: Reporter
) -> tuple[list[Item], list[tuple[str, str]]]:
    """Decode-check every candidate in parallel: (usable items, excluded with reasons)."""
    items: list[Item] = []
    excluded: list[tuple[str, str]] = []
    reporter.start(CHECKING, total=len(candidates), unit="images")
    # Pillow releases the GIL while decoding, so threads give a real speed-up here.
    pool = ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) + 1))
    try:
        for index, result in enumerate(pool.map(lambda e: _check_image(root, e), candidates), 1):
            if isinstance(result, Item):
                items.append(result)
            else:
                excluded.append(result)
            reporter.advance(CHECKING, index)
    finally:
        # On Ctrl-C or an error, drop the queued images instead of decoding all of them.
        pool.shutdown(wait=True, cancel_futures=True)
        reporter.finish(CHECKING)
    return items, excluded
