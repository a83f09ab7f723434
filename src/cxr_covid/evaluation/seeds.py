"""Run-to-run variation: one recipe trained with several seeds, evaluated on the same images.

With 33 COVID-19 test images one training run can move a cell by several points, so a
single run cannot tell a real difference between recipes from seed noise. Given the
evaluations of N models per recipe (one per seed, all on the same test images), this module
reports per cell:

- the per-seed accuracies (each a real evaluation, with its Wilson interval), their mean, the
  sample standard deviation and the min-max range;
- a 95 % interval of the seed-averaged accuracy that accounts for both sources of variation:
  a two-way percentile bootstrap that resamples the test images (within each true class, so
  each class keeps its count) and, independently, the seeds. The same 33 images seen N times
  are not N x 33 independent images; resampling images, not image-seed pairs, says so. With
  one seed it is the ordinary bootstrap over images;
- beside a published figure, a verdict: inside the seed range, inside the interval, or
  outside.

Recipes are compared with images as the unit: a paired permutation (sign-flip) test over test
images of the seed-averaged correctness. With one seed per recipe it is McNemar's exact test;
a sign test over 5 seeds could never reach p < 0.05, this one can.

Pure numpy; no TensorFlow. Groups of stored models (`train --seeds`, `reproduce --seeds`) are
recorded in each model record's training options (`group`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cxr_covid import stats
from cxr_covid.errors import DataError

TOTAL = "total"
DEFAULT_PERMUTATIONS = 10000
EXACT_LIMIT = 16  # enumerate every sign pattern up to this many images that differ

INSIDE_RANGE = "inside seed range"
INSIDE_INTERVAL = "inside interval"
OUTSIDE = "outside"
NOT_AVAILABLE = "n/a"
VERDICT_RULE = (
    f"'{INSIDE_RANGE}': the published figure lies between our lowest and highest seed; "
    f"'{INSIDE_INTERVAL}': outside that range but inside the 95 % interval of our "
    f"seed-averaged accuracy; '{OUTSIDE}': neither"
)
INTERVAL_METHOD = (
    "percentile bootstrap of the seed-averaged accuracy, resampling test images (within each "
    "true class) and seeds, both with replacement, widened where needed to the Wilson "
    "interval of the seed-averaged accuracy over the column's images"
)
PERMUTATION_METHOD = (
    "paired permutation (sign-flip) test over test images of the seed-averaged correctness, "
    "two-sided; exact when at most {limit} images differ, else {permutations} random "
    "sign patterns"
)
# Published figures are truncated to two decimals: within 0.01 points of a bound is inside.
_SLACK = 0.0001


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedCell:
    """One column (total or a class) of one recipe across its seeds."""

    column: str
    per_seed: list[stats.Proportion]  # one real evaluation per seed, in seed order
    interval: tuple[float, float]  # 95 % interval of the seed-averaged accuracy
    published: float | None = None  # percent, as printed in the study
    verdict: str = NOT_AVAILABLE

    @property
    def values(self) -> np.ndarray:
        return np.array([p.value for p in self.per_seed], dtype=np.float64)

    @property
    def mean(self) -> float:
        values = self.values
        return float(values.mean()) if values.size and np.isfinite(values).all() else math.nan

    @property
    def sd(self) -> float:
        """Sample standard deviation across seeds (nan with one seed: nothing to measure)."""
        values = self.values
        if values.size < 2 or not np.isfinite(values).all():
            return math.nan
        return float(values.std(ddof=1))

    @property
    def low(self) -> float:
        values = self.values
        return float(values.min()) if values.size and np.isfinite(values).all() else math.nan

    @property
    def high(self) -> float:
        values = self.values
        return float(values.max()) if values.size and np.isfinite(values).all() else math.nan

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "mean": _finite(self.mean),
            "sd": _finite(self.sd),
            "min": _finite(self.low),
            "max": _finite(self.high),
            "interval": [_finite(self.interval[0]), _finite(self.interval[1])],
            "per_seed": [p.to_dict() for p in self.per_seed],
        }
        if self.published is not None:
            data["published_percent"] = self.published
            data["verdict"] = self.verdict
        return data


@dataclass(frozen=True)
class SeedRow:
    """One recipe (e.g. a row of the study's table) trained once per seed."""

    key: str
    label: str
    seeds: list[int | None]
    models: list[str]
    cells: list[SeedCell]
    n: int  # test images (the same for every seed)

    def cell(self, column: str) -> SeedCell | None:
        return next((c for c in self.cells if c.column == column), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "label": self.label,
            "seeds": self.seeds,
            "models": self.models,
            "images": self.n,
            "cells": {c.column: c.to_dict() for c in self.cells},
        }


@dataclass(frozen=True)
class RowComparison:
    """Two recipes on the same images: seed-averaged accuracies and a permutation p-value."""

    a: str
    b: str
    accuracy_a: float
    accuracy_b: float
    differing_images: int  # images whose seed-averaged correctness differs
    p_value: float
    exact: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "accuracy_a": _finite(self.accuracy_a),
            "accuracy_b": _finite(self.accuracy_b),
            "difference": _finite(self.accuracy_a - self.accuracy_b),
            "differing_images": self.differing_images,
            "p_value": self.p_value,
            "exact": self.exact,
        }


