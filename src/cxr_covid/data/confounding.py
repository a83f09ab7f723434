"""What a dataset's collections and age groups say about its classes: the class x collection
tables, the confounding warnings, the caveats an accuracy carries, and the predictions that
know only where each image comes from."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cxr_covid import classes as cls
from cxr_covid.data.manifest import ORIGINAL, UNKNOWN, ManifestRow

# When the collections (or age groups) two classes share cover less than this share of
# either class, the classes are confounded with where the images come from.
CONFOUNDING_THRESHOLD = 0.10


def _table(rows: Iterable[ManifestRow], attribute: str) -> dict[str, dict[str, int]]:
    table: dict[str, Counter[str]] = {}
    for row in rows:
        if row.origin == ORIGINAL:
            table.setdefault(row.label, Counter())[getattr(row, attribute)] += 1
    ordered = cls.label_order(list(table))
    return {label: dict(table[label].most_common()) for label in ordered}


def collection_counts(rows: Iterable[ManifestRow]) -> dict[str, dict[str, int]]:
    """{class: {collection: images}} over original images, classes in the study's order."""
    return _table(rows, "collection")


def age_group_counts(rows: Iterable[ManifestRow]) -> dict[str, dict[str, int]]:
    """{class: {age group: images}} over original images."""
    return _table(rows, "age_group")


def _names(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} ({n})" for name, n in counts.items())


def _confounded(table: dict[str, dict[str, int]], kind: str) -> list[str]:
    messages: list[str] = []
    labels = list(table)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            known_a = {k: n for k, n in table[a].items() if k != UNKNOWN}
            known_b = {k: n for k, n in table[b].items() if k != UNKNOWN}
            if not known_a or not known_b:
                continue  # nothing known to compare
            shared = sorted(set(known_a) & set(known_b))
            in_a = sum(known_a[k] for k in shared)
            in_b = sum(known_b[k] for k in shared)
            total_a, total_b = sum(known_a.values()), sum(known_b.values())
            if min(in_a / total_a, in_b / total_b) >= CONFOUNDING_THRESHOLD:
                continue
            name_a, name_b = cls.display_name(a), cls.display_name(b)
            what = "collection" if kind == "collection" else "age group"
            consequence = (
                "where an image comes from (hospital, equipment, processing)"
                if kind == "collection"
                else "the patient's age"
            )
            if not shared:
                head = (
                    f"{name_a} and {name_b} share no {what}: {name_a} images come from "
                    f"{_names(known_a)}, {name_b} images from {_names(known_b)}"
                    if kind == "collection"
                    else f"{name_a} and {name_b} share no {what}: {name_a} images are "
                    f"{_names(known_a)}, {name_b} images {_names(known_b)}"
                )
            else:
                head = (
                    f"the {what}s {name_a} and {name_b} share ({', '.join(shared)}) hold "
                    f"only {in_a} of {total_a} {name_a} and {in_b} of {total_b} {name_b} "
                    "images"
                )
            messages.append(
                f"{head[0].upper()}{head[1:]}. A model can tell these classes apart by "
                f"{consequence} rather than by disease: its accuracy between them says "
                "little about diagnosis."
            )
    return messages


def confounding_warnings(manifest_rows: Iterable[ManifestRow]) -> list[str]:
    """Plain-word warnings, one per pair of classes confounded with a collection or an age
    group: when the collections (age groups) two classes share cover under 10 % of either
    class's images whose collection (age group) is known. Original images only."""
    rows = [r for r in manifest_rows if r.origin == ORIGINAL]
    return _confounded(collection_counts(rows), "collection") + _confounded(
        age_group_counts(rows), "age"
    )


def accuracy_caveats(manifest_rows: Iterable[ManifestRow], dataset_name: str) -> list[str]:
    """What an accuracy on this dataset may be measuring besides disease, for `eval` to say
    beside its table: the confounding warnings, or, when no image's source is recorded, that
    nobody can tell (the study's data confounds class with source and age)."""
    rows = [r for r in manifest_rows if r.origin == ORIGINAL]
    if rows and all(r.collection == UNKNOWN and r.age_group == UNKNOWN for r in rows):
        return [
            f"where the images of dataset {dataset_name!r} come from is not recorded, so "
            "cxr-covid cannot tell whether this accuracy measures disease or the source and "
            "age of each class (in the study's data they coincide: docs/provenance.md); attach "
            f"them with `cxr-covid download --sources FILE.csv --dataset {dataset_name}`, and "
            "run `cxr-covid audit`"
        ]
    return [f"what this accuracy may measure: {w}" for w in confounding_warnings(rows)]


def origin_only_predictions(
    train_rows: Sequence[ManifestRow], test_rows: Sequence[ManifestRow]
) -> list[str] | None:
    """What a rule that sees no pixel would call each test image: the class most frequent
    among the training images of the same collection and age group.

    The yardstick for a lung-blind model: when the classes come from different places, this
    rule alone scores far above chance, and a model that matches it may have learnt nothing
    else. An origin the training split never showed backs off to the collection, then to the
    age group, then to the training split's most frequent class; ties go to the class first
    in the study's order. None when no training image's origin is recorded (the rule would
    only be "always the largest class", which says nothing about the data's origins).
    """
    train = [r for r in train_rows if r.origin == ORIGINAL]
    if not train or all(r.collection == UNKNOWN and r.age_group == UNKNOWN for r in train):
        return None
    order = {c: i for i, c in enumerate(cls.label_order(sorted({r.label for r in train})))}

    def most_frequent(counts: Counter[str]) -> str:
        return min(counts, key=lambda c: (-counts[c], order[c]))

    def keys(row: ManifestRow) -> list[tuple[str, ...]]:
        # From the most to the least specific origin; () is the whole training split.
        return [(row.collection, row.age_group), (row.collection,), (row.age_group,), ()]

    tables: list[dict[tuple[str, ...], Counter[str]]] = [{}, {}, {}, {}]
    for row in train:
        for table, key in zip(tables, keys(row), strict=True):
            table.setdefault(key, Counter())[row.label] += 1

    def predict(row: ManifestRow) -> str:
        for table, key in zip(tables, keys(row), strict=True):
            # An unknown origin says nothing: only the whole split may answer for it.
            if key and UNKNOWN in key:
                continue
            if key in table:
                return most_frequent(table[key])
        return most_frequent(tables[-1][()])  # pragma: no cover - the last table always answers

    return [predict(r) for r in test_rows]


@dataclass
class ProvenanceSummary:
    """What `download` shows: class x collection and class x age group counts, warnings."""

    collections: dict[str, dict[str, int]]
    age_groups: dict[str, dict[str, int]]
    confounding: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "collections": self.collections,
            "age_groups": self.age_groups,
            "confounding": self.confounding,
        }


def summarize(rows: Sequence[ManifestRow]) -> ProvenanceSummary:
    return ProvenanceSummary(
        collections=collection_counts(rows),
        age_groups=age_group_counts(rows),
        confounding=confounding_warnings(rows),
    )
