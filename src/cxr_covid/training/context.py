"""One training run as every level of the loop sees it, and the rows it trains on."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_covid.data.dataset import Dataset
from cxr_covid.progress import NULL, Reporter
from cxr_covid.training.config import TrainConfig
from cxr_covid.training.events import EpochHook, StartHook
from cxr_covid.training.run_folder import RunState, run_dir


@dataclass
class RunContext:
    """One training run as every level of the loop sees it: what to train, where it stands,
    and who hears about it (instead of the same arguments passed down three levels)."""

    config: TrainConfig
    run_id: str
    dataset: Dataset
    state: RunState
    checkpoint: Path | None  # the run's checkpoint when resuming from a completed epoch
    reporter: Reporter = NULL
    on_start: StartHook | None = None
    on_epoch: EpochHook | None = None

    @property
    def folder(self) -> Path:
        return run_dir(self.run_id)


@dataclass(frozen=True)
class Rows:
    """The dataset's rows, checked for training: the whole manifest and the two splits."""

    all: list[Any]
    digest: str
    classes: list[str]
    train: list[Any]
    val: list[Any]
    augmented: int


def stopped_early(config: TrainConfig, state: RunState) -> bool:
    return config.early_stopping is not None and state.wait >= config.early_stopping