@dataclass
class SeedSummary:
    """Every recipe's spread across seeds, and the paired tests between recipes."""

    rows: list[SeedRow]
    comparisons: list[RowComparison]
    columns: list[str]
    bootstrap: int
    permutations: int
    seed: int
    confidence: float = stats.DEFAULT_CONFIDENCE
    notes: list[str] = field(default_factory=list)

    @property
    def seed_count(self) -> int:
        return max((len(r.seeds) for r in self.rows), default=0)

    def verdicts(self) -> dict[str, int]:
        counts = {INSIDE_RANGE: 0, INSIDE_INTERVAL: 0, OUTSIDE: 0}
        for row in self.rows:
            for c in row.cells:
                if c.verdict in counts:
                    counts[c.verdict] += 1
        return counts

    def to_dict(self) -> dict[str, Any]:
        return {
            "seeds": self.seed_count,
            "columns": self.columns,
            "rows": [r.to_dict() for r in self.rows],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "interval_method": (
                f"{INTERVAL_METHOD}; {self.bootstrap} resamples, seed {self.seed}"
                if self.bootstrap > 0
                else "Wilson interval of the seed-averaged accuracy over the images "
                "(bootstrap 0: seeds not resampled)"
            ),
            "test_method": PERMUTATION_METHOD.format(
                limit=EXACT_LIMIT, permutations=self.permutations
            ),
            "verdict_rule": VERDICT_RULE,
            "verdicts": self.verdicts(),
            "per_seed": per_seed_records(self),
            "notes": self.notes,
        }


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


# --- statistics -----------------------------------------------------------------------------


def verdict(published_percent: float, cell: SeedCell) -> str:
    """Where the study's figure falls: our seed range, our interval, or outside both."""
    if not cell.per_seed or any(p.n == 0 for p in cell.per_seed):
        return NOT_AVAILABLE
    value = published_percent / 100.0
    if cell.low - _SLACK <= value <= cell.high + _SLACK:
        return INSIDE_RANGE
    low, high = cell.interval
    if math.isfinite(low) and low - _SLACK <= value <= high + _SLACK:
        return INSIDE_INTERVAL
    return OUTSIDE


