"""Where every image comes from: its collection and age group, and whether a class is
confounded with them.

The study's classes come from different places: its COVID-19 images are adults from many
hospitals, its normal and viral-pneumonia images children from one (the Kermany collection).
A model can then tell the classes apart by age or hospital rather than by disease. This
module records, per image, the `collection` (a fixed vocabulary, `COLLECTIONS`, mapped from
the URL that names the source) and the `age_group` (child / adult / unknown), from:

1. a sources CSV (`path,source[,age_group]`), given with `download --sources FILE.csv`;
2. the Kaggle release's `<Class>.metadata.xlsx` workbooks (FILE NAME, FORMAT, SIZE, URL);
3. the first release's documented composition (normal and viral pneumonia: Kermany
   children; COVID-19: adults from public repositories);
4. else `unknown`.

The first that knows an image wins. `confounding_warnings` turns the result into plain
words. See docs/provenance.md.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from cxr_covid import classes as cls
from cxr_covid.data.confounding import ProvenanceSummary, summarize
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.manifest import ORIGINAL, UNKNOWN, ManifestRow
from cxr_covid.data.workbook_limits import check_workbook_size
from cxr_covid.errors import DataError

CHILD = "child"
ADULT = "adult"
AGE_GROUPS: tuple[str, ...] = (CHILD, ADULT, UNKNOWN)

# The vocabulary: name -> what it is. The age group beside it is the collection's documented
# population, used when the source does not give an age per image.
COLLECTIONS: dict[str, tuple[str, str]] = {
    "kermany": (
        "Kermany et al. paediatric chest X-rays (Guangzhou Women and Children's Medical "
        "Center), children aged 1-5",
        CHILD,
    ),
    "rsna": ("RSNA Pneumonia Detection Challenge (drawn from NIH ChestX-ray14), adults", ADULT),
    "nih": ("NIH ChestX-ray14", UNKNOWN),
    "padchest": ("PadChest (BIMCV, Valencia)", UNKNOWN),
    "bimcv": ("BIMCV-COVID19+ (Valencian region hospitals), adults", ADULT),
    "hannover": ("Hannover Medical School COVID-19 image repository, adults", ADULT),
    "sirm": ("Italian Society of Medical and Interventional Radiology COVID-19 cases", ADULT),
    "cohen": ("Cohen et al. covid-chestxray-dataset (ieee8023)", ADULT),
    "eurorad": ("Eurorad case reports", ADULT),
    "covid-cxnet": ("COVID-CXNet repository (armiro)", ADULT),
    "figure1-actualmed": ("Figure1 and Actualmed COVID-19 chest X-rays (agchung)", ADULT),
    "radiopaedia": ("Radiopaedia cases", UNKNOWN),
    "kaggle-covid": (
        "the Kaggle database's COVID-19 images where no single repository is named per image "
        "(adults, gathered from several public repositories and hospitals)",
        ADULT,
    ),
    UNKNOWN: ("not known", UNKNOWN),
}

# (substring of the lower-cased URL, collection); the first match wins, so the more specific
# patterns come first (PadChest is hosted by BIMCV; RSNA's images are drawn from NIH's).
URL_PATTERNS: tuple[tuple[str, str], ...] = (
    ("chest-xray-pneumonia", "kermany"),
    ("rscbjbr9sj", "kermany"),  # the Mendeley Data record of the Kermany collection
    ("kermany", "kermany"),
    ("rsna-pneumonia-detection-challenge", "rsna"),
    ("rsna", "rsna"),
    ("padchest", "padchest"),
    ("bimcv", "bimcv"),
    ("ml-workgroup/covid-19-image-repository", "hannover"),
    ("hannover", "hannover"),
    ("sirm.org", "sirm"),
    # agchung's Figure1-COVID-chestxray-dataset would otherwise read as Cohen's.
    ("agchung", "figure1-actualmed"),
    ("actualmed", "figure1-actualmed"),
    ("figure1", "figure1-actualmed"),
    ("ieee8023", "cohen"),
    ("covid-chestxray-dataset", "cohen"),
    ("eurorad", "eurorad"),
    ("covid-cxnet", "covid-cxnet"),
    ("radiopaedia", "radiopaedia"),
    ("nihcc", "nih"),
    ("chestx-ray14", "nih"),
    ("chestxray14", "nih"),
)

_AGE_ALIASES: dict[str, str] = {
    "child": CHILD,
    "children": CHILD,
    "paediatric": CHILD,
    "pediatric": CHILD,
    "kid": CHILD,
    "kids": CHILD,
    "adult": ADULT,
    "adults": ADULT,
    "": UNKNOWN,
    "unknown": UNKNOWN,
    "na": UNKNOWN,
    "n/a": UNKNOWN,
}
# Your own collection names (a hospital, a study) are kept as written, lower-cased.
_CUSTOM_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
_WORKBOOK_SUFFIXES = (".metadata.xlsx", ".matadata.xlsx")  # the first release misspelt it
_IMAGES_PREFIX = "images/"  # where a dataset keeps its extracted images (data/dataset.py)


# What decided an image's provenance (dataset.json counts them).
BASIS_SOURCES = "sources-csv"
BASIS_WORKBOOK = "workbook"
BASIS_RELEASE = "release-composition"
BASIS_KEPT = "unchanged"


@dataclass(frozen=True)
class Origin:
    collection: str
    age_group: str


def default_age(collection: str) -> str:
    return COLLECTIONS.get(collection, ("", UNKNOWN))[1]


def collection_from_url(url: str) -> str:
    """The collection a URL names, or `unknown`."""
    text = url.strip().lower()
    for pattern, collection in URL_PATTERNS:
        if pattern in text:
            return collection
    return UNKNOWN


def normalise_collection(text: str) -> str:
    """A `source` value: a vocabulary name, a URL (mapped), or a name of your own."""
    value = text.strip().lower()
    if not value:
        return UNKNOWN
    if value in COLLECTIONS:
        return value
    if "://" in value or "/" in value or value.startswith("www."):
        return collection_from_url(value)
    if _CUSTOM_NAME.match(value):
        return value
    raise ValueError(
        f"source {text!r} is neither a known collection ({', '.join(COLLECTIONS)}), a URL, "
        "nor a plain name (letters, digits, '.', '_', '-')"
    )


def normalise_age_group(text: str) -> str:
    value = _AGE_ALIASES.get(text.strip().lower())
    if value is None:
        raise ValueError(f"age_group {text!r} is not child, adult or unknown")
    return value


# --- a sources CSV ---------------------------------------------------------------------------


@dataclass
class SourcesFile:
    """A parsed `path,source[,age_group]` file: origin per path as written (POSIX)."""

    path: Path
    entries: dict[str, Origin]


def _clean_path(text: str) -> str:
    cleaned = text.strip().replace("\\", "/")
    while cleaned.startswith("./"):
        cleaned = cleaned[2:]
    return cleaned.strip("/")


def read_sources_csv(path: Path) -> SourcesFile:
    """Parse a sources CSV; DataError (one line) for a missing, unreadable or malformed file."""
    where = str(path)
    try:
        with Path(path).expanduser().open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip().lower() for h in reader.fieldnames or []]
            if "path" not in header or "source" not in header:
                raise DataError(
                    f"{where}: expected a header 'path,source[,age_group]', found "
                    f"{','.join(header) or 'nothing'}"
                )
            reader.fieldnames = header
            entries: dict[str, Origin] = {}
            for line, record in enumerate(reader, start=2):
                rel = _clean_path(record.get("path") or "")
                if not rel:
                    raise DataError(f"{where}, line {line}: empty path")
                try:
                    collection = normalise_collection(record.get("source") or "")
                    age_text = record.get("age_group") or ""
                    age = normalise_age_group(age_text) if age_text.strip() else ""
                except ValueError as exc:
                    raise DataError(f"{where}, line {line}: {exc}") from None
                entries[rel] = Origin(collection, age or default_age(collection))
    except FileNotFoundError:
        raise DataError(f"{where}: sources file not found") from None
    except IsADirectoryError:
        raise DataError(f"{where}: is a folder, expected a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{where}: cannot read the sources file ({exc})") from None
    if not entries:
        raise DataError(f"{where}: no rows (expected 'path,source[,age_group]' lines)")
    return SourcesFile(Path(path), entries)


def match_sources(
    sources: SourcesFile, image_paths: Iterable[str]
) -> tuple[dict[str, Origin], list[str]]:
    """Origin per image path (relative to the images folder), and the CSV paths that match
    no image. A CSV path matches exactly (case-insensitively), or by its trailing path
    components when exactly one image fits: `COVID/images/COVID-1.png` finds
    `Dataset/COVID/images/COVID-1.png`, and `adult-normal/normal/x.png` finds `normal/x.png`
    in a dataset made from the adult-normal folder."""
    by_lower: dict[str, str] = {}
    by_suffix: dict[str, list[str]] = {}
    for known in image_paths:
        by_lower[known.lower()] = known
        parts = known.lower().split("/")
        for i in range(1, len(parts)):
            by_suffix.setdefault("/".join(parts[i:]), []).append(known)
    found: dict[str, Origin] = {}
    unmatched: list[str] = []
    for written, origin in sources.entries.items():
        key = written.lower()
        image: str | None = by_lower.get(key)
        if image is None:
            candidates = by_suffix.get(key, [])
            if len(candidates) == 1:
                image = candidates[0]
        if image is None:
            parts = key.split("/")
            longer = [
                by_lower[s] for i in range(1, len(parts)) if (s := "/".join(parts[i:])) in by_lower
            ]
            if longer:
                image = longer[0]  # the longest trailing part that names an image
        if image is None:
            unmatched.append(written)
        elif image not in found:
            found[image] = origin
    return found, unmatched


# --- the Kaggle workbooks --------------------------------------------------------------------


def _header_key(value: object) -> str:
    return re.sub(r"[^A-Z]", "", str(value or "").upper())


def read_workbook(path: Path) -> list[tuple[str, str]]:
    """(FILE NAME, URL) per listed file of a `<Class>.metadata.xlsx`; DataError if the file
    is not a readable workbook or has no FILE NAME and URL columns."""
    from openpyxl import load_workbook

    check_workbook_size(path)  # a cell bomb is refused before openpyxl inflates it
    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except FileNotFoundError:
        raise DataError(f"{path.name}: workbook not found") from None
    # openpyxl fails in many ways on a damaged file (zip, XML, missing parts): a bad
    # workbook is bad input, never a traceback.
    except Exception as exc:
        raise DataError(
            f"{path.name}: not a readable workbook ({exc or type(exc).__name__})"
        ) from None
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise DataError(f"{path.name}: the workbook has no sheet")
        rows = sheet.iter_rows(values_only=True)
        columns: tuple[int, int] | None = None
        entries: list[tuple[str, str]] = []
        for index, values in enumerate(rows):
            if columns is None:
                keys = [_header_key(v) for v in values]
                if "FILENAME" in keys and "URL" in keys:
                    columns = (keys.index("FILENAME"), keys.index("URL"))
                elif index >= 10:
                    break
                continue
            name = values[columns[0]] if columns[0] < len(values) else None
            url = values[columns[1]] if columns[1] < len(values) else None
            if name is not None and str(name).strip():
                entries.append((str(name).strip(), str(url or "").strip()))
        if columns is None:
            raise DataError(f"{path.name}: no 'FILE NAME' and 'URL' columns in its first sheet")
        return entries
    except DataError:
        raise
    except Exception as exc:  # as above: damaged rows or sheets
        raise DataError(f"{path.name}: not a readable workbook ({exc})") from None
    finally:
        book.close()


def find_workbooks(root: Path) -> list[Path]:
    """Every `<Class>.metadata.xlsx` (or the first release's `.matadata.xlsx`) under root."""
    found = [
        Path(folder, name)
        for folder, _dirs, names in os.walk(root)
        for name in names
        if name.lower().endswith(_WORKBOOK_SUFFIXES) and not name.startswith(".")
    ]
    return sorted(found)


def workbook_class(path: Path) -> str | None:
    name = path.name
    stem = name[: -len(_WORKBOOK_SUFFIXES[0])]
    return cls.canonical(stem)


def _from_workbooks(
    root: Path, images: Sequence[tuple[str, str]]
) -> tuple[dict[str, Origin], list[str], list[str]]:
    """Origins from the workbooks under root for (path, class) images; warnings; the
    workbooks read. A workbook describes the images of its class that sit beside it."""
    found: dict[str, Origin] = {}
    warnings: list[str] = []
    read: list[str] = []
    labels = {label for _path, label in images}
    for workbook in find_workbooks(root):
        label = workbook_class(workbook)
        if label is None or label not in labels:
            continue  # a class not selected (lung opacity) or not a class at all
        folder = workbook.parent.relative_to(root).as_posix()
        prefix = "" if folder == "." else folder.lower() + "/"
        by_name: dict[str, str] = {}
        for path, image_label in images:
            if image_label == label and path.lower().startswith(prefix):
                name = PurePosixPath(path).name.lower()
                by_name.setdefault(name, path)
                by_name.setdefault(PurePosixPath(name).stem, path)
        try:
            entries = read_workbook(workbook)
        except DataError as exc:
            warnings.append(f"{exc}: the collection of its images is unknown")
            continue
        read.append(workbook.relative_to(root).as_posix())
        missing: list[str] = []
        unnamed = 0
        for file_name, url in entries:
            key = file_name.lower()
            image = by_name.get(key) or by_name.get(PurePosixPath(key).stem)
            if image is None:
                missing.append(file_name)
                continue
            collection = collection_from_url(url)
            unnamed += collection == UNKNOWN
            found.setdefault(image, Origin(collection, default_age(collection)))
        if missing:
            warnings.append(
                f"{workbook.name} lists {len(missing)} file(s) that are not among the "
                f"images (first: {missing[0]})"
            )
        if unnamed:
            warnings.append(
                f"{workbook.name}: {unnamed} URL(s) name no known collection: those images "
                "read as unknown (see docs/provenance.md for the vocabulary)"
            )
    return found, warnings, read


# --- putting it together ---------------------------------------------------------------------


FIRST_RELEASE: dict[str, Origin] = {
    cls.COVID: Origin("kaggle-covid", ADULT),
    cls.NORMAL: Origin("kermany", CHILD),
    cls.VIRAL_PNEUMONIA: Origin("kermany", CHILD),
}


@dataclass
class ProvenanceReport:
    """How the collections were decided: images per basis, warnings, what was read."""

    basis: dict[str, int] = field(default_factory=dict)  # basis -> images
    warnings: list[str] = field(default_factory=list)
    sources_file: str | None = None
    workbooks: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "basis": self.basis,
            "sources_file": self.sources_file,
            "workbooks": self.workbooks,
            "warnings": self.warnings,
        }


