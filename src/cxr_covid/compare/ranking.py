"""The ranking `compare` ends with: which recipe held up best outside its own split.

The rule, fixed before any result is seen (docs/shortcut-audit.md, round 5):
1. a recipe's external score is the mean recall over every (external set, class) cell, each
   cell first averaged over the recipe's seeds: one number that weighs a missed COVID-19 film
   abroad as much as a healthy child called pneumonia;
2. a recipe whose internal accuracy (seed mean) falls more than `INTERNAL_TOLERANCE` below
   plain's is listed but not eligible: a cure that breaks the study's own split is no cure;
3. the eligible recipe with the highest external score ranks first. Ties and near-ties are
   not findings: whether a difference exceeds the seed noise is what the tests against plain
   say, on the same images.

Pure arithmetic on the verdicts (no TensorFlow, no files).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from cxr_covid.compare.judging import Verdict, spread

INTERNAL_TOLERANCE = 0.03  # the "internal accuracy within 3 points of plain"
RULE = (
    "ranked by external score: mean recall over every external set and class (each averaged "
    "over seeds); eligible when internal accuracy is within 3 points of plain's; a ranking, "
    "not a finding: the tests against plain say whether a difference exceeds the seed noise"
)


class RecipeVerdicts(Protocol):
    """What ranking needs of a recipe's result (report.RecipeResult has it)."""

    @property
    def verdicts(self) -> dict[str, list[Verdict]]: ...

    @property
    def ensemble(self) -> dict[str, Verdict]: ...


@dataclass(frozen=True)
class Rank:
    recipe: str
    external_score: float  # seeds' mean recall over external (set, class) cells
    ensemble_score: float  # the same for the recipe's seed ensemble
    worst: tuple[str, str, float]  # (set, class, seed-mean recall) of the weakest cell
    internal_accuracy: float  # seed mean
    internal_drop: float | None  # plain's internal accuracy minus this one (None: no plain)
    eligible: bool

    def to_dict(self) -> dict[str, Any]:
        def finite(x: float | None) -> float | None:
            return None if x is None or not math.isfinite(x) else float(x)

        return {
            "recipe": self.recipe,
            "external_score": finite(self.external_score),
            "ensemble_external_score": finite(self.ensemble_score),
            "worst_external": {
                "set": self.worst[0],
                "class": self.worst[1],
                "recall": finite(self.worst[2]),
            },
            "internal_accuracy": finite(self.internal_accuracy),
            "internal_drop_from_plain": finite(self.internal_drop),
            "eligible": self.eligible,
        }


def _cells(
    verdicts: dict[str, list[Verdict]], external: Sequence[str]
) -> dict[tuple[str, str], float]:
    cells = {}
    for set_name in external:
        seeds = verdicts.get(set_name, [])
        for class_name in seeds[0].recall if seeds else []:
            cells[(set_name, class_name)] = spread(seeds, class_name).mean
    return cells


def _ensemble_score(ensemble: dict[str, Verdict], external: Sequence[str]) -> float:
    values = [p.value for s in external if s in ensemble for p in ensemble[s].recall.values()]
    return float(np.mean(values)) if values else math.nan


def rank(
    recipes: Sequence[tuple[str, RecipeVerdicts]],
    internal: str,
    external: Sequence[str],
    plain: str = "plain",
) -> list[Rank]:
    """The recipes in rank order: eligible first, each group by external score, best first.
    Empty when there is no external set to rank on."""
    if not external:
        return []
    accuracy = {
        name: float(
            np.mean([v.accuracy.value for v in result.verdicts.get(internal, [])] or [math.nan])
        )
        for name, result in recipes
    }
    baseline = accuracy.get(plain)
    ranks = []
    for name, result in recipes:
        cells = _cells(result.verdicts, external)
        if not cells:
            continue
        (worst_set, worst_class), worst_value = min(cells.items(), key=lambda item: item[1])
        drop = None if baseline is None else baseline - accuracy[name]
        ranks.append(
            Rank(
                recipe=name,
                external_score=float(np.mean(list(cells.values()))),
                ensemble_score=_ensemble_score(result.ensemble, external),
                worst=(worst_set, worst_class, worst_value),
                internal_accuracy=accuracy[name],
                internal_drop=drop,
                eligible=drop is None or drop <= INTERNAL_TOLERANCE + 1e-12,
            )
        )
    return sorted(ranks, key=lambda r: (not r.eligible, -r.external_score))
