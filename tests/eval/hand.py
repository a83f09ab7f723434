"""A `ModelEvaluation` from hand-chosen probabilities (no model), for the report tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cxr_covid.evaluation.metrics import compute_metrics
from cxr_covid.evaluation.results import ModelEvaluation
from cxr_covid.evaluation.testsets import EvalImages


def hand_evaluation(
    model_id: str,
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: Sequence[str],
    bootstrap: int,
) -> ModelEvaluation:
    """The evaluation of `probabilities` on a test split named `hand`, images /x/0.png..."""
    metrics = compute_metrics(y_true, probabilities, list(classes), bootstrap=bootstrap, seed=1)
    paths = [f"/x/{i}.png" for i in range(len(y_true))]
    return ModelEvaluation(
        model_id=model_id,
        architecture="baseline",
        augmented=False,
        image_size=32,
        classes=list(classes),
        test_set=EvalImages(
            paths=tuple(paths),  # type: ignore[arg-type]
            labels=tuple(classes[i] for i in y_true),
            split="test",
            source="dataset hand, test split",
            dataset="hand",
        ),
        **metrics.by_name(),
        paths=paths,  # type: ignore[arg-type]
        y_true=y_true,
        probabilities=probabilities,
    )
