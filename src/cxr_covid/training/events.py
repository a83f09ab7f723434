"""What a training run tells its caller: the set-up, each epoch, the result, an interrupt."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cxr_covid.errors import EXIT_INTERRUPTED, CxrCovidError
from cxr_covid.models import store


@dataclass(frozen=True)
class EpochReport:
    """Sent to the `on_epoch` hook after every completed (and checkpointed) epoch."""

    run_id: str
    epoch: int  # 1-based
    epochs: int
    loss: float
    accuracy: float
    val_loss: float
    val_accuracy: float
    seconds: float
    eta_seconds: float
    best_epoch: int
    best_val_accuracy: float
    improved: bool
    stopping_early: bool = False


@dataclass(frozen=True)
class RunInfo:
    """Sent to the `on_start` hook once before the first epoch: what is trained, on what."""

    run_id: str
    architecture: str
    dataset: str
    train_images: int
    val_images: int
    classes: list[str]
    first_epoch: int  # 1-based; > 1 when resuming
    epochs: int
    steps_per_epoch: int
    strategy: str
    replicas: int
    device: str
    precision: str
    notes: list[str] = field(default_factory=list)
    precision_reason: str = ""


@dataclass
class TrainResult:
    model: store.StoredModel
    record: store.ModelRecord
    best_epoch: int
    best_val_accuracy: float
    seconds: float
    images_per_second: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.id,
            "path": str(self.model.root),
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "record": self.record.to_dict(),
        }


class TrainingInterrupted(CxrCovidError):
    """Ctrl-C during training; the run folder holds the last completed epoch."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, run_id: str, epochs_done: int) -> None:
        self.run_id = run_id
        self.epochs_done = epochs_done
        super().__init__(
            f"training interrupted after {epochs_done} completed epoch(s); continue with "
            f"`cxr-covid train --resume {run_id}`"
        )


# Typed hooks beside the Reporter, for callers that show per-epoch figures (the CLI's table,
# reproduce's log) or the run's set-up; the steps within an epoch and the cache building go
# through the Reporter.
EpochHook = Callable[[EpochReport], None]
StartHook = Callable[[RunInfo], None]
