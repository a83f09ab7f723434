"""Scoring, predicting and explaining several models in one process (reproduce, audit,
`eval --group`) traces each model's compiled step once, and TensorFlow warns of no retracing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cxr_covid.inference.batches import compiled_predict
from cxr_covid.inference.gradcam import GradCamExplainer
from cxr_covid.inference.scoring import Scorer
from cxr_covid.models import store
from tests.predict.conftest import TINY_SIZE, save_tiny_model


@pytest.fixture(scope="module")
def six_models(tmp_path_factory: pytest.TempPathFactory) -> list[store.StoredModel]:
    home = tmp_path_factory.mktemp("six")
    return [store.StoredModel(save_tiny_model(home / str(seed), seed=seed)) for seed in range(6)]


def _retracing(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "retracing" in r.getMessage()]


def test_alternating_models_trace_once_each(
    six_models: list[store.StoredModel], caplog: pytest.LogCaptureFixture
) -> None:
    loaded = [(s.load(), s.record()) for s in six_models]
    pixels = np.zeros((2, TINY_SIZE, TINY_SIZE, 3), np.uint8)
    caplog.set_level(logging.WARNING, logger="tensorflow")
    for _ in range(3):  # eval --group and the audit go back and forth between models
        for model, record in loaded:
            Scorer(model, record)(pixels)
            compiled_predict(model)(pixels)
            for size in (1, 3):
                Scorer(model, record)(np.zeros((size, TINY_SIZE, TINY_SIZE, 3), np.uint8))
    assert _retracing(caplog) == []


def test_explaining_several_models_does_not_warn(
    six_models: list[store.StoredModel], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tensorflow")
    pixels = np.zeros((TINY_SIZE, TINY_SIZE, 3), np.uint8)
    for stored in six_models:
        explainer = GradCamExplainer(stored.load(), stored.record().last_conv_layer or "")
        explainer(pixels)
    assert _retracing(caplog) == []
