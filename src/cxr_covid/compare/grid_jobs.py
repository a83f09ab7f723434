"""What `compare` trains: recipes x seeds as run-grid jobs, its run folder, and the estimate.

Model ids are `cmp-<recipe>-<hash>-s<seed>`, the hash covering the dataset and its split, the
shared settings and the recipe's options: the same recipe at the same settings is the same
model, so rerunning a comparison (or another comparison sharing a recipe) reuses it, and a
changed setting can never pick up a stale model.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_covid import paths
from cxr_covid.compare.recipes import Recipe
from cxr_covid.data.dataset import check_name
from cxr_covid.errors import DataError, UsageError
from cxr_covid.models import store
from cxr_covid.training import grid
from cxr_covid.training.seeds import recipe_differences, seeds_of

DEFAULT_SEEDS = 3
DEFAULT_IMAGE_SIZE = 128
DEFAULT_EPOCHS = 20


@dataclass
class CompareOptions:
    dataset: str | None = None
    recipes: list[Recipe] = field(default_factory=list)
    seeds: int = DEFAULT_SEEDS
    first_seed: int = 42
    external: list[Path] = field(default_factory=list)
    image_size: int = DEFAULT_IMAGE_SIZE
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = 32
    audit: bool = False
    audit_control_epochs: int = 3
    out: Path | None = None
    class_map: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        from cxr_covid.training.config import TrainConfig

        if not self.recipes:
            raise UsageError("compare needs at least one --recipe")
        seeds_of(self.first_seed, self.seeds)
        for folder in self.external:
            if not folder.expanduser().is_dir():
                raise DataError(f"--external {folder}: not a folder")
        for recipe in self.recipes:  # every option checked before anything is trained
            TrainConfig.from_dict({**self.shared(), **recipe.options}).validate()

    def shared(self) -> dict[str, Any]:
        """The TrainConfig options every job shares."""
        return {
            "dataset": self.dataset,
            "image_size": self.image_size,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
        }


def _digest(data: Any, length: int = 8) -> str:
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def build_jobs(options: CompareOptions, split_sha256: str) -> list[grid.Job]:
    """One job per recipe and seed, in recipe order (seeds --seed, --seed + 1, ...)."""
    jobs = []
    for recipe in options.recipes:
        job_options = {**options.shared(), **recipe.options}
        key = _digest({"options": job_options, "split": split_sha256}, 6)
        group = f"cmp-{recipe.name}-{key}"
        for seed in seeds_of(options.first_seed, options.seeds):
            jobs.append(
                grid.Job(
                    check_name(f"{group}-s{seed}"),
                    {**job_options, "group": group},
                    seed,
                    label=f"{recipe.name}, seed {seed}",
                )
            )
    return jobs


def run_folder(options: CompareOptions, split_sha256: str) -> Path:
    """`--out`, else `<home>/compare/<dataset>-<hash of what is compared>`: the same command
    finds the same folder, so a rerun continues."""
    if options.out is not None:
        return options.out.expanduser()
    key = _digest(
        {
            "recipes": [r.to_dict() for r in options.recipes],
            "seeds": [options.first_seed, options.seeds],
            "shared": options.shared(),
            "split": split_sha256,
            "external": sorted(str(p.expanduser().resolve()) for p in options.external),
        }
    )
    return paths.home() / "compare" / f"{options.dataset}-{key}"


def hooks(reporter_message: Any = None) -> grid.GridHooks:
    """Refuse a stored model or interrupted run under a job's id that is another recipe."""

    def check_reusable(job: grid.Job, record: store.ModelRecord) -> None:
        different = recipe_differences(record.training, job.config())
        if different or record.training.get("seed") != job.seed:
            raise UsageError(
                f"model {job.name!r} exists but is not {job.title} (differs in: "
                f"{', '.join(different) or 'seed'}); remove it with `cxr-covid models rm`"
            )

    def check_resumable(job: grid.Job, started: Any) -> None:
        different = recipe_differences(started.to_dict(), job.config())
        if different:
            raise UsageError(
                f"the interrupted run {job.name!r} is not {job.title} (differs in: "
                f"{', '.join(different)})"
            )

    def on_job(job: grid.Job, action: str) -> None:
        if reporter_message is not None:
            words = {grid.REUSE: "reused", grid.RESUME: "resuming", grid.TRAIN: "training"}
            reporter_message(f"{job.title}: {words.get(action, action)} ({job.name})")

    return grid.GridHooks(
        on_job=on_job, check_reusable=check_reusable, check_resumable=check_resumable
    )


def estimate_seconds(
    jobs: list[grid.Job], state: grid.GridState, dataset: Any, reporter: Any
) -> tuple[float, int]:
    """(estimated seconds, jobs left): measured seconds per step x steps, for the jobs that
    still have to train (a reused model costs nothing)."""
    left = [p.job for p in grid.plan(jobs, state) if p.action != grid.REUSE]
    if not left:
        return 0.0, 0
    rows = dataset.rows()
    original = sum(1 for r in rows if r.split == "train" and r.origin == "original")
    augmented = sum(1 for r in rows if r.split == "train" and r.origin != "original")
    val = sum(1 for r in rows if r.split == "val" and r.origin == "original")

    def images(job: grid.Job) -> tuple[int, int]:
        return original + (augmented if job.options.get("augment") else 0), val

    timing = grid.estimate(left, images, reporter)
    return timing.total_seconds, len(left)
