"""The time estimate: measured seconds per training step x the steps each model will take."""

from __future__ import annotations

import math
import os
import time
from typing import Any

from cxr_covid import classes, study
from cxr_covid.progress import Reporter
from cxr_covid.reproduce.results import TimeEstimate
from cxr_covid.text import format_duration


def train_counts(dataset: Any) -> tuple[int, int, int]:
    """(original training images, augmented training images, validation images)."""
    rows = dataset.rows()
    original = sum(1 for r in rows if r.split == "train" and r.origin == "original")
    augmented = sum(1 for r in rows if r.split == "train" and r.origin != "original")
    val = sum(1 for r in rows if r.split == "val" and r.origin == "original")
    return original, augmented, val


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
    """Measured seconds per training step x the steps each model will take."""
    original, augmented, val = counts
    size, batch, epochs = settings["image_size"], settings["batch_size"], settings["epochs"]
    per_step = step_cache if step_cache is not None else {}
    steps: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for key in keys:
        spec = study.study_model(key)
        if spec.architecture not in per_step:
            reporter.message(f"estimate: timing a few {spec.architecture} steps...")
            per_step[spec.architecture] = measure_step_seconds(spec.architecture, size, batch)
        images = original + (augmented if spec.augment else 0)
        n_steps = math.ceil(images / batch) * epochs
        steps[key] = n_steps
        # Validation each epoch: a forward pass only, roughly a third of a training step.
        val_steps = math.ceil(val / batch) * epochs
        seconds[key] = per_step[spec.architecture] * (n_steps + val_steps / 3)
    return TimeEstimate(dict(per_step), steps, seconds, os.cpu_count() or 1)


def format_estimate(timing: TimeEstimate, basis: str = "") -> str:
    parts = ", ".join(f"{k} ~{format_duration(s, rough=True)}" for k, s in timing.seconds.items())
    basis = f"; {basis}" if basis else ""
    total = format_duration(timing.total_seconds, rough=True)
    return (
        f"estimate: about {total} of training on this machine "
        f"({timing.cpus} CPU cores; measured seconds per step x steps{basis}): {parts}"
    )
