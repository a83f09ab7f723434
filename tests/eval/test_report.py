"""The evaluation's numbers and their layout, from probabilities chosen by hand (no model)."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cxr_covid import stats
from cxr_covid.evaluation import report as eval_report
from cxr_covid.evaluation.evaluate import compare
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation
from tests.eval.hand import hand_evaluation

CLASSES = ["covid", "normal", "viral_pneumonia"]
# The hand-checked case of test_stats: predictions 0 0 1 2 | 1 1 0 | 2 2 1.
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 2, 1, 1, 0, 2, 2, 1])


def _probabilities(pred: np.ndarray, seed: int = 0) -> np.ndarray:
    """Probabilities whose argmax is `pred`, with varied confidences (so AUC is informative)."""
    rng = np.random.default_rng(seed)
    probs = rng.uniform(0.05, 0.3, size=(len(pred), 3))
    probs[np.arange(len(pred)), pred] += rng.uniform(0.4, 0.9, size=len(pred))
    return probs / probs.sum(axis=1, keepdims=True)


def _evaluation(model_id: str, pred: np.ndarray, seed: int = 0) -> ModelEvaluation:
    return hand_evaluation(model_id, Y_TRUE, _probabilities(pred, seed), CLASSES, 200)


def test_compute_metrics_matches_the_hand_checked_case() -> None:
    evaluation = _evaluation("m", Y_PRED)
    assert evaluation.confusion.tolist() == [[2, 1, 1], [1, 2, 0], [0, 1, 2]]
    assert (evaluation.accuracy.successes, evaluation.accuracy.n) == (6, 10)
    covid = evaluation.class_result("covid")
    assert covid is not None
    assert (covid.accuracy.successes, covid.accuracy.n) == (2, 4)
    assert (covid.specificity.successes, covid.specificity.n) == (5, 6)
    assert covid.f1.value == pytest.approx(4 / 7)
    assert evaluation.balanced_accuracy.value == pytest.approx(11 / 18)
    assert evaluation.macro_f1.value == pytest.approx(38 / 63)
    for j, result in enumerate(evaluation.per_class):
        expected = roc_auc_score(j == Y_TRUE, evaluation.probabilities[:, j])
        assert result.auc.value == pytest.approx(expected)
        assert result.auc.low <= result.auc.value <= result.auc.high


def test_bootstrap_intervals_are_reproducible() -> None:
    a, b = _evaluation("m", Y_PRED), _evaluation("m", Y_PRED)
    assert [c.auc for c in a.per_class] == [c.auc for c in b.per_class]
    assert a.macro_f1 == b.macro_f1


def test_cell_layout() -> None:
    assert eval_report.cell(stats.proportion(29, 33)) == "87.88% (29/33) [72.7-95.2]"
    assert eval_report.cell(stats.proportion(0, 10)) == "0.00% (0/10) [0.0-27.8]"
    assert eval_report.cell(stats.proportion(10, 10)) == "100.00% (10/10) [72.2-100.0]"
    assert eval_report.cell(stats.proportion(0, 0)) == "n/a (0/0)"


def test_study_table_layout_one_row_per_model() -> None:
    good, other = _evaluation("model-a", Y_PRED), _evaluation("model-b", Y_TRUE.copy(), seed=2)
    comparisons, notes = compare([good, other])
    report = EvaluationReport([good, other], comparisons, notes, 0.95, 200, 1)
    assert eval_report.study_header(report) == [
        "Model",
        "Total",
        "COVID-19",
        "normal",
        "viral pneumonia",
    ]
    rows = eval_report.study_rows(report)
    assert rows[0] == [
        "model-a",
        "60.00% (6/10) [31.3-83.2]",
        "50.00% (2/4) [15.0-85.0]",
        "66.67% (2/3) [20.8-93.9]",
        "66.67% (2/3) [20.8-93.9]",
    ]
    assert rows[1][1] == "100.00% (10/10) [72.2-100.0]"
    markdown = eval_report.to_markdown(report)
    assert "| Model | Total | COVID-19 | normal | viral pneumonia |" in markdown
    assert "| model-a | 60.00% (6/10) [31.3-83.2] |" in markdown
    assert "McNemar" in markdown
    # model-a is wrong on 4 images model-b gets right, never the reverse.
    (comparison,) = comparisons
    assert (comparison.test.a_only, comparison.test.b_only) == (0, 4)
    assert comparison.test.p_exact == pytest.approx(2 / 16)


def test_csv_is_long_format_with_every_figure() -> None:
    report = EvaluationReport([_evaluation("m", Y_PRED)], [], [], 0.95, 200, 1)
    rows = list(csv.DictReader(io.StringIO(eval_report.to_csv(report))))
    total = next(r for r in rows if r["metric"] == "accuracy" and r["class"] == "")
    assert (total["successes"], total["n"]) == ("6", "10")
    assert float(total["low"]) == pytest.approx(stats.wilson_interval(6, 10)[0], abs=1e-5)
    metrics = {(r["metric"], r["class"]) for r in rows}
    for cls in CLASSES:
        for metric in ("accuracy", "specificity", "ppv", "npv", "f1", "auc"):
            assert (metric, cls) in metrics
    confusion = {
        r["class"] + ">" + r["metric"]: r["value"]
        for r in rows
        if r["metric"].startswith("confusion:")
    }
    assert confusion["covid>confusion:normal"] == "1"
    assert confusion["normal>confusion:covid"] == "1"


def test_json_has_no_nan() -> None:
    import json

    pred = np.zeros_like(Y_TRUE)  # predicts covid for everything: PPV of the others is 0/0
    report = EvaluationReport([_evaluation("m", pred)], [], [], 0.95, 50, 1)
    text = eval_report.to_json_text(report)
    assert "NaN" not in text
    data = json.loads(text)
    normal = data["models"][0]["per_class"][1]
    assert normal["ppv"] == {"value": None, "successes": 0, "n": 0, "ci": [None, None]}