def _relative(row_path: str) -> str:
    return row_path[len(_IMAGES_PREFIX) :] if row_path.startswith(_IMAGES_PREFIX) else row_path


def _from_sources_file(
    sources: SourcesFile,
    originals: list[ManifestRow],
    report: ProvenanceReport,
    keep_existing: bool,
) -> dict[str, tuple[Origin, str]]:
    """The origins a sources CSV gives (row path -> origin, basis); its warnings go into
    `report`. DataError when it names no image of the dataset."""
    report.sources_file = str(sources.path)
    relatives = {_relative(r.path): r.path for r in originals}
    found, unmatched = match_sources(sources, relatives)
    if not found:
        first = next(iter(sources.entries))
        example = next(iter(relatives), "none")
        raise DataError(
            f"{sources.path}: none of its {len(sources.entries)} paths names an image of "
            f"the dataset (its first: {first}; the dataset's: {example})"
        )
    if unmatched:
        report.warnings.append(
            f"{sources.path.name}: {len(unmatched)} of {len(sources.entries)} path(s) "
            f"name no image of the dataset and were ignored (first: {unmatched[0]})"
        )
    unlisted = len(originals) - len(found)
    if unlisted:
        report.warnings.append(
            f"{sources.path.name} does not list {unlisted} of the dataset's "
            f"{len(originals)} images"
            + (": they keep their previous collection" if keep_existing else "")
        )
    return {relatives[rel]: (origin, BASIS_SOURCES) for rel, origin in found.items()}


