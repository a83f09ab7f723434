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

import functools
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic, models, paths
from cxr_covid.data import pipeline
from cxr_covid.data.dataset import Dataset, check_name, resolve_dataset
from cxr_covid.data.images import RESIZE_METHODS, Preprocessing
from cxr_covid.data.lungs import INPUTS
from cxr_covid.data.manifest import AUGMENTED, manifest_hash, split_hash
from cxr_covid.errors import EXIT_INTERRUPTED, CxrCovidError, DataError, ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.models.flops import ArchSummary
from cxr_covid.models.flops import summarize as _summarize
from cxr_covid.models.records import HISTORY_COLUMNS, History
from cxr_covid.progress import NULL, Reporter
from cxr_covid.training import limits, resume_state
from cxr_covid.training.distribute import STRATEGIES, Placement
from cxr_covid.training.precision import check_request as check_precision

CONFIG_FILE = "config.json"
STATE_FILE = "state.json"
CHECKPOINT_FILE = "checkpoint.keras"
BEST_FILE = "best-weights.npz"
RNG_FILE = "rng-state.npz"  # the layers' seed generators: see cxr_covid.training.resume_state


@dataclass
class TrainConfig:
    arch: str = "baseline"
    dataset: str | None = None
    epochs: int = 30
    batch_size: int = 32
    image_size: int = 224
    learning_rate: float = 1e-3
    seed: int = 42
    early_stopping: int | None = None  # stop after N epochs without a better val accuracy
    name: str | None = None
    augment: bool = False
    deterministic: bool = False
    strategy: str = "auto"
    precision: str = "auto"  # training/precision.py
    resize: str = "nearest"
    group: str | None = None  # models trained together with several seeds (`--seeds`)
    calibrate: bool = True  # fit temperature scaling and the OOD guard at the end (scoring.py)
    # Issue 9's recipe options (see balance.py, acquisition.py, lungs.py).
    balance_sources: bool = False
    augment_acquisition: bool = False
    input: str = "full"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def validate(self) -> None:
        """Raise UsageError for any option that cannot work, before anything is built."""
        models.get(self.arch)
        if self.image_size < models.MIN_IMAGE_SIZE:
            raise UsageError(
                f"image size {self.image_size} is too small (minimum {models.MIN_IMAGE_SIZE})"
            )
        if self.image_size > limits.MAX_IMAGE_SIZE:
            raise UsageError(
                f"image size {self.image_size} is too large (maximum {limits.MAX_IMAGE_SIZE})"
            )
        _check_range("--epochs", self.epochs, 1, limits.MAX_EPOCHS)
        _check_range("--batch-size", self.batch_size, 1, limits.MAX_BATCH_SIZE)
        if not (0 < self.learning_rate <= limits.MAX_LEARNING_RATE):  # also refuses NaN
            raise UsageError(
                f"--learning-rate must be above 0 and at most {limits.MAX_LEARNING_RATE:g} "
                f"(got {self.learning_rate})"
            )
        # Keras seeds NumPy's legacy generator, which takes only 0 .. 2**32 - 1.
        _check_range("--seed", self.seed, 0, limits.MAX_SEED)
        if self.early_stopping is not None:
            _check_range("--early-stopping", self.early_stopping, 1, limits.MAX_EPOCHS)
        if self.strategy not in STRATEGIES:
            raise UsageError(
                f"unknown strategy {self.strategy!r} (choose from: {', '.join(STRATEGIES)})"
            )
        check_precision(self.precision, self.deterministic)
        if self.resize not in RESIZE_METHODS:
            raise UsageError(
                f"unknown resize method {self.resize!r} (choose from: {', '.join(RESIZE_METHODS)})"
            )
        if self.input not in INPUTS:  # "no-lungs" is the audit's lung-blind control
            raise UsageError(f"unknown --input {self.input!r} (choose from: full, lungs)")
        if self.name is not None:
            check_name(self.name)