def seed_averaged_intervals(
    correct: np.ndarray,
    y_true: np.ndarray,
    masks: Sequence[np.ndarray],
    bootstrap: int,
    seed: int,
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> list[tuple[float, float]]:
    """Per mask (a column's images), the 95 % interval of the seed-averaged accuracy.

    `correct` is (seeds, images) booleans. Each resample draws the images (stratified by true
    class) and the seeds with replacement, independently; the statistic is the mean
    correctness of the drawn seeds on the drawn images of the column. The interval is the
    hull of that percentile interval and the Wilson interval of the seed-averaged accuracy
    over the column's n images: a percentile bootstrap collapses to a point when every seed
    gets every image right (18/18 on three seeds is not certainty), and n images seen N
    times never carry more information than n images."""
    correct = np.asarray(correct, dtype=np.float64)
    n_seeds = correct.shape[0]
    if correct.size == 0:
        return [(math.nan, math.nan) for _ in masks]
    wilson = [
        stats.wilson_rate_interval(float(correct[:, mask].mean()), int(mask.sum()), confidence)
        if mask.any()
        else (math.nan, math.nan)
        for mask in masks
    ]
    if bootstrap <= 0:
        return wilson
    image_samples = stats.stratified_bootstrap_indices(y_true, bootstrap, seed)
    seed_rng = np.random.default_rng([seed, 1])
    draws = np.full((bootstrap, len(masks)), np.nan)
    for r, images in enumerate(image_samples):
        chosen = correct[seed_rng.integers(0, n_seeds, size=n_seeds)]
        per_image = chosen.mean(axis=0)[images]
        for j, mask in enumerate(masks):
            inside = mask[images]
            if inside.any():
                draws[r, j] = per_image[inside].mean()
    alpha = (1.0 - confidence) / 2.0
    intervals = []
    for j, mask in enumerate(masks):
        column = draws[:, j][np.isfinite(draws[:, j])]
        if not mask.any() or column.size == 0:
            intervals.append((math.nan, math.nan))
            continue
        low, high = np.quantile(column, [alpha, 1.0 - alpha])
        intervals.append((min(float(low), wilson[j][0]), max(float(high), wilson[j][1])))
    return intervals


def paired_permutation_test(
    a: np.ndarray, b: np.ndarray, permutations: int = DEFAULT_PERMUTATIONS, seed: int = 42
) -> tuple[float, bool]:
    """Two-sided p-value that paired per-image scores `a` and `b` have the same mean.

    Under the null hypothesis the two recipes are exchangeable on each image, so each
    image's difference is as likely to have either sign. Exact (every sign pattern) when at
    most EXACT_LIMIT images differ; else `permutations` random patterns, with the observed
    one counted (p = (1 + hits) / (1 + permutations), never 0). Returns (p, exact)."""
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return 1.0, True
    observed = abs(float(nonzero.sum()))
    tolerance = 1e-9 * max(1.0, observed)
    if nonzero.size <= EXACT_LIMIT:
        k = nonzero.size
        patterns = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1) * 2 - 1
        sums = np.abs(patterns @ nonzero)
        return float(np.mean(sums >= observed - tolerance)), True
    rng = np.random.default_rng(seed)
    hits = 0
    remaining = permutations
    while remaining > 0:  # in chunks, so memory stays bounded for large test sets
        chunk = min(remaining, 2000)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(chunk, nonzero.size))
        hits += int(np.sum(np.abs(signs @ nonzero) >= observed - tolerance))
        remaining -= chunk
    return (1 + hits) / (1 + permutations), False


# --- from evaluations -----------------------------------------------------------------------


def _same_images(evaluations: Sequence[Any]) -> None:
    first = evaluations[0]
    for other in evaluations[1:]:
        if (
            other.paths != first.paths
            or not np.array_equal(other.y_true, first.y_true)
            or other.classes != first.classes
        ):
            raise DataError(
                f"models {first.model_id} and {other.model_id} were not evaluated on the same "
                "images (or know other classes): their seeds cannot be pooled"
            )


def _column_masks(evaluation: Any, columns: Sequence[str]) -> list[np.ndarray]:
    masks = []
    for column in columns:
        if column == TOTAL:
            masks.append(np.ones(len(evaluation.y_true), dtype=bool))
        elif column in evaluation.classes:
            masks.append(evaluation.y_true == evaluation.classes.index(column))
        else:
            masks.append(np.zeros(len(evaluation.y_true), dtype=bool))
    return masks


def _proportion(evaluation: Any, column: str) -> stats.Proportion:
    """The figure the evaluation itself reports for a column (its own count and interval)."""
    if column == TOTAL:
        return evaluation.accuracy  # type: ignore[no-any-return]
    result = evaluation.class_result(column)
    return result.accuracy if result is not None else stats.proportion(0, 0)


