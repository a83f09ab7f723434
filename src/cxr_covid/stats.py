"""Classification statistics with honest uncertainty: pure numpy (and math), no TensorFlow.

Everything here works on plain arrays of integer labels and probabilities, so it can be
tested against hand-computed cases and reused by any caller.

- Proportions (accuracy, sensitivity, specificity, PPV, NPV) get a Wilson score interval:
  Wilson, E. B. (1927) "Probable inference, the law of succession, and statistical
  inference", JASA 22:209-212. With p = k/n and z the normal quantile,

      centre    = (p + z^2 / 2n) / (1 + z^2 / n)
      half      = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / 4n^2)
      interval  = [centre - half, centre + half]

  It stays inside [0, 1] and keeps near-nominal coverage for small n and p near 0 or 1, where
  the textbook (Wald) interval collapses to a point (Brown, Cai & DasGupta 2001).
- Quantities that are not simple proportions (F1, macro-F1, balanced accuracy, ROC AUC) get
  a percentile bootstrap interval, stratified by true class (each resample keeps every class's
  count, as pROC does for AUC), with a seeded generator so reruns agree.
- Two classifiers on the same images: McNemar's test on the discordant pairs, exact
  (two-sided binomial) and mid-p (Fagerland, Lydersen & Laake 2013, BMC Med Res Methodol
  13:91, who recommend the mid-p version).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

DEFAULT_CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP = 1000


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """Wilson score interval for successes/n; (nan, nan) when n == 0 (nothing to estimate)."""
    if n < 0 or successes < 0 or successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}/{n}")
    if n == 0:
        return (math.nan, math.nan)
    low, high = wilson_rate_interval(successes / n, n, confidence)
    # Clamp rounding noise only: at k = 0 or k = n the exact bound is 0 or 1.
    return (0.0 if successes == 0 else low, 1.0 if successes == n else high)


def wilson_rate_interval(
    rate: float, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval for a rate over n items that need not be a whole count of
    successes (an accuracy averaged over seeds); n > 0."""
    z = _z(confidence)
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (rate + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(rate * (1.0 - rate) / n + z2 / (4.0 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Proportion:
    """k out of n, its value, and a Wilson interval. Value and bounds are nan when n == 0."""

    successes: int
    n: int
    low: float
    high: float

    @property
    def value(self) -> float:
        return self.successes / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": _finite(self.value),
            "successes": self.successes,
            "n": self.n,
            "ci": [_finite(self.low), _finite(self.high)],
        }


def proportion(successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    low, high = wilson_interval(int(successes), int(n), confidence)
    return Proportion(int(successes), int(n), low, high)


def proportion_of(rate: float, n: int, confidence: float = DEFAULT_CONFIDENCE) -> Proportion:
    """The Proportion behind an accuracy that was reported as a rate over n images."""
    return proportion(round(rate * n), n, confidence)


@dataclass(frozen=True)
class Estimate:
    """A statistic that is not a proportion, with a bootstrap interval (nan when undefined)."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, Any]:
        return {"value": _finite(self.value), "ci": [_finite(self.low), _finite(self.high)]}


def _finite(x: float) -> float | None:
    """JSON has no NaN: undefined figures become null."""
    return None if x is None or not math.isfinite(x) else float(x)


# --- confusion matrix and what follows from it --------------------------------------------


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """(n_classes, n_classes) int matrix; rows are the true class, columns the prediction."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape:
        raise ValueError("y_true and y_pred differ in length")
    if t.size and (t.min() < 0 or p.min() < 0 or t.max() >= n_classes or p.max() >= n_classes):
        raise ValueError("label outside 0..n_classes-1")
    flat = np.bincount(t * n_classes + p, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


@dataclass(frozen=True)
class OneVsRest:
    """One class against the rest: counts and the four proportions with Wilson intervals."""

    tp: int
    fp: int
    fn: int
    tn: int
    sensitivity: Proportion  # recall, TP / (TP + FN): the study's per-class "accuracy"
    specificity: Proportion  # TN / (TN + FP)
    ppv: Proportion  # precision, TP / (TP + FP)
    npv: Proportion  # TN / (TN + FN)

    @property
    def f1(self) -> float:
        denominator = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denominator if denominator else math.nan


def one_vs_rest(cm: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> list[OneVsRest]:
    cm = np.asarray(cm, dtype=np.int64)
    total = int(cm.sum())
    results = []
    for k in range(cm.shape[0]):
        tp = int(cm[k, k])
        fn = int(cm[k, :].sum()) - tp
        fp = int(cm[:, k].sum()) - tp
        tn = total - tp - fn - fp
        results.append(
            OneVsRest(
                tp=tp,
                fp=fp,
                fn=fn,
                tn=tn,
                sensitivity=proportion(tp, tp + fn, confidence),
                specificity=proportion(tn, tn + fp, confidence),
                ppv=proportion(tp, tp + fp, confidence),
                npv=proportion(tn, tn + fn, confidence),
            )
        )
    return results


def accuracy(cm: np.ndarray) -> float:
    total = int(np.asarray(cm).sum())
    return float(np.trace(cm)) / total if total else math.nan


def balanced_accuracy(cm: np.ndarray) -> float:
    """Mean recall over the classes that occur (a class with no true images has no recall)."""
    cm = np.asarray(cm, dtype=np.float64)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return math.nan
    return float(np.mean(np.diag(cm)[present] / support[present]))


def macro_f1(cm: np.ndarray) -> float:
    """Unweighted mean F1 over the classes that occur in the truth or the predictions."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    denominator = 2 * tp + (cm.sum(axis=0) - tp) + (cm.sum(axis=1) - tp)
    present = denominator > 0
    if not present.any():
        return math.nan
    return float(np.mean(2 * tp[present] / denominator[present]))


# --- ROC AUC --------------------------------------------------------------------------------


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (what the Mann-Whitney U statistic needs)."""
    n = len(values)
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    new_run = np.r_[True, sorted_values[1:] != sorted_values[:-1]]
    starts = np.flatnonzero(new_run)
    ends = np.r_[starts[1:], n]
    run_of = np.cumsum(new_run) - 1
    ranks = np.empty(n, dtype=np.float64)
    # A run of ties occupying sorted positions start..end-1 shares rank (start+1 + end) / 2.
    ranks[order] = ((starts + 1 + ends) / 2.0)[run_of]
    return ranks


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a positive > score of a negative), ties = 1/2.

    Computed from ranks (the Mann-Whitney U statistic); nan when one side is empty.
    """
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(scores)
    u = float(ranks[positive].sum()) - n_pos * (n_pos + 1) / 2.0
    return u / (n_pos * n_neg)


def roc_curve(positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0)."""
    positive = np.asarray(positive, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], positive[order]
    last_of_run = np.r_[s[1:] != s[:-1], True]
    tps = np.cumsum(y)[last_of_run]
    fps = np.cumsum(~y)[last_of_run]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fps / n_neg], np.r_[0.0, tps / n_pos]


# --- bootstrap ------------------------------------------------------------------------------


def stratified_bootstrap_indices(
    y_true: np.ndarray, n_resamples: int, seed: int
) -> list[np.ndarray]:
    """Resampled index arrays that keep each true class's count (pROC's default strategy)."""
    rng = np.random.default_rng(seed)
    y_true = np.asarray(y_true)
    groups = [np.flatnonzero(y_true == c) for c in np.unique(y_true)]
    samples = []
    for _ in range(n_resamples):
        samples.append(np.concatenate([rng.choice(g, size=len(g), replace=True) for g in groups]))
    return samples


def bootstrap_estimates(
    statistics: Callable[[np.ndarray], Sequence[float]],
    n: int,
    samples: Sequence[np.ndarray],
    confidence: float = DEFAULT_CONFIDENCE,
) -> list[Estimate]:
    """Several statistics at once: `statistics(indices)` returns one value per statistic.

    Each gets its value on all n items and a percentile interval over the resamples `samples`
    (resamples where a statistic is undefined, e.g. AUC without a negative, are left out).
    """
    values = np.asarray(statistics(np.arange(n)), dtype=np.float64)
    if samples:
        draws = np.array([statistics(idx) for idx in samples], dtype=np.float64)
    else:
        draws = np.empty((0, len(values)))
    alpha = (1.0 - confidence) / 2.0
    estimates = []
    for j, value in enumerate(values):
        column = draws[:, j][np.isfinite(draws[:, j])] if draws.size else draws
        if not math.isfinite(float(value)) or column.size == 0:
            estimates.append(Estimate(float(value), math.nan, math.nan))
            continue
        low, high = np.quantile(column, [alpha, 1.0 - alpha])
        estimates.append(Estimate(float(value), float(low), float(high)))
    return estimates


# --- McNemar --------------------------------------------------------------------------------


@dataclass(frozen=True)
class McNemar:
    """Paired comparison of two classifiers on the same images.

    b: images model A got right and B wrong; c: the reverse. Only these discordant pairs
    carry information; under the null hypothesis (equal accuracy) b ~ Binomial(b + c, 1/2).
    """

    both_right: int
    a_only: int  # b
    b_only: int  # c
    both_wrong: int
    p_exact: float
    p_mid: float

    @property
    def n(self) -> int:
        return self.both_right + self.a_only + self.b_only + self.both_wrong

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "n": self.n}


def mcnemar_p(b: int, c: int) -> tuple[float, float]:
    """Two-sided exact and mid-p McNemar p-values from the discordant counts b and c.

    exact = min(1, 2 * P[X <= min(b, c)]),  mid-p = exact - P[X = min(b, c)],
    with X ~ Binomial(b + c, 1/2). Both are 1.0 when there are no discordant pairs.
    """
    if b < 0 or c < 0:
        raise ValueError("discordant counts must be non-negative")
    n = b + c
    if n == 0:
        return (1.0, 1.0)
    k = min(b, c)
    # Exact integer arithmetic, then one division: no underflow for large n.
    tail = sum(math.comb(n, i) for i in range(k + 1))
    point = math.comb(n, k)
    exact = min(1.0, 2.0 * tail / 2**n)
    mid = min(1.0, (2.0 * tail - point) / 2**n)
    return (exact, mid)


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemar:
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError("McNemar needs the two models' results on the same images")
    a_only = int((a & ~b).sum())
    b_only = int((~a & b).sum())
    exact, mid = mcnemar_p(a_only, b_only)
    return McNemar(
        both_right=int((a & b).sum()),
        a_only=a_only,
        b_only=b_only,
        both_wrong=int((~a & ~b).sum()),
        p_exact=exact,
        p_mid=mid,
    )


def sign_flip_p(differences: Sequence[float]) -> float:
    """Exact two-sided paired permutation (sign-flip) test that paired differences centre on 0.

    Every one of the 2^n sign assignments is equally likely under the null; the p-value is the
    share whose |mean| is at least the observed one. With n pairs the smallest possible p is
    2 / 2^n (0.25 with 3 seeds): few pairs give the test little power. 1.0 for no pairs."""
    d = np.asarray(list(differences), dtype=np.float64)
    if d.size == 0 or not np.all(np.isfinite(d)):
        return 1.0 if d.size == 0 else math.nan
    if d.size > 20:
        raise ValueError("sign_flip_p enumerates 2^n assignments: at most 20 pairs")
    observed = abs(d.mean())
    signs = np.array(list(itertools.product((1.0, -1.0), repeat=d.size)))
    means = np.abs((signs * d).mean(axis=1))
    return float(np.mean(means >= observed - 1e-12))


# --- calibration ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float


def calibration_bins(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
) -> tuple[list[CalibrationBin], float]:
    """Reliability-diagram bins of top-class confidence, and the expected calibration error
    (ECE: the count-weighted mean |accuracy - confidence| over bins)."""
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bin i holds (edges[i], edges[i+1]]; confidence 0 joins the first bin.
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    ece = 0.0
    total = len(confidence)
    for i in range(n_bins):
        mask = which == i
        count = int(mask.sum())
        if count:
            conf = float(confidence[mask].mean())
            acc = float(correct[mask].mean())
            ece += count / total * abs(acc - conf)
        else:
            conf = acc = math.nan
        bins.append(CalibrationBin(float(edges[i]), float(edges[i + 1]), count, conf, acc))
    return bins, (ece if total else math.nan)