def annotate(
    rows: Sequence[ManifestRow],
    *,
    sources: SourcesFile | None = None,
    workbook_root: Path | None = None,
    first_release: bool = False,
    keep_existing: bool = False,
    expect_workbooks: bool = False,
) -> tuple[list[ManifestRow], ProvenanceReport]:
    """Rows with `collection` and `age_group` filled in (augmented rows take their original's).

    With `keep_existing`, an image no source speaks of keeps what it had (attaching a
    sources file to a dataset); otherwise it reads `unknown`. With `expect_workbooks` (the
    current release's layout), a class whose workbook is missing is named in a warning when
    nothing else placed its images. DataError when a sources file
    matches no image at all: it is then surely the wrong file."""
    originals = [r for r in rows if r.origin == ORIGINAL]
    report = ProvenanceReport()
    decided: dict[str, tuple[Origin, str]] = {}
    if first_release:
        for row in originals:
            if row.label in FIRST_RELEASE:
                decided[row.path] = (FIRST_RELEASE[row.label], BASIS_RELEASE)
    if workbook_root is not None:
        found, warnings, read = _from_workbooks(
            workbook_root, [(_relative(r.path), r.label) for r in originals]
        )
        report.warnings += warnings
        report.workbooks = read
        prefix = _IMAGES_PREFIX if any(r.path.startswith(_IMAGES_PREFIX) for r in originals) else ""
        for rel, origin in found.items():
            decided[prefix + rel] = (origin, BASIS_WORKBOOK)
    if sources is not None:
        decided.update(_from_sources_file(sources, originals, report, keep_existing))
    if expect_workbooks and workbook_root is not None:
        # Found at all: a corrupt workbook has had its own warning.
        with_workbook = {workbook_class(w) for w in find_workbooks(workbook_root)}
        unplaced = Counter(r.label for r in originals if r.path not in decided)
        for label, n in unplaced.items():
            if label not in with_workbook:
                report.warnings.append(
                    f"no workbook for class {cls.display_name(label)} beside the class "
                    f"folders: the collection of its {n} image(s) is unknown (give it with "
                    "--sources FILE.csv)"
                )
    basis: Counter[str] = Counter()
    updated: dict[str, ManifestRow] = {}
    result: list[ManifestRow] = []
    for row in rows:
        if row.origin != ORIGINAL:
            result.append(row)
            continue
        if row.path in decided:
            origin, how = decided[row.path]
            new = replace(row, collection=origin.collection, age_group=origin.age_group)
        elif keep_existing:
            new, how = row, BASIS_KEPT
        else:
            new, how = replace(row, collection=UNKNOWN, age_group=UNKNOWN), UNKNOWN
        basis[how] += 1
        updated[row.path] = new
        result.append(new)
    # An augmented copy comes from the same place as its original.
    result = [
        replace(r, collection=updated[r.source].collection, age_group=updated[r.source].age_group)
        if r.origin != ORIGINAL and r.source in updated
        else r
        for r in result
    ]
    report.basis = dict(basis)
    return result, report


# --- attaching sources to a dataset that exists ----------------------------------------------


@dataclass
class AttachResult:
    dataset: Dataset
    report: ProvenanceReport
    summary: ProvenanceSummary


def attach_sources(dataset: Dataset, sources_path: Path) -> AttachResult:
    """Record where a stored dataset's images come from, without downloading it again.

    Only `collection` and `age_group` change: the split, the images and their hashes stay,
    and so do manifest_sha256 and split_sha256 (models trained on it still match). The
    manifest is rewritten atomically; nothing is written when the file is unusable."""
    from cxr_covid.data.manifest import MANIFEST_FORMAT, manifest_hash, split_hash

    sources = read_sources_csv(sources_path)
    rows = dataset.rows()
    updated, report = annotate(rows, sources=sources, keep_existing=True)
    # The promise above, checked rather than assumed.
    if split_hash(updated) != split_hash(rows) or manifest_hash(updated) != manifest_hash(rows):
        raise DataError(f"dataset {dataset.name!r}: attaching sources would change its split")
    dataset.write_rows(updated)
    info = dataset.info()
    info["manifest_format"] = MANIFEST_FORMAT
    info["provenance"] = report.to_dict()
    dataset.write_info(info)
    return AttachResult(dataset, report, summarize(updated))
