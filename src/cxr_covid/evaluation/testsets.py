"""What is evaluated: a dataset's split or a labelled folder of images (`EvalImages`), and the
checks that the images were held out from the model's training."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cxr_covid import classes
from cxr_covid.data.catalog import is_ignored_folder, is_xray
from cxr_covid.errors import DataError, UsageError
from cxr_covid.models import store

EXTERNAL = "external"
EVAL_SPLITS: tuple[str, ...] = ("test", "val", "train")


# --- what is evaluated ----------------------------------------------------------------------


@dataclass(frozen=True)
class EvalImages:
    """The labelled images a model is evaluated on, and where they came from."""

    paths: tuple[Path, ...]
    labels: tuple[str, ...]  # canonical class per image
    split: str  # test / val / train, or "external" for --external
    source: str  # dataset name or folder
    dataset: str | None = None
    split_sha256: str | None = None
    # Per image, where it comes from: its collection, or "folder NAME" for --external.
    groups: tuple[str, ...] = ()
    # The cohort's name when the folder was one cohort of a tree (external_test_sets), else "".
    name: str = ""

    def group_of(self, index: int) -> str:
        return self.groups[index] if self.groups else "unknown"

    def without(self, left_out: set[Path]) -> EvalImages:
        """The same images less `left_out` (e.g. those the model was trained on)."""
        keep = [i for i, p in enumerate(self.paths) if p not in left_out]
        return EvalImages(
            paths=tuple(self.paths[i] for i in keep),
            labels=tuple(self.labels[i] for i in keep),
            split=self.split,
            source=self.source,
            dataset=self.dataset,
            split_sha256=self.split_sha256,
            groups=tuple(self.group_of(i) for i in keep) if self.groups else (),
            name=self.name,
        )

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for label in self.labels:
            found[label] = found.get(label, 0) + 1
        return found


def dataset_test_set(dataset_name: str, split: str) -> EvalImages:
    """The original (never augmented) images of one split of a stored dataset."""
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import select, split_hash

    if split not in EVAL_SPLITS:
        raise UsageError(f"unknown split {split!r} (choose from: {', '.join(EVAL_SPLITS)})")
    dataset = resolve_dataset(dataset_name)
    rows = dataset.rows()
    chosen = select(rows, split)
    if not chosen:
        raise DataError(f"dataset {dataset.name!r} has no {split} images (was it split?)")
    return EvalImages(
        paths=tuple(dataset.file(r) for r in chosen),
        labels=tuple(r.label for r in chosen),
        split=split,
        source=f"dataset {dataset.name}, {split} split",
        dataset=dataset.name,
        split_sha256=split_hash(rows),
        groups=tuple(r.collection for r in chosen),
    )


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_ignored_folder(p.name))
    # A zip extracted as-is wraps the class folders in one more folder
    # (COVID-19_Radiography_Dataset/...): step inside when that is all there is.
    if len(folders) == 1 and classes.canonical(folders[0].name) is None:
        inner = [p for p in folders[0].iterdir() if p.is_dir() and not is_ignored_folder(p.name)]
        if inner:
            return sorted(inner)
    return folders


def folder_test_set(
    root: Path, model_classes: Sequence[str], class_map: dict[str, str] | None = None
) -> EvalImages:
    """An external labelled folder: one sub-folder per class, named like download accepts."""
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    class_map = class_map or {}
    unknown: list[str] = []
    untrained: list[str] = []
    paths: list[Path] = []
    labels: list[str] = []
    for folder in _class_folders(root):
        # --class-map first (matched like aliases: case, spaces and punctuation ignored).
        target = classes.canonical(folder.name, class_map)
        if target == classes.SKIP:
            continue
        if target is None:
            unknown.append(folder.name)
            continue
        if target not in model_classes:
            untrained.append(f"{folder.name!r} ({target})")
            continue
        # The same rule as download's catalogue (masks/, __MACOSX/, hidden folders left out).
        files = sorted(
            p
            for p in folder.rglob("*")
            if p.is_file() and is_xray(p.relative_to(folder).as_posix())
        )
        paths.extend(files)
        labels.extend([target] * len(files))
    if unknown:
        names = ", ".join(repr(n) for n in unknown)
        raise DataError(
            f"{root}: unknown class folder(s) {names}; expected folders named like "
            f"{', '.join(classes.STUDY_CLASSES)} (or COVID, Normal, Viral Pneumonia); map them "
            "with --class-map FOLDER=CLASS, or leave them out with --class-map FOLDER=skip"
        )
    if untrained:
        raise DataError(
            f"{root}: folder(s) {', '.join(untrained)} hold classes the model was not trained "
            f"on (it knows {', '.join(model_classes)}); leave them out with "
            "--class-map FOLDER=skip"
        )
    if not paths:
        raise DataError(f"{root}: no labelled images (expected one sub-folder per class)")
    return EvalImages(
        paths=tuple(paths),
        labels=tuple(labels),
        split=EXTERNAL,
        source=f"folder {root}",
        groups=(f"folder {root.name}",) * len(paths),
    )


# --- a tree of cohorts ------------------------------------------------------------------------

COHORT_DEPTH = 3  # how deep a cohort may sit under the folder given (cohort/site/class/)


@dataclass(frozen=True)
class Cohort:
    """One external set of a folder: a folder of class folders, named by its path in the tree."""

    name: str  # "" when the folder given is itself a folder of class folders
    root: Path


def _names_a_class(folder: Path, class_map: dict[str, str] | None) -> bool:
    return classes.canonical(folder.name, class_map) is not None


def find_cohorts(root: Path, class_map: dict[str, str] | None = None) -> list[Cohort]:
    """The external sets under `root`: `root` itself when it holds class folders (download's
    rule, `_class_folders`), else every sub-folder (to COHORT_DEPTH) that holds class folders,
    each one cohort (cxr-external-dev: hannover-covid/covid/, kermany-test/{normal,...}/).
    A tree with no class folder anywhere is returned as one set, so `folder_test_set` names
    its unknown folders as it always did."""
    root = root.expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    found: list[Cohort] = []
    _collect_cohorts(root, root, class_map, COHORT_DEPTH, found)
    if not found or found == [Cohort(".", root)]:
        return [Cohort("", root)]
    return found


def _collect_cohorts(
    root: Path, folder: Path, class_map: dict[str, str] | None, depth: int, found: list[Cohort]
) -> None:
    if any(_names_a_class(f, class_map) for f in _class_folders(folder)):
        found.append(Cohort(folder.relative_to(root).as_posix(), folder))
        return
    if depth == 0:
        return
    for child in sorted(p for p in folder.iterdir() if p.is_dir()):
        if not is_ignored_folder(child.name):
            _collect_cohorts(root, child, class_map, depth - 1, found)


def external_test_sets(
    root: Path, model_classes: Sequence[str], class_map: dict[str, str] | None = None
) -> list[EvalImages]:
    """One labelled set per cohort of `root` (see find_cohorts), each read by folder_test_set
    and named by its cohort; a plain folder of class folders gives one unnamed set."""
    sets = []
    for cohort in find_cohorts(root, class_map):
        images = folder_test_set(cohort.root, model_classes, class_map)
        sets.append(dataclasses.replace(images, name=cohort.name))
    return sets


# --- results --------------------------------------------------------------------------------


def dataset_caveats(dataset_name: str) -> list[str]:
    """The dataset's provenance caveats (data/provenance.py): what its accuracy may measure."""
    from cxr_covid.data.confounding import accuracy_caveats
    from cxr_covid.data.dataset import resolve_dataset

    return accuracy_caveats(resolve_dataset(dataset_name).rows(), dataset_name)


def check_split(record: store.ModelRecord, test_set: EvalImages, allow_change: bool) -> list[str]:
    """Refuse (or, when allowed, warn) when the dataset was re-split after training: its
    test images may then include the model's own training images."""
    recorded = record.dataset.get("split_sha256")
    if not recorded:
        return [
            f"model {record.id} does not record its dataset's split, so cxr-covid cannot "
            "check that these images were held out from its training"
        ]
    if recorded == test_set.split_sha256:
        return []
    message = (
        f"dataset {test_set.dataset!r} has been re-split since model {record.id} was "
        "trained, so its current test images may include the model's training images"
    )
    if not allow_change:
        raise DataError(message + "; pass --ignore-split-change to evaluate anyway")
    return [message + " (evaluated anyway: --ignore-split-change)"]
