"""Statistics against cases worked out by hand (and, where one exists, a reference library)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from cxr_covid import stats

# A 3-class case small enough to check on paper.
#   true:  0 0 0 0 1 1 1 2 2 2
#   pred:  0 0 1 2 1 1 0 2 2 1
# gives the confusion matrix (rows true, columns predicted)
#   [[2, 1, 1],
#    [1, 2, 0],
#    [0, 1, 2]]
Y_TRUE = [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
Y_PRED = [0, 0, 1, 2, 1, 1, 0, 2, 2, 1]
CM = [[2, 1, 1], [1, 2, 0], [0, 1, 2]]


def test_confusion_matrix_by_hand() -> None:
    assert stats.confusion_matrix(Y_TRUE, Y_PRED, 3).tolist() == CM
    assert stats.accuracy(np.array(CM)) == pytest.approx(6 / 10)


def test_one_vs_rest_by_hand() -> None:
    covid, normal, viral = stats.one_vs_rest(np.array(CM))
    # covid: TP 2, FN 2 (row 0 off-diagonal), FP 1 (column 0 off-diagonal), TN 10-5 = 5
    assert (covid.tp, covid.fn, covid.fp, covid.tn) == (2, 2, 1, 5)
    assert (covid.sensitivity.successes, covid.sensitivity.n) == (2, 4)
    assert (covid.specificity.successes, covid.specificity.n) == (5, 6)
    assert (covid.ppv.successes, covid.ppv.n) == (2, 3)
    assert (covid.npv.successes, covid.npv.n) == (5, 7)
    assert covid.f1 == pytest.approx(4 / 7)  # 2TP / (2TP + FP + FN) = 4 / 7
    # normal: TP 2, FN 1, FP 2, TN 5
    assert (normal.tp, normal.fn, normal.fp, normal.tn) == (2, 1, 2, 5)
    assert normal.ppv.value == pytest.approx(0.5)
    assert normal.npv.value == pytest.approx(5 / 6)
    assert normal.f1 == pytest.approx(4 / 7)
    # viral: TP 2, FN 1, FP 1, TN 6
    assert (viral.tp, viral.fn, viral.fp, viral.tn) == (2, 1, 1, 6)
    assert viral.specificity.value == pytest.approx(6 / 7)
    assert viral.f1 == pytest.approx(2 / 3)


def test_balanced_accuracy_and_macro_f1_by_hand_and_against_sklearn() -> None:
    cm = np.array(CM)
    assert stats.balanced_accuracy(cm) == pytest.approx((2 / 4 + 2 / 3 + 2 / 3) / 3)  # 11/18
    assert stats.macro_f1(cm) == pytest.approx((4 / 7 + 4 / 7 + 2 / 3) / 3)  # 38/63
    assert stats.balanced_accuracy(cm) == pytest.approx(balanced_accuracy_score(Y_TRUE, Y_PRED))
    assert stats.macro_f1(cm) == pytest.approx(f1_score(Y_TRUE, Y_PRED, average="macro"))


# Wilson (1927) score interval, z = 1.959964 (95 %):
#   centre = (p + z^2/2n) / (1 + z^2/n),  half = z/(1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
# 29/33: p = 0.878788, 1 + z^2/n = 1.116408, centre = 0.839290, half = 0.112546
#        -> [0.726744, 0.951836]: the "about 73-95 %" of the study's 33 COVID-19 test images.
# 0/10:  upper = z^2 / (n + z^2) = 3.841459 / 13.841459 = 0.277533, lower 0.
# 10/10: lower = n / (n + z^2) = 10 / 13.841459 = 0.722467, upper 1.
@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (29, 33, 0.726745, 0.951838),
        (0, 10, 0.0, 0.277533),
        (10, 10, 0.722467, 1.0),
        # Published values: Newcombe (1998), Stat Med 17:857-872, Table I, method 3.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_interval(k: int, n: int, low: float, high: float) -> None:
    got_low, got_high = stats.wilson_interval(k, n)
    tolerance = 5e-5 if n in (263, 148, 20, 29) else 1e-6
    assert got_low == pytest.approx(low, abs=tolerance)
    assert got_high == pytest.approx(high, abs=tolerance)


def test_wilson_edge_cases() -> None:
    assert all(math.isnan(x) for x in stats.wilson_interval(0, 0))
    with pytest.raises(ValueError):
        stats.wilson_interval(5, 4)
    wider = stats.wilson_interval(29, 33, confidence=0.99)
    assert wider[0] < 0.726745 and wider[1] > 0.951838
    p = stats.proportion(29, 33)
    assert p.value == pytest.approx(29 / 33)
    assert p.to_dict()["ci"] == pytest.approx([0.726745, 0.951838], abs=1e-6)
    assert stats.proportion(0, 0).to_dict() == {
        "value": None,
        "successes": 0,
        "n": 0,
        "ci": [None, None],
    }


def test_auc_by_hand() -> None:
    # positives 0.9, 0.4; negatives 0.5, 0.4, 0.1. Pairs won: 0.9 beats all three (3);
    # 0.4 loses to 0.5, ties 0.4 (1/2), beats 0.1 (1) -> 4.5 of 6 pairs = 0.75.
    positive = np.array([True, True, False, False, False])
    scores = np.array([0.9, 0.4, 0.5, 0.4, 0.1])
    assert stats.roc_auc(positive, scores) == pytest.approx(0.75)
    assert math.isnan(stats.roc_auc(np.array([True, True]), np.array([0.1, 0.2])))


@pytest.mark.parametrize("seed", range(5))
def test_auc_matches_sklearn_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    positive = rng.random(200) < 0.3
    scores = np.round(rng.random(200) + 0.3 * positive, 1)  # rounding makes many ties
    assert stats.roc_auc(positive, scores) == pytest.approx(roc_auc_score(positive, scores))


def test_roc_curve_ends() -> None:
    fpr, tpr = stats.roc_curve(np.array([1, 0, 1, 0], bool), np.array([0.9, 0.8, 0.3, 0.1]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


# McNemar, discordant pairs b = 1, c = 6, n = 7, X ~ Binomial(7, 1/2):
#   P[X <= 1] = (1 + 7) / 128 = 0.0625 -> exact two-sided p = 0.125
#   mid-p = 0.125 - P[X = 1] = 0.125 - 7/128 = 9/128 = 0.0703125
def test_mcnemar_by_hand() -> None:
    assert stats.mcnemar_p(1, 6) == pytest.approx((0.125, 9 / 128))
    assert stats.mcnemar_p(6, 1) == pytest.approx((0.125, 9 / 128))
    assert stats.mcnemar_p(0, 8) == pytest.approx((2 / 256, 1 / 256))
    assert stats.mcnemar_p(0, 0) == (1.0, 1.0)
    assert stats.mcnemar_p(3, 3) == (1.0, 1.0)
    # Large counts stay exact (integer arithmetic), no underflow.
    exact, mid = stats.mcnemar_p(400, 600)
    assert 0 < mid < exact < 1e-9


def test_mcnemar_against_scipy_binomial_test() -> None:
    from scipy.stats import binomtest

    for b, c in [(2, 9), (10, 12), (0, 5), (30, 14)]:
        assert stats.mcnemar_p(b, c)[0] == pytest.approx(binomtest(b, b + c).pvalue)


def test_mcnemar_from_per_image_results() -> None:
    a = np.array([1, 1, 1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 1, 1, 0, 0, 0], bool)
    result = stats.mcnemar(a, b)
    assert (result.both_right, result.a_only, result.b_only, result.both_wrong) == (2, 3, 1, 2)
    assert result.n == 8
    assert result.p_exact == pytest.approx(stats.mcnemar_p(3, 1)[0])
    with pytest.raises(ValueError):
        stats.mcnemar(a, b[:-1])


def test_bootstrap_is_seeded_stratified_and_brackets_the_value() -> None:
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1, 2], [5, 30, 40])
    samples = stats.stratified_bootstrap_indices(y, 200, seed=7)
    again = stats.stratified_bootstrap_indices(y, 200, seed=7)
    assert all(np.array_equal(s, t) for s, t in zip(samples, again, strict=True))
    for s in samples[:20]:
        assert np.bincount(y[s], minlength=3).tolist() == [5, 30, 40]
    scores = rng.random(len(y)) + 0.3 * (y == 0)
    (estimate,) = stats.bootstrap_estimates(
        lambda idx: [stats.roc_auc(y[idx] == 0, scores[idx])], len(y), samples
    )
    assert estimate.value == pytest.approx(roc_auc_score(y == 0, scores))
    assert estimate.low <= estimate.value <= estimate.high
    assert estimate.high - estimate.low > 0


def test_calibration_bins_by_hand() -> None:
    confidence = np.array([0.35, 0.38, 0.95, 0.91, 0.99, 1.0])
    correct = np.array([True, False, True, True, True, False])
    bins, ece = stats.calibration_bins(confidence, correct, n_bins=10)
    low_bin, top_bin = bins[3], bins[9]
    assert (low_bin.count, top_bin.count) == (2, 4)
    assert low_bin.accuracy == pytest.approx(0.5)
    assert low_bin.mean_confidence == pytest.approx(0.365)
    assert top_bin.accuracy == pytest.approx(0.75)
    assert top_bin.mean_confidence == pytest.approx(0.9625)
    # ECE = 2/6 * |0.5 - 0.365| + 4/6 * |0.75 - 0.9625|
    assert ece == pytest.approx(2 / 6 * 0.135 + 4 / 6 * 0.2125)
    assert sum(b.count for b in bins) == 6
