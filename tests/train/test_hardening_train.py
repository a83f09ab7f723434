"""Hardening issue, items 7, 8, 13 and 14: names, ranges and resume, as a careless or hostile
user meets them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli import app
from cxr_covid.errors import EXIT_DATA, EXIT_MODEL, EXIT_USAGE, ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.training import run as training
from cxr_covid.training.run import EpochReport, RunInfo, TrainConfig
from tests.helpers import build_dataset

runner = CliRunner()


def _config(**overrides: object) -> TrainConfig:
    base: dict[str, object] = {
        "dataset": "blobs",
        "epochs": 3,
        "batch_size": 4,
        "image_size": 16,
        "seed": 3,
        "deterministic": True,
    }
    base.update(overrides)
    return TrainConfig(**base)  # type: ignore[arg-type]


def _stop_after(epoch: int) -> training.Progress:
    """A progress callback that presses Ctrl-C once `epoch` is checkpointed."""

    def stop(report: EpochReport) -> None:
        if report.epoch == epoch:
            raise KeyboardInterrupt

    return stop


def _checkpoint_state(home: Path, run_id: str) -> list[np.ndarray]:
    """Weights and optimizer slots of a run's last checkpoint."""
    import keras

    model = keras.saving.load_model(home / "runs" / run_id / "checkpoint.keras")
    return [np.asarray(w) for w in model.get_weights()] + [
        np.asarray(v) for v in model.optimizer.variables
    ]


# --- item 14: resume is bit-identical -----------------------------------------------------


def test_resume_after_an_interrupt_gives_the_uninterrupted_weights(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=6, size=16)
    # Uninterrupted: three epochs, stopped right after the third is checkpointed, so the
    # run folder holds the final weights and optimizer state (the store keeps the best).
    with pytest.raises(training.TrainingInterrupted):
        training.train(_config(name="whole"), on_epoch=_stop_after(3))
    # Interrupted after one epoch, then resumed to three.
    with pytest.raises(training.TrainingInterrupted):
        training.train(_config(name="cut"), on_epoch=_stop_after(1))
    with pytest.raises(training.TrainingInterrupted):
        training.resume("cut", on_epoch=_stop_after(3))

    whole, cut = _checkpoint_state(cxr_home, "whole"), _checkpoint_state(cxr_home, "cut")
    assert len(whole) == len(cut)
    assert all(np.array_equal(a, b) for a, b in zip(whole, cut, strict=True))
    history = [
        json.loads((cxr_home / "runs" / run / "state.json").read_text())["history"]["loss"]
        for run in ("whole", "cut")
    ]
    assert history[0] == history[1]


# --- item 7: a name taken while training ---------------------------------------------------


def _take_name(home: Path, model_id: str) -> None:
    """What another command does meanwhile: save a model under `model_id`."""
    from cxr_covid.data.images import Preprocessing
    from tests.predict.conftest import save_tiny_model

    root = save_tiny_model(home.parent / "elsewhere", size=16)
    record = store.StoredModel(root).record()
    record.id = model_id
    record.preprocessing = Preprocessing(image_size=16).to_dict()
    store.save(store.StoredModel(root).load(), record)


def test_a_name_taken_while_training_keeps_the_run_and_resume_can_rename(
    cxr_home: Path,
) -> None:
    build_dataset(cxr_home, "blobs", per_class=6, size=16)

    def take_it(report: EpochReport) -> None:
        if report.epoch == 2:
            _take_name(cxr_home, "mine")

    with pytest.raises(ModelError, match="--resume mine --name NEW"):
        training.train(_config(epochs=2, name="mine"), on_epoch=take_it)
    assert json.loads((cxr_home / "runs" / "mine" / "state.json").read_text())["epochs_done"] == 2
    assert store.resolve("mine").record().classes == list(classes.STUDY_CLASSES)

    # Resuming under the taken name fails before any training, and says how to go on.
    again = runner.invoke(app, ["train", "--resume", "mine"])
    assert again.exit_code == EXIT_MODEL, again.output
    assert "--name NEW" in again.output
    bad = runner.invoke(app, ["train", "--resume", "mine", "--name", "../x"])
    assert bad.exit_code == EXIT_USAGE, bad.output

    done = runner.invoke(app, ["train", "--resume", "mine", "--name", "mine-2", "--json"])
    assert done.exit_code == 0, done.output
    record = store.resolve("mine-2").record()
    assert record.id == "mine-2"
    assert record.training["epochs_run"] == 2
    assert len(record.history.loss) == 2
    assert not (cxr_home / "runs" / "mine").exists()
    assert not (cxr_home / "runs" / "mine-2").exists()


def test_resume_refuses_a_name_that_is_taken(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=6, size=16)
    with pytest.raises(training.TrainingInterrupted):
        training.train(_config(epochs=2, name="run"), on_epoch=_stop_after(1))
    _take_name(cxr_home, "other")
    with pytest.raises(ModelError, match="already exists"):
        training.resume("run", name="other")
    assert (cxr_home / "runs" / "run" / "state.json").is_file()  # untouched


# --- item 8: absurd numbers, and nothing left behind --------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--epochs", "99999999999999999999"], "--epochs"),
        (["--epochs", "10001"], "--epochs"),
        (["--batch-size", "99999999999"], "--batch-size"),
        (["--image-size", "1000000"], "--image-size"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "99999999999999999999"], "--seed"),
        (["--early-stopping", "0"], "--early-stopping"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--learning-rate", "inf"], "--learning-rate"),
        (["--learning-rate", "5"], "--learning-rate"),
        (["--name", ""], "invalid name"),
    ],
)
def test_absurd_numbers_are_usage_errors_that_leave_nothing(
    cxr_home: Path, argv: list[str], message: str
) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)
    args = ["train", "--dataset", "blobs", "--image-size", "16", "--name", "n1", *argv]
    result = runner.invoke(app, args)
    assert result.exit_code == EXIT_USAGE, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (cxr_home / "runs").exists()
    assert not (cxr_home / "models").exists()


def test_core_checks_the_same_ranges() -> None:
    for bad in (
        {"epochs": 10**20},
        {"batch_size": 10**9},
        {"image_size": 4096},
        {"seed": 2**32},
        {"learning_rate": float("nan")},
        {"early_stopping": 0},
    ):
        with pytest.raises(UsageError):
            _config(**bad).validate()


def test_a_failure_before_the_first_epoch_leaves_no_run_folder(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=4, size=16)

    def broken(info: RunInfo) -> None:
        raise RuntimeError("display failed")

    with pytest.raises(RuntimeError):
        training.train(_config(name="early"), on_start=broken)
    assert not (cxr_home / "runs" / "early").exists()

    def ctrl_c(info: RunInfo) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        training.train(_config(name="early"), on_start=ctrl_c)
    assert not (cxr_home / "runs" / "early").exists()
    # The name is free: the same run can start again.
    assert training.train(_config(name="early", epochs=1)).model.id == "early"


# --- item 13: a dataset of one class ------------------------------------------------------


def test_a_one_class_dataset_is_refused_before_anything_is_written(cxr_home: Path) -> None:
    build_dataset(cxr_home, "one", per_class=4, size=16, labels=(classes.COVID,))
    result = runner.invoke(app, ["train", "--dataset", "one", "--image-size", "16"])
    assert result.exit_code == EXIT_DATA, result.output
    assert "two classes" in result.output
    assert not (cxr_home / "runs").exists()