def summarize_row(
    key: str,
    label: str,
    runs: Sequence[tuple[int | None, Any]],
    columns: Sequence[str],
    *,
    published: dict[str, float] | None = None,
    bootstrap: int = stats.DEFAULT_BOOTSTRAP,
    seed: int = 42,
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> SeedRow:
    """One recipe: `runs` is (training seed, ModelEvaluation) per seed, on the same images."""
    if not runs:
        raise DataError(f"{key}: no evaluated model to summarize")
    evaluations = [evaluation for _, evaluation in runs]
    _same_images(evaluations)
    correct = np.stack([e.correct for e in evaluations])
    masks = _column_masks(evaluations[0], columns)
    intervals = seed_averaged_intervals(
        correct, evaluations[0].y_true, masks, bootstrap, seed, confidence
    )
    cells = []
    for column, interval in zip(columns, intervals, strict=True):
        cell = SeedCell(column, [_proportion(e, column) for e in evaluations], interval)
        if published is not None and column in published:
            figure = published[column]
            cell = SeedCell(column, cell.per_seed, interval, figure, verdict(figure, cell))
        cells.append(cell)
    return SeedRow(
        key,
        label,
        [s for s, _ in runs],
        [e.model_id for e in evaluations],
        cells,
        len(evaluations[0].y_true),
    )


def compare_rows(
    rows: Sequence[tuple[str, Sequence[Any]]],
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 42,
) -> tuple[list[RowComparison], list[str]]:
    """The permutation test for every pair of recipes evaluated on the same images."""
    comparisons: list[RowComparison] = []
    notes: list[str] = []
    averaged = {key: np.stack([e.correct for e in evs]).mean(axis=0) for key, evs in rows}
    for i, (key_a, evs_a) in enumerate(rows):
        for key_b, evs_b in rows[i + 1 :]:
            try:
                _same_images([evs_a[0], evs_b[0]])
            except DataError:
                notes.append(f"{key_a} vs {key_b}: not evaluated on the same images; not tested")
                continue
            a, b = averaged[key_a], averaged[key_b]
            p, exact = paired_permutation_test(a, b, permutations, seed)
            comparisons.append(
                RowComparison(
                    key_a,
                    key_b,
                    float(a.mean()),
                    float(b.mean()),
                    int(np.sum(a != b)),
                    p,
                    exact,
                )
            )
    return comparisons, notes


@dataclass(frozen=True)
class Recipe:
    """A group's models that share everything but the seed: one row of the summary."""

    key: str
    label: str
    runs: list[tuple[int | None, Any]]  # (seed, ModelEvaluation)
    published: dict[str, float] | None = None


def summarize(
    recipes: Sequence[Recipe],
    columns: Sequence[str],
    *,
    bootstrap: int = stats.DEFAULT_BOOTSTRAP,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 42,
    confidence: float = stats.DEFAULT_CONFIDENCE,
) -> SeedSummary:
    rows = [
        summarize_row(
            r.key,
            r.label,
            r.runs,
            columns,
            published=r.published,
            bootstrap=bootstrap,
            seed=seed,
            confidence=confidence,
        )
        for r in recipes
    ]
    comparisons, notes = compare_rows(
        [(r.key, [e for _, e in r.runs]) for r in recipes], permutations, seed
    )
    if any(len(r.seeds) < 2 for r in rows):
        notes.append("A row with one seed has no spread to measure: its sd is n/a.")
    return SeedSummary(
        rows, comparisons, list(columns), bootstrap, permutations, seed, confidence, notes
    )


def per_seed_records(summary: SeedSummary) -> list[dict[str, Any]]:
    """The per-seed table, one record per recipe, seed and column (CSV and JSON)."""
    records = []
    for row in summary.rows:
        for i, (seed, model) in enumerate(zip(row.seeds, row.models, strict=True)):
            for cell in row.cells:
                p = cell.per_seed[i]
                records.append(
                    {
                        "row": row.key,
                        "seed": seed,
                        "model": model,
                        "column": cell.column,
                        "accuracy": _finite(p.value),
                        "successes": p.successes,
                        "n": p.n,
                        "ci_low": _finite(p.low),
                        "ci_high": _finite(p.high),
                    }
                )
    return records
