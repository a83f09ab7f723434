"""The Keras callback that keeps, per epoch, the history, the best weights, early stopping,
the run folder's checkpoint and the caller's epoch report.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid.models.records import HISTORY_COLUMNS
from cxr_covid.training.context import RunContext, stopped_early
from cxr_covid.training.distribute import Placement
from cxr_covid.training.events import EpochReport
from cxr_covid.training.run_folder import CHECKPOINT_FILE, RunState, write_run


class _EpochTracker:
    """Per epoch: history, best weights, early stopping, the checkpoint, the report.

    Plain Python; `tracker_class` mixes it with Keras's Callback, which sets `model`."""

    model: Any

    def __init__(
        self,
        run: RunContext,
        best_weights: list[np.ndarray] | None,
        placement: Placement,
        steps: int,
        train_images: int,
        started: float,
    ) -> None:
        super().__init__()
        self._mark = started  # wall time is added to state.total_seconds epoch by epoch
        self.run = run
        self.run_id, self.config, self.state = run.run_id, run.config, run.state
        self.best_weights = best_weights
        self.placement, self.steps, self.train_images = placement, steps, train_images
        self.folder = run.folder
        self._task = ""
        self._epoch_start = 0.0
        self._train_end = 0.0
        self._epochs_this_process = 0
        self.first_epoch_train_time = 0.0
        self.saved_epochs = run.state.epochs_done

    def finish_timing(self) -> None:
        now = time.perf_counter()
        self.state.total_seconds += now - self._mark
        self._mark = now
        if self.state.timed_images == 0 and self.first_epoch_train_time > 0:
            self.state.train_seconds += self.first_epoch_train_time
            self.state.timed_images += self.train_images

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._epoch_start = time.perf_counter()
        self._train_end = 0.0
        self._task = f"Epoch {epoch + 1}/{self.config.epochs}"
        self.run.reporter.start(self._task, total=self.steps, unit="steps")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.run.reporter.advance(self._task, batch + 1)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.run.reporter.finish(self._task)
        now = time.perf_counter()
        seconds = now - self._epoch_start
        self._add_timing(now)
        values = _epoch_values(logs or {}, seconds)
        improved = _keep_epoch(self.state, values, epoch + 1)
        if improved:
            self.best_weights = [np.array(w) for w in self.model.get_weights()]
        stopping = stopped_early(self.config, self.state)
        if stopping:
            self.model.stop_training = True
        self._checkpoint()
        if self.run.on_epoch:
            self.run.on_epoch(
                _epoch_report(self.run, epoch + 1, values, seconds, improved, stopping)
            )

    def _add_timing(self, now: float) -> None:
        """Wall time into total_seconds; the training phase into the throughput figure."""
        state = self.state
        state.total_seconds += now - self._mark
        self._mark = now
        self._epochs_this_process += 1
        # The first epoch of a process includes graph tracing: keep it out of the
        # throughput figure unless it is the only epoch there is (see `finish_timing`).
        train_time = (self._train_end or now) - self._epoch_start
        if self._epochs_this_process == 1:
            self.first_epoch_train_time = train_time
        else:
            state.train_seconds += train_time
            state.timed_images += self.train_images

    def _checkpoint(self) -> None:
        if self.placement.is_chief:
            write_run(
                self.folder, self.run_id, self.config, self.state, self.model, self.best_weights
            )
            self.saved_epochs = self.state.epochs_done
        else:
            # Saving inside a multi-worker strategy runs collective ops, so every worker
            # must save; the others write to a scratch folder that is thrown away.
            scratch = Path(tempfile.mkdtemp(prefix="cxr-covid-worker-"))
            try:
                self.model.save(scratch / CHECKPOINT_FILE)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)


@functools.cache
def tracker_class() -> type:
    """The Keras callback class, made on first use so importing this module (for option
    checks and --summary errors) does not import Keras."""
    import keras

    return type("_Tracker", (_EpochTracker, keras.callbacks.Callback), {})


def _epoch_values(logs: dict[str, Any], seconds: float) -> dict[str, float]:
    return {
        "loss": float(logs.get("loss", float("nan"))),
        "accuracy": float(logs.get("accuracy", float("nan"))),
        "val_loss": float(logs.get("val_loss", float("nan"))),
        "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
        "seconds": round(seconds, 3),
    }


def _keep_epoch(state: RunState, values: dict[str, float], epoch: int) -> bool:
    """Append the epoch to the history; True when it is the best so far (early stopping's
    wait restarts), else the wait grows by one."""
    for key in HISTORY_COLUMNS:
        state.history.setdefault(key, []).append(values[key])
    state.epochs_done = epoch
    improved = values["val_accuracy"] > state.best_val_accuracy
    if improved:
        state.best_val_accuracy = values["val_accuracy"]
        state.best_val_loss = values["val_loss"]
        state.best_epoch = epoch
        state.wait = 0
    else:
        state.wait += 1
    return improved


def _epoch_report(
    run: RunContext,
    epoch: int,
    values: dict[str, float],
    seconds: float,
    improved: bool,
    stopping: bool,
) -> EpochReport:
    state, config = run.state, run.config
    durations = state.history["seconds"]
    recent = durations[-3:]  # the ETA follows the last three epochs
    remaining = 0 if stopping else config.epochs - state.epochs_done
    return EpochReport(
        run_id=run.run_id,
        epoch=epoch,
        epochs=config.epochs,
        loss=values["loss"],
        accuracy=values["accuracy"],
        val_loss=values["val_loss"],
        val_accuracy=values["val_accuracy"],
        seconds=seconds,
        eta_seconds=remaining * (sum(recent) / len(recent)),
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        improved=improved,
        stopping_early=stopping,
    )