def _check_range(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise UsageError(f"{option} must be between {low} and {high} (got {value})")


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


def summarize(arch: str, image_size: int, num_classes: int = 3) -> ArchSummary:
    """Layers, output shapes, parameters and forward GFLOPs per image (no training)."""
    models.get(arch)
    return _summarize(arch, image_size, num_classes)


# --- run folders --------------------------------------------------------------------------


def run_dir(run_id: str) -> Path:
    return paths.runs_dir() / check_name(run_id)


def list_runs() -> list[str]:
    root = paths.runs_dir()
    if not root.is_dir():
        return []
    return sorted(
        p.name for p in root.iterdir() if not atomic.is_temporary(p) and (p / STATE_FILE).is_file()
    )


@dataclass
class _State:
    """What a checkpoint holds besides the weights; state.json."""

    epochs_done: int = 0
    history: dict[str, list[float]] = field(
        default_factory=lambda: {k: [] for k in HISTORY_COLUMNS}
    )
    best_epoch: int = 0
    best_val_accuracy: float = -1.0
    best_val_loss: float = float("inf")
    wait: int = 0  # epochs since the last improvement (early stopping)
    train_seconds: float = 0.0  # time in the training phase of the epochs (not validation)
    timed_images: int = 0  # images processed in `train_seconds`
    total_seconds: float = 0.0
    resumed: int = 0
    manifest_sha256: str = ""
    started: str = ""
    precision: str = ""  # the Keras policy the run's epochs use (a resume keeps it)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> _State:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def _write_run(
    target: Path,
    run_id: str,
    config: TrainConfig,
    state: _State,
    model: Any | None,
    best_weights: list[np.ndarray] | None,
) -> None:
    """Replace the whole run folder atomically: it always holds one complete epoch."""
    with atomic.building_dir(target, replace=True) as tmp:
        atomic.write_json(tmp / CONFIG_FILE, {"run_id": run_id, "config": config.to_dict()})
        if model is not None:
            model.save(tmp / CHECKPOINT_FILE)
            resume_state.save_rng_state(model, tmp / RNG_FILE)
        if best_weights is not None:
            with (tmp / BEST_FILE).open("wb") as handle:
                np.savez(handle, *best_weights)
        atomic.write_json(tmp / STATE_FILE, asdict(state))


def run_config(run_id: str) -> TrainConfig:
    """The options an interrupted run was started with."""
    return _read_run(run_id)[0]


def _read_run(run_id: str) -> tuple[TrainConfig, _State, Path]:
    folder = run_dir(run_id)
    try:
        config_data = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        state_data = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        config = TrainConfig.from_dict(config_data["config"])
        state = _State.from_dict(state_data)
    except FileNotFoundError as exc:
        raise ModelError(
            f"{folder}: not a resumable training run ({exc.filename} missing)"
        ) from exc
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"{folder}: corrupt training run ({exc})") from exc
    problem = _state_problem(state)
    if problem:
        raise ModelError(f"{folder}: corrupt training run ({problem})")
    return config, state, folder


