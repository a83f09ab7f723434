"""Training options: bugs found by walking the documented commands as a new user would."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

runner = CliRunner()


def test_train_config_refuses_a_seed_keras_cannot_take() -> None:
    from cxr_covid.errors import UsageError
    from cxr_covid.training.run import TrainConfig

    for seed in (-1, 2**32):
        with pytest.raises(UsageError, match="--seed"):
            TrainConfig(seed=seed).validate()
    TrainConfig(seed=0).validate()
