"""The study's published table, the presets, and the verdict per cell."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from cxr_covid import classes, stats, study
from cxr_covid.errors import UsageError
from cxr_covid.evaluation.metrics import compute_metrics
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation
from cxr_covid.evaluation.testsets import EvalImages
from cxr_covid.reproduce import report as reproduce_report
from cxr_covid.reproduce import run as reproduce
from cxr_covid.reproduce import run_folder


def test_published_table_is_the_studys() -> None:
    table = {m.key: [m.published[c] for c in study.TABLE_COLUMNS] for m in study.STUDY_MODELS}
    assert table == {
        "baseline-noaug": [95.41, 78.78, 98.50, 95.04],
        "baseline-aug": [95.64, 84.84, 97.01, 96.03],
        "inception-aug": [95.41, 87.87, 97.01, 95.04],
    }
    assert [(m.architecture, m.augment) for m in study.STUDY_MODELS] == [
        ("baseline", False),
        ("baseline", True),
        ("inception", True),
    ]
    # The COVID-19 cells are 26, 28 and 29 of 33 images, truncated to two decimals.
    for model, k in zip(study.STUDY_MODELS, (26, 28, 29), strict=True):
        assert math.floor(10000 * k / 33) / 100 == model.published[classes.COVID]


def test_presets() -> None:
    paper, quick = study.preset("paper"), study.preset("quick")
    assert (paper.image_size, paper.epochs, paper.batch_size) == (224, 30, 32)
    assert paper.release == 1 and paper.study_protocol
    assert paper.learning_rate == 1e-3 and paper.augment_factor == 5 and paper.seed == 42
    assert not quick.study_protocol and "NOT" in quick.description
    assert quick.image_size < paper.image_size and quick.epochs < paper.epochs
    with pytest.raises(UsageError, match="unknown preset"):
        study.preset("fast")


@pytest.mark.parametrize(
    ("published", "k", "n", "expected"),
    [
        (87.87, 29, 33, "inside"),  # the study's own figure, our interval 72.7-95.2
        (78.78, 29, 33, "inside"),
        (78.78, 33, 33, "outside"),  # 33/33 -> [89.6, 100]
        (95.41, 300, 435, "outside"),  # 69 % -> [64.5, 73.2]
        (72.67, 29, 33, "inside"),  # within the 0.01-point truncation slack of 72.674
        (72.60, 29, 33, "outside"),
        (95.04, 0, 0, "n/a"),
    ],
)
def test_verdict(published: float, k: int, n: int, expected: str) -> None:
    low, high = stats.wilson_interval(k, n)
    assert study.verdict(published, low, high) == expected


def _evaluation(model_id: str, per_class_correct: dict[int, tuple[int, int]]) -> ModelEvaluation:
    """A fabricated evaluation: for class j, `correct` of `n` right, the rest called class 0/1."""
    y_true, y_pred = [], []
    for j, (correct, n) in per_class_correct.items():
        y_true += [j] * n
        wrong = 1 if j == 0 else 0
        y_pred += [j] * correct + [wrong] * (n - correct)
    probs = np.full((len(y_true), 3), 0.1)
    probs[np.arange(len(y_true)), y_pred] = 0.8
    labels = list(classes.STUDY_CLASSES)
    metrics = compute_metrics(np.array(y_true), probs, labels, bootstrap=0)
    paths = [Path(f"/t/{i}.png") for i in range(len(y_true))]
    return ModelEvaluation(
        model_id=model_id,
        architecture="baseline",
        augmented=False,
        image_size=224,
        classes=labels,
        test_set=EvalImages(tuple(paths), tuple(labels[t] for t in y_true), "test", "dataset d"),
        **metrics.by_name(),
        paths=paths,
        y_true=np.array(y_true),
        probabilities=probs,
    )


def test_compare_with_study_gives_a_verdict_per_cell() -> None:
    # covid 29/33 (interval 72.7-95.2), normal 201/201 (98.1-100), viral 150/201 (68.2-80.4)
    like_study = _evaluation("m1", {0: (29, 33), 1: (201, 201), 2: (150, 201)})
    perfect = _evaluation("m2", {0: (33, 33), 1: (201, 201), 2: (201, 201)})
    trained = {"baseline-noaug": "m1", "baseline-aug": "m2", "inception-aug": "m1"}
    rows = reproduce_report.compare_with_study({"m1": like_study, "m2": perfect}, trained)
    verdicts = {r.study_model.key: {c.column: c.verdict for c in r.cells} for r in rows}
    assert verdicts["baseline-noaug"] == {
        "total": "outside",  # 380/435 = 87.4 % [83.9-90.2] vs 95.41
        "covid": "inside",  # 78.78 in [72.7, 95.2]
        "normal": "inside",  # 98.50 in [98.1, 100]
        "viral_pneumonia": "outside",  # 95.04 above [68.2, 80.4]
    }
    assert verdicts["baseline-aug"]["covid"] == "outside"  # 84.84 below [89.6, 100]
    assert verdicts["baseline-aug"]["total"] == "outside"  # 95.64 below 435/435's [99.1, 100]
    cells = {c.column: c for c in rows[0].cells}
    assert (cells["covid"].ours.successes, cells["covid"].ours.n) == (29, 33)
    assert cells["covid"].published == 78.78


def test_comparison_table_layout(tmp_path: Path) -> None:
    evaluation = _evaluation("m1", {0: (29, 33), 1: (198, 201), 2: (192, 202)})
    trained = {m.key: "m1" for m in study.STUDY_MODELS}
    rows = reproduce_report.compare_with_study({"m1": evaluation}, trained)
    result = reproduce.ReproduceResult(
        run_dir=tmp_path,
        settings={
            "preset": "paper",
            "study_protocol": True,
            "dataset": "d",
            "source": {},
            "image_size": 224,
            "epochs": 30,
            "batch_size": 32,
            "learning_rate": 0.001,
            "seed": 42,
            "augment_factor": 5,
        },
        preset=study.preset("paper"),
        rows=rows,
        report=EvaluationReport([evaluation], [], [], 0.95, 0, 42),
        data_source={"kind": "kaggle", "release": 1},
    )
    assert reproduce_report.comparison_header() == [
        "Model",
        "ours: Total",
        "ours: COVID-19",
        "ours: normal",
        "ours: viral pneumonia",
        "study: Total",
        "study: Covid-19",
        "study: Healthy",
        "study: Pneumonia",
    ]
    first = reproduce_report.comparison_rows(result)[0]
    assert first == [
        "Baseline, no augmentation",
        "96.10% (419/436) [93.8-97.6]",
        "87.88% (29/33) [72.7-95.2]",
        "98.51% (198/201) [95.7-99.5]",
        "95.05% (192/202) [91.1-97.3]",
        "95.41% inside",
        "78.78% inside",
        "98.50% inside",
        "95.04% inside",
    ]
    assert result.inside() == (12, 12)
    markdown = reproduce_report.to_markdown(result, dataset=None)
    assert "| Model | ours: Total |" in markdown
    assert "12 of 12 published figures lie inside our 95 % intervals" in markdown
    for caveat in ("33 images", "paediatric", "not a diagnostic device"):
        assert caveat in markdown
    assert "NOT the study's protocol" not in markdown  # paper preset, study data


def test_run_state_refuses_other_settings_and_restarts(tmp_path: Path) -> None:
    settings = {"preset": "quick", "epochs": 5}
    state = run_folder.RunState.open(tmp_path, settings, restart=False)
    state.finish("augment", before={}, after={})
    again = run_folder.RunState.open(tmp_path, settings, restart=False)
    assert again.step("augment") is not None
    with pytest.raises(UsageError, match="differs in: epochs"):
        run_folder.RunState.open(tmp_path, {"preset": "quick", "epochs": 6}, restart=False)
    fresh = run_folder.RunState.open(tmp_path, {"preset": "quick", "epochs": 6}, restart=True)
    assert fresh.step("augment") is None
    # A restart gives new model names, so old models are never adopted as the new run's.
    assert run_folder.model_name(fresh, "baseline-aug") != run_folder.model_name(
        again, "baseline-aug"
    )
    assert run_folder.model_name(again, "baseline-aug").startswith("baseline-aug-quick-")


def test_reproduce_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="unknown preset"):
        reproduce.run(reproduce.ReproduceOptions(preset="nope"))
    with pytest.raises(UsageError):
        reproduce.run(
            reproduce.ReproduceOptions(preset="quick", from_zip=tmp_path / "a.zip", url="http://x")
        )
