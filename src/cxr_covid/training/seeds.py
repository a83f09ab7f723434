"""`train --seeds N`: one recipe trained N times (seeds --seed + i) as a named group.

    result = train_group(TrainConfig(arch="baseline", seed=42), seeds=5)

The models are `<group>-s<seed>` and record the group in their training options, so
`cxr-covid eval --group <group>` evaluates them together (mean, sd, range, interval). The
group is resumable like a single run: rerunning with the same `--name` keeps the finished
seeds, continues an interrupted one from its last epoch, and trains the rest; so a 3-seed
group is extended to 5 by rerunning with `--seeds 5`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cxr_covid.data.dataset import check_name
from cxr_covid.errors import UsageError
from cxr_covid.models import store
from cxr_covid.models.records import recipe_of_training
from cxr_covid.progress import NULL, Reporter


def recipe_differences(training: dict[str, Any], config: Any) -> list[str]:
    """The recipe options (records.RECIPE_DEFAULTS) in which a stored model's `training`
    record differs from `config`; an option older records lack counts as its default."""
    stored, wanted = recipe_of_training(training), recipe_of_training(config.to_dict())
    return [name for name in wanted if stored[name] != wanted[name]]


def seeds_of(first: int, count: int) -> list[int]:
    """The seeds of an N-seed run: --seed, --seed + 1, ... (so 3 seeds extend to 5)."""
    if count < 1:
        raise UsageError(f"--seeds must be at least 1 (got {count})")
    if first + count - 1 > 2**32 - 1:
        raise UsageError(f"--seed {first} + {count} seeds goes past 4294967295")
    return [first + i for i in range(count)]


def seed_model_id(group: str, seed: int) -> str:
    return check_name(f"{group}-s{seed}")


@dataclass(frozen=True)
class SeedModel:
    seed: int
    model: str
    best_epoch: int
    best_val_accuracy: float
    val_images: int
    reused: bool  # trained by an earlier run of the same command

    def to_dict(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "model": self.model,
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "val_images": self.val_images,
            "reused": self.reused,
        }


@dataclass
class GroupTrainResult:
    group: str
    models: list[SeedModel] = field(default_factory=list)

    def val_spread(self) -> dict[str, float | None]:
        values = np.array([m.best_val_accuracy for m in self.models], dtype=np.float64)

        def finite(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "mean": finite(float(values.mean())) if values.size else None,
            "sd": finite(float(values.std(ddof=1))) if values.size > 1 else None,
            "min": finite(float(values.min())) if values.size else None,
            "max": finite(float(values.max())) if values.size else None,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "seeds": [m.seed for m in self.models],
            "models": [m.to_dict() for m in self.models],
            "best_val_accuracy": self.val_spread(),
            "next": f"cxr-covid eval --group {self.group}",
        }


def default_group(config: Any) -> str:
    """`<arch>[-aug]-<dataset>-<time>`, short enough for the `-s<seed>` suffix."""
    from cxr_covid.data.dataset import resolve_dataset

    dataset = resolve_dataset(config.dataset).name
    base = store.new_model_id(config.arch, dataset, config.augment)
    return base[:50].rstrip("-._")


def _check_reusable(model_id: str, group: str, seed: int, config: Any) -> store.ModelRecord:
    record = store.StoredModel(store.model_dir(model_id)).record()
    t = record.training
    different = recipe_differences(t, config)
    if t.get("group") != group or t.get("seed") != seed or different:
        why = ", ".join(different) or "group/seed"
        raise UsageError(
            f"model {model_id!r} exists but is not seed {seed} of this recipe (differs in: "
            f"{why}); choose another --name"
        )
    return record


def _check_resumable(model_id: str, seed: int, started: Any, config: Any) -> None:
    """An interrupted seed is resumed with the options it was started with: refuse when they
    are another recipe than the group's now."""
    different = recipe_differences(started.to_dict(), config)
    if different:
        raise UsageError(
            f"the interrupted run {model_id!r} is not seed {seed} of this recipe (differs in: "
            f"{', '.join(different)}); finish it with `cxr-covid train --resume {model_id}` "
            "or choose another --name"
        )


def train_group(
    config: Any,
    seeds: int,
    *,
    reporter: Reporter = NULL,
    on_start: Callable[[Any], None] | None = None,
    on_epoch: Callable[[Any], None] | None = None,
    on_model: Callable[[int, str, str], None] | None = None,
) -> GroupTrainResult:
    """Train (or reuse, or resume) one model per seed; `config.name` names the group.

    `on_model(seed, model id, action)` is told before each seed: action is "reuse",
    "resume" or "train". The seeds run as one grid (training/grid.py)."""
    from cxr_covid.training import grid

    config.validate()
    group = check_name(config.name) if config.name else default_group(config)
    # Pin the dataset, so a rerun that extends the group cannot drift to a newer dataset.
    if config.dataset is None:
        from cxr_covid.data.dataset import resolve_dataset

        config = replace(config, dataset=resolve_dataset(None).name)
    options = replace(config, group=group).to_dict()
    jobs = [
        grid.Job(seed_model_id(group, seed), options, seed) for seed in seeds_of(config.seed, seeds)
    ]

    def check_reusable(job: grid.Job, _record: store.ModelRecord) -> None:
        _check_reusable(job.name, group, job.seed, config)

    hooks = grid.GridHooks(
        on_job=(lambda job, action: on_model(job.seed, job.name, action)) if on_model else None,
        on_start=(lambda _job, info: on_start(info)) if on_start else None,
        on_epoch=(lambda _job, report: on_epoch(report)) if on_epoch else None,
        check_reusable=check_reusable,
        check_resumable=lambda job, started: _check_resumable(job.name, job.seed, started, config),
    )
    result = GroupTrainResult(group)
    for done in grid.run_grid(
        jobs, None, reporter, hooks, task=grid.GRID_TASK if len(jobs) > 1 else None
    ):
        result.models.append(
            SeedModel(
                done.job.seed,
                done.model_id,
                done.best_epoch,
                done.best_val_accuracy,
                done.val_images,
                reused=done.reused,
            )
        )
    return result
