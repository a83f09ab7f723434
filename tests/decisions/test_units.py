"""Calibration, operating points and the OOD guard as pure numpy: hand-checkable cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxr_covid.errors import UsageError
from cxr_covid.inference import calibration, ood, operating_point
from cxr_covid.inference.operating_point import Spec, choose_threshold, decide, parse_spec
from cxr_covid.models import store

CLASSES = ["covid", "normal", "viral_pneumonia"]


def test_temperature_recovers_the_one_that_made_the_labels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 3)) * 4.0
    true_t = 2.5
    p = calibration.softmax(logits, true_t)
    labels = np.array([rng.choice(3, p=row) for row in p])
    fitted = calibration.fit_temperature(logits, labels)
    assert abs(fitted - true_t) < 0.25
    # The fitted T is (near) the NLL minimum: neighbours are worse.
    best = calibration.nll(logits, labels, fitted)
    assert best <= calibration.nll(logits, labels, fitted * 1.2)
    assert best <= calibration.nll(logits, labels, fitted / 1.2)
    assert best < calibration.nll(logits, labels, 1.0)


def test_temperature_never_changes_the_argmax() -> None:
    logits = np.random.default_rng(1).normal(size=(50, 3))
    assert np.array_equal(
        calibration.softmax(logits).argmax(1), calibration.softmax(logits, 3.0).argmax(1)
    )


def test_brier_and_ece_by_hand() -> None:
    p = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])
    y = np.array([0, 1])
    # (0) + ((0.5)^2 + (0.5)^2) = 0.5 over 2 images
    assert calibration.brier(p, y) == pytest.approx(0.25)
    # bin (0.9, 1]: conf 1, acc 1; bin (0.4, 0.5]: conf 0.5, argmax 0 is wrong: |0 - 0.5|
    assert calibration.ece(p, y) == pytest.approx(0.25)


def test_quality_has_bootstrap_intervals_around_the_value() -> None:
    rng = np.random.default_rng(2)
    p = calibration.softmax(rng.normal(size=(120, 3)) * 3)
    y = rng.integers(0, 3, 120)
    from cxr_covid import stats

    q = calibration.quality(p, y, stats.stratified_bootstrap_indices(y, 200, 0))
    assert q.brier.low <= q.brier.value <= q.brier.high
    assert q.ece.low < q.ece.high


def test_sensitivity_threshold_is_met_on_validation_and_is_the_highest() -> None:
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    positive = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0], bool)
    t = choose_threshold(scores, positive, Spec("covid", "sensitivity", 0.8))
    # 5 positives: 0.8 needs 4 of them at or above t; the 4th largest positive is 0.6.
    assert t == 0.6
    assert (scores[positive] >= t).mean() >= 0.8
    assert (scores[positive] >= np.nextafter(t, 1)).mean() < 0.8


def test_specificity_threshold_is_met_and_is_the_lowest() -> None:
    scores = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
    positive = np.array([1, 1, 0, 1, 1, 0, 1, 0, 0, 0], bool)
    t = choose_threshold(scores, positive, Spec("covid", "specificity", 0.8))
    negatives = scores[~positive]  # 0.8, 0.5, 0.3, 0.2, 0.1: 4 of 5 must fall below t
    assert (negatives < t).mean() >= 0.8
    assert t > 0.5 and t < 0.5 + 1e-9


def test_three_class_rule() -> None:
    p = np.array([[0.3, 0.6, 0.1], [0.2, 0.3, 0.5], [0.1, 0.6, 0.3]])
    assert decide(p, 0, 0.25).tolist() == [0, 2, 1]  # covid, else argmax of the others
    assert decide(p, 0, 0.9).tolist() == [1, 2, 1]


def test_specs_are_parsed_and_bad_ones_refused() -> None:
    assert parse_spec("covid:sensitivity=0.95", CLASSES) == Spec("covid", "sensitivity", 0.95)
    assert parse_spec("COVID-19:threshold=0.3", CLASSES).cls == "covid"
    for bad in ("covid", "covid:recall=0.9", "covid:sensitivity=1.5", "cat:threshold=0.3"):
        with pytest.raises(UsageError):
            parse_spec(bad, CLASSES)
    assert operating_point.parse_threshold("covid=0.3", CLASSES) == ("covid", 0.3)


def test_guard_flags_far_points_and_passes_most_of_the_distribution() -> None:
    rng = np.random.default_rng(3)
    train = rng.normal(size=(600, 8))
    labels = rng.integers(0, 3, 600)
    train[:, 0] += labels * 3
    val = rng.normal(size=(300, 8))
    guard = ood.fit(train, labels, val, fitted_on="test", created="now")
    fresh = rng.normal(size=(2000, 8))
    assert (guard.scores(fresh) > 1).mean() < 0.05
    far = rng.normal(size=(50, 8)) + 8.0
    assert (guard.scores(far) > 1).all()
    again = ood.OodGuard.from_record(guard.to_dict())
    assert again is not None
    assert np.allclose(again.scores(far), guard.scores(far))


def test_pixel_statistics_tell_blank_and_colour_from_grey_texture() -> None:
    rng = np.random.default_rng(4)
    grey = rng.integers(0, 256, (1, 32, 32, 1), dtype=np.uint8).repeat(3, axis=3)
    blank = np.full((1, 32, 32, 3), 255, np.uint8)
    stats = ood.pixel_statistics(np.concatenate([grey, blank]))
    assert stats.shape == (2, ood.HISTOGRAM_BINS + 4)
    assert stats[1, ood.HISTOGRAM_BINS - 1] == 1.0  # all white in the top bin
    assert stats[0, ood.HISTOGRAM_BINS + 2] == 0.0  # grey: no colour
    assert math.isclose(stats[:, : ood.HISTOGRAM_BINS].sum(axis=1)[0], 1.0)


def test_old_records_load_and_say_uncalibrated() -> None:
    from cxr_covid.inference.calibration import Calibration
    from cxr_covid.inference.scoring import probabilities_label

    old = {
        "id": "m",
        "architecture": "baseline",
        "classes": CLASSES,
        "preprocessing": {"image_size": 32},
        "last_conv_layer": "last_conv",
    }
    record = store.ModelRecord.from_dict(old)
    assert record.calibration == {} and record.ood == {} and record.operating_point == {}
    assert Calibration.from_record(record.calibration) is None
    assert ood.OodGuard.from_record(record.ood) is None
    assert probabilities_label(None) == "uncalibrated"


def test_binary_metrics_count_the_two_by_two_table() -> None:
    # 4 positives (3 decided yes), 4 negatives (2 decided yes): tp 3, fn 1, fp 2, tn 2.
    positive = np.array([1, 1, 1, 1, 0, 0, 0, 0], dtype=bool)
    decided = np.array([1, 1, 1, 0, 1, 1, 0, 0], dtype=bool)
    m = operating_point.binary_metrics(decided, positive)
    assert (m.sensitivity.successes, m.sensitivity.n) == (3, 4)
    assert (m.specificity.successes, m.specificity.n) == (2, 4)
    assert (m.ppv.successes, m.ppv.n) == (3, 5)
    assert (m.npv.successes, m.npv.n) == (2, 3)
