"""Accuracy per class and per source: the rows that show a model right on one collection and
wrong on another (e.g. healthy children right, healthy adults called COVID-19).

A subgroup is the images of one true class from one collection (a dataset's split) or one
`--external` folder. Each gets its accuracy with a Wilson interval; one under `SMALL_SUBGROUP`
images is flagged as small, because its interval is too wide to say much.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr_covid import classes, stats

SMALL_SUBGROUP = 30


@dataclass(frozen=True)
class Subgroup:
    cls: str
    display: str
    group: str  # a collection (data/provenance.py) or "folder NAME"
    accuracy: stats.Proportion

    @property
    def small(self) -> bool:
        return self.accuracy.n < SMALL_SUBGROUP

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.cls,
            "display": self.display,
            "group": self.group,
            "accuracy": self.accuracy.to_dict(),
            "small": self.small,
        }


def _group_key(group: str) -> tuple[bool, str]:
    return (group == "unknown", group)


def compute_subgroups(
    model_classes: Sequence[str],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    groups: Sequence[str],
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> list[Subgroup]:
    """One Subgroup per (true class, group) present, classes in the model's order."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if len(groups) != len(y_true):
        raise ValueError(f"{len(groups)} groups for {len(y_true)} images")
    group_array = np.asarray(list(groups), dtype=object)
    found: list[Subgroup] = []
    for index, cls in enumerate(model_classes):
        of_class = y_true == index
        for group in sorted({str(g) for g in group_array[of_class]}, key=_group_key):
            chosen = of_class & (group_array == group)
            correct = int(np.sum(y_pred[chosen] == index))
            found.append(
                Subgroup(
                    cls=cls,
                    display=classes.display_name(cls),
                    group=group,
                    accuracy=stats.proportion(correct, int(np.sum(chosen)), confidence),
                )
            )
    return found
