"""Judging recipes from probabilities: per-class recall, COVID-19 AUROC, the internal-external
gap, the ensemble of a recipe's seeds, and the two tests against `plain`.

Pure functions on arrays (no TensorFlow, no files), so each figure can be checked on known
numbers. Decisions are the argmax of a model's probabilities: no threshold is chosen here,
and none ever from an external set (the decision rule sees probabilities, never labels).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_covid import classes, stats

SEED_TEST = (
    "exact two-sided sign-flip permutation test over seeds (recalls paired by seed index); "
    "its smallest possible p is 2/2^seeds (0.25 with 3 seeds, 0.03 with 6), so with few "
    "seeds it has little power"
)
ENSEMBLE_TEST = (
    "exact McNemar test between the two recipes' seed ensembles on the same images; each row "
    "is its own test, not corrected for the number of rows: read a lone p < 0.05 among many "
    "rows with care"
)


def decide(probabilities: np.ndarray) -> np.ndarray:
    """The class index each image is called: the argmax (the study's rule)."""
    return np.asarray(np.argmax(np.asarray(probabilities), axis=1))


def ensemble_probabilities(members: Sequence[np.ndarray]) -> np.ndarray:
    """The ensemble of a recipe's seeds: the mean of the members' probabilities."""
    if not members:
        raise ValueError("an ensemble needs at least one member")
    stacked = np.stack([np.asarray(m, dtype=np.float64) for m in members])
    return np.asarray(stacked.mean(axis=0))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


@dataclass
class Verdict:
    """One model (or ensemble) on one set of images."""

    recall: dict[str, stats.Proportion]  # per true class present in the set
    accuracy: stats.Proportion
    auroc_covid: float | None  # one-vs-rest, only when the set has COVID-19 and others
    correct: np.ndarray = field(repr=False)  # per image, for McNemar
    gap: float | None = None  # mean over the set's classes of internal minus this recall

    def to_dict(self) -> dict[str, Any]:
        return {
            "recall": {c: p.to_dict() for c, p in self.recall.items()},
            "accuracy": self.accuracy.to_dict(),
            "auroc_covid": self.auroc_covid,
            "gap_from_internal": self.gap,
        }


def judge(
    probabilities: np.ndarray,
    y_true: np.ndarray,
    model_classes: Sequence[str],
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> Verdict:
    """Recall per class present (Wilson interval), accuracy, and the COVID-19 AUROC."""
    y_true = np.asarray(y_true)
    predicted = decide(probabilities)
    correct = predicted == y_true
    recall = {}
    for index, name in enumerate(model_classes):
        mask = y_true == index
        if mask.any():
            recall[name] = stats.proportion(int(correct[mask].sum()), int(mask.sum()), confidence)
    accuracy = stats.proportion(int(correct.sum()), int(correct.size), confidence)
    return Verdict(recall, accuracy, covid_auroc(probabilities, y_true, model_classes), correct)


def covid_auroc(
    probabilities: np.ndarray, y_true: np.ndarray, model_classes: Sequence[str]
) -> float | None:
    """One-vs-rest AUROC of the COVID-19 probability (`stats.roc_auc`, as eval computes it);
    None when the set lacks COVID-19 images or non-COVID-19 images (it is then undefined)."""
    if classes.COVID not in model_classes:
        return None
    index = list(model_classes).index(classes.COVID)
    positive = np.asarray(y_true) == index
    return _finite(stats.roc_auc(positive, np.asarray(probabilities)[:, index]))


def gap(internal: Verdict, external: Verdict) -> float | None:
    """Internal minus external recall, averaged over the classes the external set holds."""
    shared = [c for c in external.recall if c in internal.recall]
    if not shared:
        return None
    values = [internal.recall[c].value - external.recall[c].value for c in shared]
    return _finite(float(np.mean(values)))


@dataclass(frozen=True)
class SeedSpread:
    """One class's recall across a recipe's seeds."""

    values: tuple[float, ...]
    intervals: tuple[tuple[float, float], ...]  # each seed's Wilson interval

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": _finite(self.mean),
            "min": _finite(min(self.values)) if self.values else None,
            "max": _finite(max(self.values)) if self.values else None,
            "per_seed": [_finite(v) for v in self.values],
            "per_seed_ci": [[_finite(lo), _finite(hi)] for lo, hi in self.intervals],
        }


def spread(verdicts: Sequence[Verdict], name: str) -> SeedSpread:
    found = [v.recall[name] for v in verdicts if name in v.recall]
    return SeedSpread(tuple(p.value for p in found), tuple((p.low, p.high) for p in found))


@dataclass(frozen=True)
class AgainstPlain:
    """One recipe against plain on one set and class: the seeds' test and the ensembles'."""

    recipe: str
    set_name: str
    class_name: str
    differences: tuple[float, ...]  # recipe minus plain recall, seed by seed
    seed_p: float
    mcnemar: stats.McNemar  # a_only: images the recipe's ensemble gets right and plain's not

    def to_dict(self) -> dict[str, Any]:
        mean = float(np.mean(self.differences)) if self.differences else math.nan
        return {
            "recipe": self.recipe,
            "set": self.set_name,
            "class": self.class_name,
            "recall_differences_by_seed": [_finite(d) for d in self.differences],
            "mean_difference": _finite(mean),
            "seed_test_p": _finite(self.seed_p),
            "ensemble_mcnemar": self.mcnemar.to_dict(),
        }


def against_plain(
    recipe: str,
    set_name: str,
    class_name: str,
    seeds: tuple[Sequence[Verdict], Sequence[Verdict]],
    ensembles: tuple[Verdict, Verdict],
    y_true_mask: np.ndarray,
) -> AgainstPlain:
    """`seeds` = (recipe's, plain's) verdicts in seed order (paired by index, the shorter
    list decides how many pairs); `ensembles` = (recipe's, plain's) on the same images;
    `y_true_mask` picks this class's images for McNemar."""
    mine, plain = seeds
    differences = tuple(
        a.recall[class_name].value - b.recall[class_name].value
        for a, b in zip(mine, plain, strict=False)
        if class_name in a.recall and class_name in b.recall
    )
    ours, theirs = ensembles
    mask = np.asarray(y_true_mask, dtype=bool)
    test = stats.mcnemar(ours.correct[mask], theirs.correct[mask])
    return AgainstPlain(
        recipe, set_name, class_name, differences, stats.sign_flip_p(differences), test
    )
