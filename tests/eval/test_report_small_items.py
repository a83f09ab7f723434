"""Issue 21, item 12: the eval table's small surprises (hand-made probabilities, no model)."""

from __future__ import annotations

import numpy as np

from cxr_covid.evaluation import report as eval_report
from cxr_covid.evaluation.evaluate import compare
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation
from tests.eval.hand import hand_evaluation

CLASSES = ["covid", "normal", "viral_pneumonia"]
# No viral-pneumonia image at all; one normal image is called viral pneumonia.
Y_TRUE = np.array([0, 0, 0, 1, 1, 1])
Y_PRED = np.array([0, 0, 1, 1, 1, 2])


def _evaluation(model_id: str, pred: np.ndarray) -> ModelEvaluation:
    probs = np.full((len(pred), 3), 0.1)
    probs[np.arange(len(pred)), pred] = 0.8
    return hand_evaluation(model_id, Y_TRUE, probs, CLASSES, 50)


def _report(*evaluations: ModelEvaluation) -> EvaluationReport:
    comparisons, notes = compare(list(evaluations))
    return EvaluationReport(list(evaluations), comparisons, notes, 0.95, 50, 1)


def test_f1_of_a_class_absent_from_the_data_is_n_a_like_sensitivity() -> None:
    covid, _normal, absent = eval_report.class_metric_rows(_evaluation("m", Y_PRED))
    header = eval_report.class_metric_header()
    assert absent[header.index("Sensitivity")].startswith("n/a")
    assert absent[header.index("F1")] == "n/a"  # was 0.000 [0.000-0.000]
    assert covid[header.index("F1")] != "n/a"


def test_the_legend_mentions_mcnemar_only_when_two_models_are_compared() -> None:
    one = _report(_evaluation("a", Y_PRED))
    assert "McNemar" not in eval_report.methods_note(one)
    assert "McNemar" not in eval_report.to_markdown(one, "Evaluation")
    two = _report(_evaluation("a", Y_PRED), _evaluation("b", Y_TRUE))
    assert two.comparisons
    assert "McNemar" in eval_report.methods_note(two)
