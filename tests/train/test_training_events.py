"""Training reports through the one progress protocol: the cache build and the steps of each
epoch as tasks, the figures of each epoch through the typed `on_epoch` hook."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cxr_covid.training import run as training
from cxr_covid.training.run import EpochReport, RunInfo, TrainConfig
from tests.helpers import build_dataset
from tests.unit.test_progress_events import Recorder


def test_train_reports_cache_and_epoch_steps(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=6, size=16)
    config = TrainConfig(dataset="blobs", epochs=2, batch_size=4, image_size=16, name="ev")
    seen = Recorder()
    infos: list[RunInfo] = []
    epochs: list[EpochReport] = []
    training.train(config, seen, on_start=infos.append, on_epoch=epochs.append)

    started = [task for kind, task in seen.events if kind == "start"]
    assert started == ["Caching train images", "Caching val images", "Epoch 1/2", "Epoch 2/2"]
    assert [task for kind, task in seen.events if kind == "finish"] == started
    (info,) = infos
    assert seen.totals["Caching train images"] == info.train_images
    assert seen.completed["Caching val images"] == info.val_images
    for epoch in ("Epoch 1/2", "Epoch 2/2"):
        assert seen.units[epoch] == "steps"
        assert seen.completed[epoch] == seen.totals[epoch] == info.steps_per_epoch
    assert [e.epoch for e in epochs] == [1, 2]

    # A second model on the same data reuses the cache: only the epochs are reported.
    again = Recorder()
    training.train(replace(config, name="ev2"), again)
    assert [task for kind, task in again.events if kind == "start"] == ["Epoch 1/2", "Epoch 2/2"]
