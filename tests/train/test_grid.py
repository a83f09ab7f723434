"""The run-grid (training/grid.py): done jobs are reused, interrupted ones resumed, the rest
trained; the state file survives an interrupt; the estimate is steps x measured seconds.

A fake trainer writes model records into the store, so these tests train nothing; the real
trainings through the grid are covered by train --seeds, reproduce and the audit tests."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from cxr_covid import atomic
from cxr_covid.errors import UsageError
from cxr_covid.models import store
from cxr_covid.training import grid, run_folder
from cxr_covid.training.config import TrainConfig
from cxr_covid.training.events import TrainingInterrupted

OPTIONS = {"arch": "baseline", "dataset": "dev", "epochs": 2, "image_size": 32, "batch_size": 8}


def _store_model(name: str, seed: int) -> None:
    record = store.ModelRecord(
        id=name,
        architecture="baseline",
        classes=["a", "b"],
        preprocessing={},
        last_conv_layer="conv",
        dataset={"val_images": 10},
        training={"seed": seed},
        metrics={"best_epoch": 1, "best_val_accuracy": 0.5},
    )
    store.model_dir(name).mkdir(parents=True)
    store.StoredModel(store.model_dir(name)).write_record(record)


class FakeTrainer:
    """Records the calls; 'trains' by writing a record; raises Ctrl-C on request."""

    def __init__(self, interrupt_at: str | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.interrupt_at = interrupt_at

    def _result(self, name: str, seed: int) -> Any:
        if name == self.interrupt_at:
            self.interrupt_at = None
            run_folder.run_dir(name).mkdir(parents=True)
            atomic.write_json(
                run_folder.run_dir(name) / run_folder.CONFIG_FILE,
                {"run_id": name, "config": TrainConfig(**OPTIONS, seed=seed, name=name).to_dict()},
            )
            atomic.write_json(run_folder.run_dir(name) / run_folder.STATE_FILE, {"epochs_done": 1})
            raise TrainingInterrupted(name, 1)
        _store_model(name, seed)
        record = store.StoredModel(store.model_dir(name)).record()
        return SimpleNamespace(
            model=SimpleNamespace(id=name), record=record, best_epoch=2, best_val_accuracy=0.75
        )

    def train(self, config: TrainConfig, reporter: Any, **hooks: Any) -> Any:
        self.calls.append(("train", str(config.name)))
        assert config.seed == int(str(config.name).rsplit("s", 1)[1])
        return self._result(str(config.name), config.seed)

    def resume(self, name: str, reporter: Any, **hooks: Any) -> Any:
        self.calls.append(("resume", name))
        import shutil

        seed = run_folder.run_config(name).seed
        shutil.rmtree(run_folder.run_dir(name))
        return self._result(name, seed)

    def trainer(self) -> grid.Trainer:
        return grid.Trainer(train=self.train, resume=self.resume)


def _jobs() -> list[grid.Job]:
    return [grid.Job(f"g-s{seed}", OPTIONS, seed) for seed in (1, 2, 3)]


def test_a_grid_trains_each_job_once_and_a_rerun_reuses_them(tmp_path: Path) -> None:
    fake = FakeTrainer()
    folder = grid.GridFolder(tmp_path / "grid")
    results = grid.run_grid(_jobs(), folder, trainer=fake.trainer())
    assert [r.action for r in results] == [grid.TRAIN] * 3
    assert [r.model_id for r in results] == ["g-s1", "g-s2", "g-s3"]
    assert results[0].best_val_accuracy == 0.75 and results[0].val_images == 10
    assert fake.calls == [("train", "g-s1"), ("train", "g-s2"), ("train", "g-s3")]
    assert folder.done(_jobs()[1]) == "g-s2"

    again = grid.run_grid(_jobs(), folder, trainer=fake.trainer())
    assert [r.action for r in again] == [grid.REUSE] * 3
    assert len(fake.calls) == 3  # nothing retrained


def test_an_interrupted_grid_resumes_the_interrupted_job_and_trains_the_rest(
    tmp_path: Path,
) -> None:
    fake = FakeTrainer(interrupt_at="g-s2")
    folder = grid.GridFolder(tmp_path / "grid")
    with pytest.raises(TrainingInterrupted):
        grid.run_grid(_jobs(), folder, trainer=fake.trainer())
    assert folder.done(_jobs()[0]) == "g-s1" and folder.done(_jobs()[1]) is None
    assert [p.action for p in grid.plan(_jobs(), folder)] == [grid.REUSE, grid.RESUME, grid.TRAIN]

    results = grid.run_grid(_jobs(), folder, trainer=fake.trainer())
    assert [r.action for r in results] == [grid.REUSE, grid.RESUME, grid.TRAIN]
    assert fake.calls[-2:] == [("resume", "g-s2"), ("train", "g-s3")]


def test_hooks_hear_each_job_and_may_refuse_a_stored_model() -> None:
    _store_model("g-s1", 1)
    heard: list[tuple[str, str]] = []

    def refuse(job: grid.Job, record: store.ModelRecord) -> None:
        raise UsageError(f"{job.name} is another recipe")

    hooks = grid.GridHooks(on_job=lambda job, action: heard.append((job.name, action)))
    grid.run_grid(_jobs()[:2], hooks=hooks, trainer=FakeTrainer().trainer())
    assert heard == [("g-s1", grid.REUSE), ("g-s2", grid.TRAIN)]
    with pytest.raises(UsageError, match="another recipe"):
        grid.run_grid(_jobs()[:1], hooks=grid.GridHooks(check_reusable=refuse))


def test_a_model_saved_but_not_recorded_is_adopted_by_the_state(tmp_path: Path) -> None:
    folder = grid.GridFolder(tmp_path / "grid")
    _store_model("g-s1", 1)  # the grid stopped between saving and recording
    assert [p.action for p in grid.plan(_jobs()[:1], folder)] == [grid.REUSE]
    assert folder.done(_jobs()[0]) == "g-s1"


def test_a_damaged_grid_state_is_a_clear_error(tmp_path: Path) -> None:
    from cxr_covid.errors import DataError

    (tmp_path / "grid").mkdir()
    (tmp_path / "grid" / grid.GRID_FILE).write_text("{not json")
    with pytest.raises(DataError, match="unreadable grid state"):
        grid.plan(_jobs(), grid.GridFolder(tmp_path / "grid"))


def test_the_estimate_is_measured_seconds_per_step_times_the_steps() -> None:
    timed: list[str] = []

    def measure(arch: str, size: int, batch: int) -> float:
        timed.append(arch)
        return 0.5

    estimate = grid.estimate(_jobs(), lambda job: (20, 9), measure=measure)
    # ceil(20 / 8) x 2 epochs = 6 steps; validation ceil(9 / 8) x 2 = 4 forward passes at 1/3.
    assert estimate.steps == {"g-s1": 6, "g-s2": 6, "g-s3": 6}
    assert estimate.seconds["g-s1"] == pytest.approx(0.5 * (6 + 4 / 3))
    assert estimate.total_seconds == pytest.approx(3 * 0.5 * (6 + 4 / 3))
    assert timed == ["baseline"]  # timed once per architecture


def test_one_progress_task_follows_the_whole_grid() -> None:
    events: list[tuple[str, str, int | None]] = []

    class Recorder:
        def start(self, task: str, total: int | None = None, unit: str = "items") -> None:
            events.append(("start", task, total))

        def advance(self, task: str, completed: int, total: int | None = None) -> None:
            events.append(("advance", task, completed))

        def finish(self, task: str) -> None:
            events.append(("finish", task, None))

        def message(self, text: str) -> None:
            pass

    _store_model("g-s1", 1)
    grid.run_grid(_jobs(), reporter=Recorder(), trainer=FakeTrainer().trainer())
    assert [e for e in events if e[1] == grid.GRID_TASK] == [
        ("start", grid.GRID_TASK, 3),
        ("advance", grid.GRID_TASK, 1),
        ("advance", grid.GRID_TASK, 2),
        ("advance", grid.GRID_TASK, 3),
        ("finish", grid.GRID_TASK, None),
    ]
