"""A grid of trainings: named jobs (train options + seed), run one after another, resumable.

    jobs = [Job(f"base-s{seed}", {"arch": "baseline", "dataset": "dev"}, seed) for seed in (1, 2)]
    results = run_grid(jobs, GridFolder(Path("runs/mine")), reporter)

What is done is never redone: a job whose model is in the store (or that the grid's state
records) is reused; a job interrupted mid-training continues from its last completed epoch
(`training.run.resume`); the rest are trained. Ctrl-C raises `TrainingInterrupted` and
leaves everything as it was, so rerunning the same grid continues where it stopped.

`estimate` times a few training steps per architecture and multiplies by the steps each job
will take. `reproduce` (study rows x seeds), `train --seeds` (training/seeds.py) and the
audit's lung-blind control run on it; so will `compare` (recipes x seeds). Commands sit
above this module; it never imports them (an import-linter contract checks it).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from cxr_covid import atomic, classes
from cxr_covid.errors import DataError
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter
from cxr_covid.training import run_folder
from cxr_covid.training.config import TrainConfig
from cxr_covid.training.events import EpochReport, RunInfo, TrainResult
from cxr_covid.training.precision import in_auto_precision

REUSE = "reuse"  # the model exists: nothing to do
RESUME = "resume"  # an interrupted run folder exists: continue it
TRAIN = "train"  # nothing yet: train from scratch
GRID_TASK = "trainings"  # the whole grid's progress, one step per job
GRID_FILE = "grid.json"


@dataclass(frozen=True)
class Job:
    """One training of the grid: its model id, TrainConfig options, and its seed."""

    name: str  # the model id it trains into (and the run folder's name while training)
    options: dict[str, Any]  # TrainConfig fields; `name` and `seed` come from the job
    seed: int
    label: str = ""  # how messages name it (default: the model id)

    def config(self) -> TrainConfig:
        return TrainConfig.from_dict({**self.options, "seed": self.seed, "name": self.name})

    @property
    def title(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class JobResult:
    """A finished job: the model it left in the store, and how it got there."""

    job: Job
    model_id: str
    action: str  # REUSE, RESUME or TRAIN
    best_epoch: int
    best_val_accuracy: float
    val_images: int

    @property
    def reused(self) -> bool:
        return self.action == REUSE


class GridState(Protocol):
    """Where a grid records its finished jobs (beside the store and the run folders)."""

    def done(self, job: Job) -> str | None:
        """The model id recorded for a finished job, or None."""

    def finish(self, job: Job, model_id: str) -> None:
        """Record a finished job (atomically: an interrupt leaves the old record)."""


class StoreState:
    """No state of its own: a job is done when its model is in the store."""

    def done(self, job: Job) -> str | None:
        return None

    def finish(self, job: Job, model_id: str) -> None:
        return None


class GridFolder:
    """`<folder>/grid.json`: job name -> model id, rewritten atomically after every job."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / GRID_FILE

    def _read(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {"jobs": {}}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataError(f"{self.path}: unreadable grid state ({exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise DataError(f"{self.path}: not a grid state (no 'jobs' table)")
        return data

    def done(self, job: Job) -> str | None:
        found = self._read()["jobs"].get(job.name)
        return str(found["model"]) if isinstance(found, dict) and "model" in found else None

    def finish(self, job: Job, model_id: str) -> None:
        data = self._read()
        data["jobs"][job.name] = {"model": model_id, "seed": job.seed, "finished": store.now_iso()}
        self.folder.mkdir(parents=True, exist_ok=True)
        atomic.write_json(self.path, data)


@dataclass
class GridHooks:
    """What a command hears about, and may refuse, job by job."""

    on_job: Callable[[Job, str], None] | None = None  # before each job, with its action
    on_start: Callable[[Job, RunInfo], None] | None = None
    on_epoch: Callable[[Job, EpochReport], None] | None = None
    on_done: Callable[[JobResult], None] | None = None
    # Refuse (raise UsageError) a stored model or an interrupted run that is not this job's.
    check_reusable: Callable[[Job, store.ModelRecord], None] | None = None
    check_resumable: Callable[[Job, TrainConfig], None] | None = None


@dataclass(frozen=True)
class PlannedJob:
    job: Job
    action: str
    model_id: str  # the stored model for REUSE, else the job's name


def plan(jobs: Sequence[Job], state: GridState | None = None) -> list[PlannedJob]:
    """What running the grid would do for each job, without training anything. A model in
    the store that the state does not record yet (the grid stopped just after saving it) is
    recorded as done now."""
    state = state or StoreState()
    planned = []
    for job in jobs:
        recorded = state.done(job)
        if recorded is not None and store.model_dir(recorded).is_dir():
            planned.append(PlannedJob(job, REUSE, recorded))
        elif store.model_dir(job.name).is_dir():
            state.finish(job, job.name)
            planned.append(PlannedJob(job, REUSE, job.name))
        elif (run_folder.run_dir(job.name) / run_folder.STATE_FILE).is_file():
            planned.append(PlannedJob(job, RESUME, job.name))
        else:
            planned.append(PlannedJob(job, TRAIN, job.name))
    return planned


@dataclass
class Trainer:
    """The two training calls (tests pass fakes)."""

    train: Callable[..., TrainResult] | None = None
    resume: Callable[..., TrainResult] | None = None

    def functions(self) -> tuple[Callable[..., TrainResult], Callable[..., TrainResult]]:
        from cxr_covid.training import run as training

        return self.train or training.train, self.resume or training.resume


def run_grid(
    jobs: Sequence[Job],
    state: GridState | None = None,
    reporter: Reporter = NULL,
    hooks: GridHooks | None = None,
    *,
    task: str | None = GRID_TASK,
    trainer: Trainer | None = None,
) -> list[JobResult]:
    """Run every job (reuse, resume or train), in order; one result per job.

    `task` names the grid-wide progress task (one step per job; None: none). Each job's
    own epochs and steps reach `reporter` through training as usual."""
    state = state or StoreState()
    hooks = hooks or GridHooks()
    task = task if jobs else None  # nothing to do: no empty bar
    if task:
        reporter.start(task, total=len(jobs), unit="trainings")
    results = []
    for n, planned in enumerate(plan(jobs, state)):
        result = _run_job(planned, reporter, hooks, trainer or Trainer())
        if result.action != REUSE:
            state.finish(planned.job, result.model_id)
        results.append(result)
        if hooks.on_done:
            hooks.on_done(result)
        if task:
            reporter.advance(task, n + 1)
    if task:
        reporter.finish(task)
    return results


def _run_job(
    planned: PlannedJob, reporter: Reporter, hooks: GridHooks, trainer: Trainer
) -> JobResult:
    job, action = planned.job, planned.action
    if action == REUSE:
        record = store.StoredModel(store.model_dir(planned.model_id)).record()
        if hooks.on_job:
            hooks.on_job(job, action)
        if hooks.check_reusable:
            hooks.check_reusable(job, record)
        return JobResult(
            job,
            planned.model_id,
            REUSE,
            int(record.metrics.get("best_epoch", 0)),
            float(record.metrics.get("best_val_accuracy", math.nan)),
            int(record.dataset.get("val_images", 0)),
        )
    train, resume = trainer.functions()
    if action == RESUME and hooks.check_resumable:
        hooks.check_resumable(job, run_folder.run_config(job.name))
    if hooks.on_job:
        hooks.on_job(job, action)
    epoch_hooks: dict[str, Any] = {
        "on_start": (lambda info: hooks.on_start(job, info)) if hooks.on_start else None,
        "on_epoch": (lambda report: hooks.on_epoch(job, report)) if hooks.on_epoch else None,
    }
    if action == RESUME:
        trained = resume(job.name, reporter, **epoch_hooks)
    else:
        trained = train(job.config(), reporter, **epoch_hooks)
    return JobResult(
        job,
        str(trained.model.id),
        action,
        trained.best_epoch,
        trained.best_val_accuracy,
        int(trained.record.dataset.get("val_images", 0)),
    )


# --- the time estimate ------------------------------------------------------------------------


@dataclass(frozen=True)
class GridEstimate:
    seconds_per_step: dict[str, float]  # architecture -> measured seconds per training step
    steps: dict[str, int]  # job name -> training steps (epochs x steps per epoch)
    seconds: dict[str, float]  # job name -> estimated seconds
    cpus: int = field(default_factory=lambda: os.cpu_count() or 1)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@in_auto_precision  # timed in the precision its training will use
def measure_step_seconds(arch: str, image_size: int, batch_size: int, steps: int = 3) -> float:
    """Seconds per training step of a fresh model on random pixels, after one warm-up step."""
    import keras
    import numpy as np

    from cxr_covid import models

    model = models.build(arch, image_size, len(classes.STUDY_CLASSES))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch_size, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, 3, size=(batch_size,))
    model.train_on_batch(x, y)  # builds and traces the step: not representative
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def estimate(
    jobs: Sequence[Job],
    images: Callable[[Job], tuple[int, int]],
    reporter: Reporter = NULL,
    step_cache: dict[str, float] | None = None,
    measure: Callable[[str, int, int], float] = measure_step_seconds,
) -> GridEstimate:
    """Measured seconds per training step x the steps each job will take.

    `images(job)` gives the job's (training images, validation images). Steps are timed
    once per architecture (`step_cache` keeps them across calls)."""
    per_step = step_cache if step_cache is not None else {}
    steps: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for job in jobs:
        config = job.config()
        if config.arch not in per_step:
            reporter.message(f"estimate: timing a few {config.arch} steps...")
            per_step[config.arch] = measure(config.arch, config.image_size, config.batch_size)
        train_images, val_images = images(job)
        batch, epochs = config.batch_size, config.epochs
        n_steps = math.ceil(train_images / batch) * epochs
        steps[job.name] = n_steps
        # Validation each epoch: a forward pass only, roughly a third of a training step.
        val_steps = math.ceil(val_images / batch) * epochs
        seconds[job.name] = per_step[config.arch] * (n_steps + val_steps / 3)
    return GridEstimate(dict(per_step), steps, seconds, os.cpu_count() or 1)


__all__ = [
    "GridEstimate",
    "GridFolder",
    "GridHooks",
    "GridState",
    "Job",
    "JobResult",
    "StoreState",
    "estimate",
    "plan",
    "run_grid",
]
