"""The time estimate: measured seconds per training step x the steps each model will take."""

from __future__ import annotations

from typing import Any

from cxr_covid import classes, study
from cxr_covid.progress import Reporter
from cxr_covid.reproduce.data_steps import study_options
from cxr_covid.reproduce.results import TimeEstimate
from cxr_covid.text import format_duration
from cxr_covid.training import grid


def train_counts(dataset: Any) -> tuple[int, int, int]:
    """(original training images, augmented training images, validation images)."""
    rows = dataset.rows()
    original = sum(1 for r in rows if r.split == "train" and r.origin == "original")
    augmented = sum(1 for r in rows if r.split == "train" and r.origin != "original")
    val = sum(1 for r in rows if r.split == "val" and r.origin == "original")
    return original, augmented, val


def expected_counts(settings: dict[str, Any]) -> tuple[int, int, int] | None:
    """Before the data is here: the image counts of the study's release, when that is the
    source (training originals, augmented copies, validation); else None."""
    if settings["source"].get("kaggle_release") != study.STUDY_RELEASE:
        return None
    counts = study.RELEASE_1_COUNTS
    train = sum(round(0.7 * n) for n in counts.values())
    augmented = round(0.7 * counts[classes.COVID]) * (settings["augment_factor"] - 1)
    val = sum(round(0.15 * n) for n in counts.values())
    return train, augmented, val


def estimate_time(
    counts: tuple[int, int, int],
    settings: dict[str, Any],
    keys: list[str],
    reporter: Reporter,
    step_cache: dict[str, float] | None = None,
) -> TimeEstimate:
    """Measured seconds per training step x the steps each model will take (the run-grid's
    estimate, one job per study model)."""
    original, augmented, val = counts
    jobs = [
        grid.Job(key, study_options(study.study_model(key), settings, ""), settings["seed"])
        for key in keys
    ]

    def images(job: grid.Job) -> tuple[int, int]:
        return original + (augmented if job.options["augment"] else 0), val

    timing = grid.estimate(jobs, images, reporter, step_cache)
    return TimeEstimate(timing.seconds_per_step, timing.steps, timing.seconds, timing.cpus)


def format_estimate(timing: TimeEstimate, basis: str = "") -> str:
    parts = ", ".join(f"{k} ~{format_duration(s, rough=True)}" for k, s in timing.seconds.items())
    basis = f"; {basis}" if basis else ""
    total = format_duration(timing.total_seconds, rough=True)
    return (
        f"estimate: about {total} of training on this machine "
        f"({timing.cpus} CPU cores; measured seconds per step x steps{basis}): {parts}"
    )
