"""Train one of the study's networks from scratch into the model store.

    result = train(TrainConfig(arch="baseline", epochs=30), LoggingReporter(), on_epoch=print)

The study's recipe: Adam (rate 1e-3), sparse categorical cross-entropy, 30 epochs, batch 32,
keeping the weights of the epoch with the best validation accuracy. Input comes from the
uint8 cache of `cxr_covid.data.pipeline` (decode once, stream with bounded memory).

Interrupt safety: while training, `<home>/runs/<id>/` holds the last completed epoch (model
with optimizer state, best weights so far, history, options), replaced atomically after
every epoch. Ctrl-C or a crash leaves it; `resume(id)` continues from it. Only when training
ends is the model (best weights) written to the store, atomically, and the run folder
removed, so the store never shows a half-trained or half-written model.
"""

from __future__ import annotations

from dataclasses import replace

from cxr_covid import models
from cxr_covid.data.dataset import resolve_dataset
from cxr_covid.errors import ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.models.flops import ArchSummary
from cxr_covid.models.flops import summarize as _summarize
from cxr_covid.progress import NULL, Reporter
from cxr_covid.training.config import TrainConfig
from cxr_covid.training.context import RunContext
from cxr_covid.training.events import (
    EpochHook,
    EpochReport,
    RunInfo,
    StartHook,
    TrainingInterrupted,
    TrainResult,
)
from cxr_covid.training.fit import execute
from cxr_covid.training.run_folder import (
    CHECKPOINT_FILE,
    STATE_FILE,
    RunState,
    check_name_free,
    drop_unstarted_run,
    list_runs,
    read_run,
    rename_run,
    run_dir,
)


def summarize(arch: str, image_size: int, num_classes: int = 3) -> ArchSummary:
    """Layers, output shapes, parameters and forward GFLOPs per image (no training)."""
    models.get(arch)
    return _summarize(arch, image_size, num_classes)


def train(
    config: TrainConfig,
    reporter: Reporter = NULL,
    *,
    on_start: StartHook | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Train a new model as `config` says and save it in the store.

    `reporter` sees the cache being built and the steps of each epoch ("Epoch 3/30");
    `on_start` gets the run's set-up, `on_epoch` each finished epoch's figures."""
    config.validate()
    dataset = resolve_dataset(config.dataset)
    # Pin the dataset by name, so --resume never drifts to a newer "newest" dataset.
    config = replace(config, dataset=dataset.name)
    run_id = config.name or store.new_model_id(config.arch, dataset.name, config.augment)
    check_name_free(run_id, resuming=False)
    if run_dir(run_id).exists():
        raise UsageError(
            f"an interrupted run named {run_id!r} exists: continue it with "
            f"`cxr-covid train --resume {run_id}` or delete {run_dir(run_id)}"
        )
    try:
        run = RunContext(config, run_id, dataset, RunState(), None, reporter, on_start, on_epoch)
        return execute(run)
    except TrainingInterrupted as exc:
        if exc.epochs_done == 0 and drop_unstarted_run(run_id):
            raise KeyboardInterrupt from None  # nothing to resume: the caller's plain Ctrl-C
        raise
    except BaseException:
        drop_unstarted_run(run_id)
        raise


def resume(
    model_or_run_id: str,
    reporter: Reporter = NULL,
    *,
    name: str | None = None,
    on_start: StartHook | None = None,
    on_epoch: EpochHook | None = None,
) -> TrainResult:
    """Continue an interrupted run from its last completed epoch.

    `name` saves the model under another id than the run's (the run folder is renamed
    first): the way out when another model took the run's name meanwhile.
    """
    folder = run_dir(model_or_run_id)
    if not (folder / STATE_FILE).is_file():
        if store.model_dir(model_or_run_id).exists():
            raise UsageError(f"model {model_or_run_id!r} finished training; nothing to resume")
        known = ", ".join(list_runs()) or "none"
        raise ModelError(f"no interrupted run named {model_or_run_id!r} (resumable: {known})")
    config, state, folder = read_run(model_or_run_id)
    try:
        config.validate()
    except (TypeError, ValueError) as exc:  # a hand-edited config.json: "30" for 30
        raise ModelError(f"{folder}: corrupt training run ({exc})") from exc
    dataset = resolve_dataset(config.dataset)
    if name is not None and name != model_or_run_id:
        model_or_run_id = rename_run(model_or_run_id, name)
        config = replace(config, name=name)
        folder = run_dir(model_or_run_id)
    check_name_free(model_or_run_id)
    checkpoint = folder / CHECKPOINT_FILE if state.epochs_done else None
    state.resumed += 1
    return execute(
        RunContext(
            config, model_or_run_id, dataset, state, checkpoint, reporter, on_start, on_epoch
        )
    )


__all__ = [
    "EpochReport",
    "RunInfo",
    "TrainConfig",
    "TrainResult",
    "TrainingInterrupted",
    "list_runs",
    "resume",
    "summarize",
    "train",
]