def _state_problem(state: _State) -> str | None:
    """Why a state.json read from disk cannot be trusted (hand-edited or damaged), or None."""
    for name in ("epochs_done", "best_epoch", "wait", "resumed", "timed_images"):
        value = getattr(state, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            return f"{name} should be a whole number of at least 0, not {value!r}"
    for name in ("best_val_accuracy", "best_val_loss", "train_seconds", "total_seconds"):
        if isinstance(getattr(state, name), bool) or not isinstance(
            getattr(state, name), int | float
        ):
            return f"{name} should be a number, not {getattr(state, name)!r}"
    if not isinstance(state.history, dict) or not all(
        isinstance(v, list) for v in state.history.values()
    ):
        return "history should map each metric to a list"
    return None


# --- the training loop --------------------------------------------------------------------


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
    _check_name_free(run_id, resuming=False)
    if run_dir(run_id).exists():
        raise UsageError(
            f"an interrupted run named {run_id!r} exists: continue it with "
            f"`cxr-covid train --resume {run_id}` or delete {run_dir(run_id)}"
        )
    try:
        run = _RunContext(config, run_id, dataset, _State(), None, reporter, on_start, on_epoch)
        return _run(run)
    except TrainingInterrupted as exc:
        if exc.epochs_done == 0 and _drop_unstarted_run(run_id):
            raise KeyboardInterrupt from None  # nothing to resume: the caller's plain Ctrl-C
        raise
    except BaseException:
        _drop_unstarted_run(run_id)
        raise


def _drop_unstarted_run(run_id: str) -> bool:
    """Remove a new run's folder if no epoch reached it: a failure before training (a bad
    option, a broken image, Ctrl-C) leaves nothing that would block the name."""
    folder = run_dir(run_id)
    try:
        state = json.loads((folder / STATE_FILE).read_text(encoding="utf-8"))
        unstarted = isinstance(state, dict) and state.get("epochs_done") == 0
    except (OSError, ValueError):
        unstarted = False
    if unstarted:
        shutil.rmtree(folder, ignore_errors=True)
    return unstarted


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
    config, state, folder = _read_run(model_or_run_id)
    try:
        config.validate()
    except (TypeError, ValueError) as exc:  # a hand-edited config.json: "30" for 30
        raise ModelError(f"{folder}: corrupt training run ({exc})") from exc
    dataset = resolve_dataset(config.dataset)
    if name is not None and name != model_or_run_id:
        model_or_run_id = _rename_run(model_or_run_id, name)
        config = replace(config, name=name)
        folder = run_dir(model_or_run_id)
    _check_name_free(model_or_run_id)
    checkpoint = folder / CHECKPOINT_FILE if state.epochs_done else None
    state.resumed += 1
    return _run(
        _RunContext(
            config, model_or_run_id, dataset, state, checkpoint, reporter, on_start, on_epoch
        )
    )


def _resume_hint(run_id: str) -> str:
    return f"cannot resume {run_id!r}: delete {run_dir(run_id)} and train again"


def _load_checkpoint(checkpoint: Path, run_id: str) -> Any:
    """The checkpoint, loaded with safe_mode; a damaged or hostile one is a ModelError."""
    try:
        return store.load_keras_file(checkpoint, compile=True)
    except ModelError as exc:
        raise ModelError(f"{exc} ({_resume_hint(run_id)})") from exc


def _load_best_weights(path: Path, model: Any, run_id: str) -> list[np.ndarray]:
    """best.npz (plain arrays, never pickles), checked against the model's weights."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            weights = [stored[f"arr_{i}"] for i in range(len(stored.files))]
    except Exception as exc:
        raise ModelError(
            f"{path}: corrupt or truncated best weights ({type(exc).__name__}: {exc}; "
            f"{_resume_hint(run_id)})"
        ) from exc
    shapes = [tuple(w.shape) for w in model.get_weights()]
    if [tuple(w.shape) for w in weights] != shapes:
        raise ModelError(f"{path}: best weights do not fit the checkpoint ({_resume_hint(run_id)})")
    return weights


def _check_name_free(run_id: str, *, resuming: bool = True) -> None:
    """The model id must still be free: checked before training and again before saving,
    since another command may save a model of that name while this one trains."""
    if not store.model_dir(run_id).exists():
        return
    if not resuming:
        raise ModelError(f"a model named {run_id!r} already exists (use another --name)")
    raise ModelError(
        f"a model named {run_id!r} already exists; the run is kept: finish it under another "
        f"name with `cxr-covid train --resume {run_id} --name NEW`"
    )


def _rename_run(run_id: str, name: str) -> str:
    """Move the run folder to `name`, so the run continues (and saves) under that id."""
    check_name(name)
    _check_name_free(name, resuming=False)
    target = run_dir(name)
    if target.exists():
        raise UsageError(
            f"an interrupted run named {name!r} exists too: resume it, or choose another --name"
        )
    run_dir(run_id).rename(target)
    return name


def _compile(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"],
    )


def _datasets(
    placement: Placement,
    config: TrainConfig,
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
    train_reader: pipeline.BatchReader,
    val_reader: pipeline.BatchReader,
    first_epoch: int,
    recipe: dict[str, Any] | None = None,
) -> tuple[Any, Any, int, int]:
    """(train data, val data, train steps, val steps) for the placement's strategy."""
    batch = config.batch_size
    remaining = config.epochs - first_epoch
    # One machine: Keras splits each global batch across local replicas itself. Several
    # workers: every worker builds the same seeded global batches and tf.distribute gives
    # each worker its slice of every batch (DATA sharding), so all take the same steps.
    distributed = placement.replicas > 1 or placement.workers > 1
    common: dict[str, Any] = {
        "global_batch": batch,
        "epochs": remaining,
        "shard_by_data": placement.workers > 1,
    }
    train_data = pipeline.make_dataset(
        train_split,
        train_reader,
        shuffle=True,
        seed=config.seed,
        first_epoch=first_epoch,
        drop_remainder=distributed,
        **common,
        **(recipe or {}),
    )
    val_data = pipeline.make_dataset(val_split, val_reader, shuffle=False, **common)
    if distributed and train_split.count < batch:
        raise UsageError(
            f"--batch-size {batch} is larger than the {train_split.count} training images; "
            "distributed training needs at least one full batch"
        )
    return (
        train_data,
        val_data,
        pipeline.steps_per_epoch(train_split.count, batch, distributed),
        pipeline.steps_per_epoch(val_split.count, batch, False),
    )


@dataclass
class _RunContext:
    """One training run as every level of the loop sees it: what to train, where it stands,
    and who hears about it (instead of the same arguments passed down three levels)."""

    config: TrainConfig
    run_id: str
    dataset: Dataset
    state: _State
    checkpoint: Path | None  # the run's checkpoint when resuming from a completed epoch
    reporter: Reporter = NULL
    on_start: StartHook | None = None
    on_epoch: EpochHook | None = None

    @property
    def folder(self) -> Path:
        return run_dir(self.run_id)


@dataclass(frozen=True)
class _Rows:
    """The dataset's rows, checked for training: the whole manifest and the two splits."""

    all: list[Any]
    digest: str
    classes: list[str]
    train: list[Any]
    val: list[Any]
    augmented: int


def _run(run: _RunContext) -> TrainResult:
    """`_train_run`, leaving the process's global TensorFlow settings as it found them
    (precision policy, op determinism), so a caller can train again with other options."""
    from cxr_covid.training import distribute

    was_deterministic = _op_determinism(None)
    try:
        return _train_run(run)
    finally:
        distribute.reset_precision()
        _op_determinism(was_deterministic)


def _op_determinism(enable: bool | None) -> bool:
    """Set TensorFlow's op determinism (None: leave it); return whether it is on.

    TensorFlow exports only `enable_op_determinism`; reading and clearing the flag needs its
    framework module, so fall back to leaving it on where that module moved."""
    import tensorflow as tf

    try:
        from tensorflow.python.framework import config as framework_config
    except ImportError:  # pragma: no cover - depends on the TensorFlow version
        if enable:
            tf.config.experimental.enable_op_determinism()
        return bool(enable)
    if enable is True:
        tf.config.experimental.enable_op_determinism()
    elif enable is False:
        framework_config.disable_op_determinism()
    return bool(framework_config.is_op_determinism_enabled())


def _train_run(run: _RunContext) -> TrainResult:
    """Check the data, place the work, cache the splits, build or load, fit, record, save."""
    started = time.perf_counter()
    config = run.config
    rows = _checked_rows(run)
    placement = _place(config, run.state)
    prep = Preprocessing(image_size=config.image_size, resize=config.resize, input=config.input)
    recipe, composition = _recipe(config, rows.train)
    cache_args: dict[str, Any] = {"rows": rows.all, "classes": rows.classes}
    cache_args["reporter"] = run.reporter
    train_split = pipeline.cache_split(
        run.dataset, "train", prep, include_augmented=config.augment, **cache_args
    )
    val_split = pipeline.cache_split(run.dataset, "val", prep, **cache_args)
    model, best_weights = _build_or_load(run, placement, rows.classes)
    best_weights = _fit_epochs(
        run, placement, model, best_weights, train_split, val_split, recipe, started
    )
    final, guards = _final_model(run, placement, rows, best_weights, train_split, val_split)
    record = _record(run, placement, prep, rows, composition, train_split, val_split)
    if guards is not None:
        from cxr_covid.inference import scoring

        scoring.apply(record, guards)
        record.training["calibration_seconds"] = round(guards.seconds, 3)
    stored = _save(run, placement, final, record)
    state = run.state
    return TrainResult(
        model=stored,
        record=record,
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        seconds=state.total_seconds,
        images_per_second=_images_per_second(state),
    )


def _checked_rows(run: _RunContext) -> _Rows:
    """The dataset's rows, refused when they changed since the run started, have fewer than
    two classes, lack a split, or lack the augmented images --augment asks for."""
    dataset, config, state = run.dataset, run.config, run.state
    rows = dataset.rows()
    digest = manifest_hash(rows)
    if state.manifest_sha256 and state.manifest_sha256 != digest:
        raise DataError(
            f"dataset {dataset.name!r} changed since this run started (manifest hash differs); "
            "start a new run"
        )
    state.manifest_sha256 = digest
    state.started = state.started or store.now_iso()
    classes = pipeline.dataset_classes(rows)
    if len(classes) < 2:
        raise DataError(f"dataset {dataset.name!r} has fewer than two classes")
    train_rows = pipeline.split_rows(rows, "train", include_augmented=config.augment)
    val_rows = pipeline.split_rows(rows, "val")
    if not train_rows:
        raise DataError(f"dataset {dataset.name!r} has no training images (split it first)")
    if not val_rows:
        raise DataError(f"dataset {dataset.name!r} has no validation images (split it first)")
    augmented = sum(1 for r in train_rows if r.origin == AUGMENTED)
    if config.augment and not augmented:
        raise DataError(
            f"dataset {dataset.name!r} has no augmented images: run `cxr-covid augment` first"
        )
    return _Rows(list(rows), digest, classes, train_rows, val_rows, augmented)


def _place(config: TrainConfig, state: _State) -> Placement:
    """The devices and strategy, with the seed and op determinism set before any model."""
    import keras

    from cxr_covid.training import distribute

    placement = distribute.place(
        config.strategy,
        config.precision,
        deterministic=config.deterministic,
        started_with=state.precision,
    )
    state.precision = placement.precision
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        _op_determinism(True)
    return placement


def _build_or_load(
    run: _RunContext, placement: Placement, classes: list[str]
) -> tuple[Any, list[np.ndarray] | None]:
    """A new compiled model, or the run's checkpoint (with its RNG state and best weights);
    a new run's folder is written before the first epoch, so its name is taken."""
    config, checkpoint = run.config, run.checkpoint
    with placement.strategy.scope():
        if checkpoint is not None:
            model = _load_checkpoint(checkpoint, run.run_id)
            if (checkpoint.parent / RNG_FILE).is_file():  # older run folders lack it
                resume_state.restore_rng_state(model, checkpoint.parent / RNG_FILE)
        else:
            model = models.build(config.arch, config.image_size, len(classes))
            _compile(model, config.learning_rate)
    folder = run.folder
    best_weights: list[np.ndarray] | None = None
    if checkpoint is not None and (folder / BEST_FILE).is_file():
        best_weights = _load_best_weights(folder / BEST_FILE, model, run.run_id)
    if placement.is_chief and checkpoint is None and run.state.epochs_done == 0:
        _write_run(folder, run.run_id, config, run.state, None, None)
    return model, best_weights


def _fit_epochs(
    run: _RunContext,
    placement: Placement,
    model: Any,
    best_weights: list[np.ndarray] | None,
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
    recipe: dict[str, Any],
    started: float,
) -> list[np.ndarray]:
    """Fit the remaining epochs (checkpointed one by one); the best epoch's weights."""
    config, state = run.config, run.state
    first_epoch = state.epochs_done
    with train_split.reader() as train_reader, val_split.reader() as val_reader:
        train_data, val_data, steps, val_steps = _datasets(
            placement, config, train_split, val_split, train_reader, val_reader, first_epoch, recipe
        )
        if run.on_start:
            run.on_start(_run_info(run, placement, train_split, val_split, steps))
        tracker = _tracker_class()(run, best_weights, placement, steps, train_split.count, started)
        try:
            if first_epoch < config.epochs and not _stopped_early(config, state):
                _fit(
                    placement,
                    model,
                    train_data,
                    epochs=config.epochs,
                    initial_epoch=first_epoch,
                    steps_per_epoch=steps,
                    validation_data=val_data,
                    validation_steps=val_steps,
                    callbacks=[tracker],
                    shuffle=False,  # the pipeline shuffles, seeded per epoch
                    verbose=0,
                )
        except KeyboardInterrupt:
            # The epochs safely on disk: an interrupt can land while a checkpoint is written.
            raise TrainingInterrupted(run.run_id, tracker.saved_epochs) from None
    tracker.finish_timing()
    if tracker.best_weights is None:  # pragma: no cover - fit always completes one epoch here
        raise ModelError("training produced no epoch to keep")
    return list(tracker.best_weights)


def _run_info(
    run: _RunContext,
    placement: Placement,
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
    steps: int,
) -> RunInfo:
    return RunInfo(
        run_id=run.run_id,
        architecture=run.config.arch,
        dataset=run.dataset.name,
        train_images=train_split.count,
        val_images=val_split.count,
        classes=list(train_split.classes),
        first_epoch=run.state.epochs_done + 1,
        epochs=run.config.epochs,
        steps_per_epoch=steps,
        strategy=placement.name,
        replicas=placement.replicas,
        device=placement.device,
        precision=placement.precision,
        notes=placement.notes,
        precision_reason=placement.precision_reason,
    )


def _final_model(
    run: _RunContext,
    placement: Placement,
    rows: _Rows,
    best_weights: list[np.ndarray],
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
) -> tuple[Any, Any]:
    """The model to store, and its calibration and OOD guard (None with --no-calibrate)."""
    from cxr_covid.training import distribute

    config = run.config
    # The stored copy is a fresh float32 model without optimizer state: a third of the size,
    # and loadable anywhere whatever precision policy the training used.
    distribute.reset_precision()
    final = models.build(config.arch, config.image_size, len(rows.classes))
    final.set_weights(best_weights)
    guards = _fit_guards(config, placement, final, train_split, val_split, run.dataset.name)
    return final, guards


def _images_per_second(state: _State) -> float:
    return state.timed_images / state.train_seconds if state.train_seconds else 0.0


def _record(
    run: _RunContext,
    placement: Placement,
    prep: Preprocessing,
    rows: _Rows,
    composition: dict[str, dict[str, int]],
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
) -> store.ModelRecord:
    """The model record: what was trained, on which data, how, and how it went."""
    config, state, dataset = run.config, run.state, run.dataset
    return store.ModelRecord(
        id=run.run_id,
        architecture=config.arch,
        classes=rows.classes,
        preprocessing=prep.to_dict(),
        last_conv_layer=models.get(config.arch).last_conv,
        dataset={
            "name": dataset.name,
            "manifest_sha256": rows.digest,
            "split_sha256": split_hash(rows.all),
            "train_images": train_split.count,
            "val_images": val_split.count,
            "augmented_train_images": rows.augmented,
            **({"train_collections": composition} if composition else {}),
        },
        training={
            **config.to_dict(),
            "dataset": dataset.name,
            "name": run.run_id,
            "optimizer": "adam",
            "loss": "sparse_categorical_crossentropy",
            "keep": "best val_accuracy",
            "epochs_run": state.epochs_done,
            "stopped_early": state.epochs_done < config.epochs,
            "started": state.started,
            "seconds": round(state.total_seconds, 3),
            "images_per_second": round(_images_per_second(state), 2),
            "resumed": state.resumed,
            "device": placement.device,
            "strategy_used": placement.name,
            "replicas": placement.replicas,
            "workers": placement.workers,
            "precision_used": placement.precision,
            "precision_reason": placement.precision_reason,
            "notes": placement.notes,
        },
        history=History.from_dict(state.history),
        metrics={
            "best_epoch": state.best_epoch,
            "best_val_accuracy": state.best_val_accuracy,
            "best_val_loss": state.best_val_loss,
        },
        versions=store.library_versions(),
    )


def _save(
    run: _RunContext, placement: Placement, final: Any, record: store.ModelRecord
) -> store.StoredModel:
    """Store the model (chief only) and drop the run folder it no longer needs."""
    if not placement.is_chief:
        return store.StoredModel(store.model_dir(run.run_id))
    _check_name_free(run.run_id)  # taken while this run trained: keep the run, say how
    stored = store.save(final, record)
    shutil.rmtree(run.folder, ignore_errors=True)
    return stored


def _fit_guards(
    config: TrainConfig,
    placement: Placement,
    model: Any,
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
    dataset_name: str,
) -> Any:
    """Temperature scaling and the OOD guard from the cached splits (None: --no-calibrate)."""
    if not config.calibrate or not placement.is_chief:
        return None
    from cxr_covid.inference import scoring

    return scoring.fit_for_training(model, train_split, val_split, dataset_name, config.batch_size)


def _recipe(
    config: TrainConfig, train_rows: list[Any]
) -> tuple[dict[str, Any], dict[str, dict[str, int]]]:
    """make_dataset's extra arguments for --balance-sources and --augment-acquisition, and the
    class x collection counts of the training images (recorded when balancing)."""
    recipe: dict[str, Any] = {}
    composition: dict[str, dict[str, int]] = {}
    if config.balance_sources:
        from cxr_covid.training import balance

        # The manifest's `collection` (unknown when not recorded); an augmented copy carries
        # the collection of the image it was made from.
        sources = [r.collection for r in train_rows]
        labels = [r.label for r in train_rows]
        recipe["sample_weights"] = balance.source_weights(labels, sources)
        composition = balance.composition(labels, sources)
    if config.augment_acquisition:
        from cxr_covid.training import acquisition

        recipe["transform"] = acquisition.batch_transform(config.seed)
    return recipe, composition


def _fit(placement: Placement, model: Any, data: Any, **kwargs: Any) -> None:
    if placement.workers > 1:
        # Keras 3.x's eager "symbolic build" calls strategy.reduce on a whole (x, y) batch,
        # which MultiWorkerMirroredStrategy's collectives reject. Without a strategy pinned
        # on the model, Keras builds it while tracing the step instead, and takes the
        # strategy from the enclosing scope, so training is still distributed.
        model._distribute_strategy = None
        with placement.strategy.scope():
            model.fit(data, **kwargs)
    else:
        model.fit(data, **kwargs)


def _stopped_early(config: TrainConfig, state: _State) -> bool:
    return config.early_stopping is not None and state.wait >= config.early_stopping


@functools.cache
def _tracker_class() -> type:
    """The Keras callback class, made on first use so importing this module (for option
    checks and --summary errors) does not import Keras."""
    import keras

    class _Tracker(keras.callbacks.Callback):  # type: ignore[misc]
        """Per epoch: history, best weights, early stopping, the checkpoint, the report."""

        def __init__(
            self,
            run: _RunContext,
            best_weights: list[np.ndarray] | None,
            placement: Placement,
            steps: int,
            train_images: int,
            started: float,
        ) -> None:
            super().__init__()
            self._mark = started  # wall time is added to state.total_seconds epoch by epoch
            self.run = run
            self.run_id, self.config, self.state = run.run_id, run.config, run.state
            self.best_weights = best_weights
            self.placement, self.steps, self.train_images = placement, steps, train_images
            self.folder = run.folder
            self._task = ""
            self._epoch_start = 0.0
            self._train_end = 0.0
            self._epochs_this_process = 0
            self.first_epoch_train_time = 0.0
            self.saved_epochs = run.state.epochs_done

        def finish_timing(self) -> None:
            now = time.perf_counter()
            self.state.total_seconds += now - self._mark
            self._mark = now
            if self.state.timed_images == 0 and self.first_epoch_train_time > 0:
                self.state.train_seconds += self.first_epoch_train_time
                self.state.timed_images += self.train_images

        def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            self._epoch_start = time.perf_counter()
            self._train_end = 0.0
            self._task = f"Epoch {epoch + 1}/{self.config.epochs}"
            self.run.reporter.start(self._task, total=self.steps, unit="steps")

        def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
            self.run.reporter.advance(self._task, batch + 1)

        def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
            self._train_end = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = logs or {}
            self.run.reporter.finish(self._task)
            now = time.perf_counter()
            seconds = now - self._epoch_start
            state = self.state
            state.total_seconds += now - self._mark
            self._mark = now
            self._epochs_this_process += 1
            # The first epoch of a process includes graph tracing: keep it out of the
            # throughput figure unless it is the only epoch there is (see `finish_timing`).
            train_time = (self._train_end or now) - self._epoch_start
            if self._epochs_this_process == 1:
                self.first_epoch_train_time = train_time
            else:
                state.train_seconds += train_time
                state.timed_images += self.train_images
            values = {
                "loss": float(logs.get("loss", float("nan"))),
                "accuracy": float(logs.get("accuracy", float("nan"))),
                "val_loss": float(logs.get("val_loss", float("nan"))),
                "val_accuracy": float(logs.get("val_accuracy", float("nan"))),
                "seconds": round(seconds, 3),
            }
            for key in HISTORY_COLUMNS:
                state.history.setdefault(key, []).append(values[key])
            state.epochs_done = epoch + 1
            improved = values["val_accuracy"] > state.best_val_accuracy
            if improved:
                state.best_val_accuracy = values["val_accuracy"]
                state.best_val_loss = values["val_loss"]
                state.best_epoch = epoch + 1
                state.wait = 0
                self.best_weights = [np.array(w) for w in self.model.get_weights()]
            else:
                state.wait += 1
            stopping = _stopped_early(self.config, state)
            if stopping:
                self.model.stop_training = True
            if self.placement.is_chief:
                _write_run(
                    self.folder, self.run_id, self.config, state, self.model, self.best_weights
                )
                self.saved_epochs = state.epochs_done
            else:
                # Saving inside a multi-worker strategy runs collective ops, so every worker
                # must save; the others write to a scratch folder that is thrown away.
                scratch = Path(tempfile.mkdtemp(prefix="cxr-covid-worker-"))
                try:
                    self.model.save(scratch / CHECKPOINT_FILE)
                finally:
                    shutil.rmtree(scratch, ignore_errors=True)
            if self.run.on_epoch:
                durations = state.history["seconds"]
                recent = durations[-3:]  # the ETA follows the last three epochs
                remaining = 0 if stopping else self.config.epochs - state.epochs_done
                self.run.on_epoch(
                    EpochReport(
                        run_id=self.run_id,
                        epoch=epoch + 1,
                        epochs=self.config.epochs,
                        loss=values["loss"],
                        accuracy=values["accuracy"],
                        val_loss=values["val_loss"],
                        val_accuracy=values["val_accuracy"],
                        seconds=seconds,
                        eta_seconds=remaining * (sum(recent) / len(recent)),
                        best_epoch=state.best_epoch,
                        best_val_accuracy=state.best_val_accuracy,
                        improved=improved,
                        stopping_early=stopping,
                    )
                )

    return _Tracker


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
