"""The fit loop: check the data, place the work, cache the splits, build or load, fit the
epochs (checkpointed one by one by the tracker), then calibrate, record and save.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from cxr_covid import models
from cxr_covid.data import pipeline
from cxr_covid.data.images import Preprocessing, apply_input
from cxr_covid.data.manifest import AUGMENTED, manifest_hash
from cxr_covid.errors import DataError, ModelError, UsageError
from cxr_covid.models import store
from cxr_covid.training import resume_state
from cxr_covid.training import tracker as epoch_tracker
from cxr_covid.training.config import TrainConfig
from cxr_covid.training.context import Rows, RunContext, stopped_early
from cxr_covid.training.distribute import Placement
from cxr_covid.training.events import RunInfo, TrainingInterrupted, TrainResult
from cxr_covid.training.record import build_record, images_per_second, save_model
from cxr_covid.training.run_folder import (
    BEST_FILE,
    RNG_FILE,
    RunState,
    load_best_weights,
    load_checkpoint,
    write_run,
)

Transform = Callable[[np.ndarray, np.ndarray], np.ndarray]


def compile_model(model: Any, learning_rate: float) -> None:
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


def execute(run: RunContext) -> TrainResult:
    """`_train_run`, leaving the process's global TensorFlow settings as it found them
    (precision policy, op determinism), so a caller can train again with other options."""
    import keras

    from cxr_covid.training import precision

    policy_before = keras.mixed_precision.global_policy().name
    was_deterministic = _op_determinism(None)
    try:
        return _train_run(run)
    finally:
        precision.set_policy(policy_before)
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


def _train_run(run: RunContext) -> TrainResult:
    """Check the data, place the work, cache the splits, build or load, fit, record, save."""
    started = time.perf_counter()
    config = run.config
    rows = _checked_rows(run)
    placement = _place(config, run.state)
    prep = Preprocessing(
        image_size=config.image_size,
        resize=config.resize,
        input=config.input,
        normalize=config.normalize,
    )
    recipe, composition = _recipe(config, rows.train)
    head = None
    if config.adversarial_source:  # issue 19: the source head's targets (adversarial.py)
        from cxr_covid.training import adversarial

        head = adversarial.plan(
            rows.classes, rows.train, config.adversarial_weight, run.dataset.name
        )
    cache_args: dict[str, Any] = {"rows": rows.all, "classes": rows.classes}
    cache_args["reporter"] = run.reporter
    train_split = pipeline.cache_split(
        run.dataset, "train", prep, include_augmented=config.augment, **cache_args
    )
    val_split = pipeline.cache_split(run.dataset, "val", prep, **cache_args)
    model, best_weights = _build_or_load(run, placement, rows.classes, head)
    fit_train, fit_val = train_split, val_split
    if "transform" in recipe and prep != _as_acquired(prep):
        fit_train = pipeline.cache_split(
            run.dataset, "train", _as_acquired(prep), include_augmented=config.augment, **cache_args
        )
        recipe["transform"] = _then_model_view(recipe["transform"], prep)
    if head is not None:  # the labels carry the source targets while fitting
        fit_train, fit_val = head.encode_train(fit_train, rows.train), head.encode_val(val_split)
    best_weights = _fit_epochs(
        run, placement, model, best_weights, fit_train, fit_val, recipe, started
    )
    final, guards = _final_model(run, placement, rows, best_weights, train_split, val_split, head)
    record = build_record(run, placement, prep, rows, composition, train_split, val_split)
    if head is not None:
        record.training["adversarial_collections"] = head.to_record()
    if guards is not None:
        from cxr_covid.inference import scoring

        scoring.apply(record, guards)
        record.training["calibration_seconds"] = round(guards.seconds, 3)
    stored = save_model(run, placement, final, record)
    state = run.state
    return TrainResult(
        model=stored,
        record=record,
        best_epoch=state.best_epoch,
        best_val_accuracy=state.best_val_accuracy,
        seconds=state.total_seconds,
        images_per_second=images_per_second(state),
    )


def _checked_rows(run: RunContext) -> Rows:
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
    return Rows(list(rows), digest, classes, train_rows, val_rows, augmented)


def _place(config: TrainConfig, state: RunState) -> Placement:
    """The devices and strategy, with the seed and op determinism set before any model."""
    import keras

    from cxr_covid.training import distribute

    placement = distribute.place(
        config.strategy,
        config.precision,
        deterministic=config.deterministic,
        started_with=state.precision or (distribute.LEGACY_RUN if state.epochs_done else ""),
    )
    state.precision = placement.precision
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        _op_determinism(True)
    return placement


def _build_or_load(
    run: RunContext, placement: Placement, classes: list[str], head: Any = None
) -> tuple[Any, list[np.ndarray] | None]:
    """A new compiled model, or the run's checkpoint (with its RNG state and best weights);
    a new run's folder is written before the first epoch, so its name is taken."""
    config, checkpoint = run.config, run.checkpoint
    with placement.strategy.scope():
        if checkpoint is not None:
            model = load_checkpoint(checkpoint, run.run_id)
            if (checkpoint.parent / RNG_FILE).is_file():  # older run folders lack it
                resume_state.restore_rng_state(model, checkpoint.parent / RNG_FILE)
        else:
            model = models.build(config.arch, config.image_size, len(classes))
            if head is None:
                compile_model(model, config.learning_rate)
            else:  # the training model wraps the inference model (adversarial.py)
                model = head.wrap(model)
                head.compile(model, config.learning_rate)
    folder = run.folder
    best_weights: list[np.ndarray] | None = None
    if checkpoint is not None and (folder / BEST_FILE).is_file():
        best_weights = load_best_weights(folder / BEST_FILE, model, run.run_id)
    if placement.is_chief and checkpoint is None and run.state.epochs_done == 0:
        write_run(folder, run.run_id, config, run.state, None, None)
    return model, best_weights


def _fit_epochs(
    run: RunContext,
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
        tracker = epoch_tracker.tracker_class()(
            run, best_weights, placement, steps, train_split.count, started
        )
        try:
            if first_epoch < config.epochs and not stopped_early(config, state):
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
    run: RunContext,
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
    run: RunContext,
    placement: Placement,
    rows: Rows,
    best_weights: list[np.ndarray],
    train_split: pipeline.CachedSplit,
    val_split: pipeline.CachedSplit,
    head: Any = None,
) -> tuple[Any, Any]:
    """The model to store, and its calibration and OOD guard (None with --no-calibrate)."""
    from cxr_covid.training import distribute

    config = run.config
    # The stored copy is a fresh float32 model without optimizer state: a third of the size,
    # and loadable anywhere whatever precision policy the training used.
    distribute.reset_precision()
    final = models.build(config.arch, config.image_size, len(rows.classes))
    # With a source head, the weights are the training model's: set them through a wrapper
    # that shares final's layers, then drop the wrapper (the head is never stored).
    (final if head is None else head.wrap(final)).set_weights(best_weights)
    guards = _fit_guards(config, placement, final, train_split, val_split, run.dataset.name)
    return final, guards


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
    if config.augment_markers:
        from cxr_covid.training import markers

        # Markers first, then (if asked) re-acquired with the film, as a burned-in one would be.
        recipe["transform"] = markers.batch_transform(config.seed, then=recipe.get("transform"))
    return recipe, composition


def _as_acquired(prep: Preprocessing) -> Preprocessing:
    """The resized film before `--normalize` and the `--input` view."""
    return dataclasses.replace(prep, normalize="none", input="full")


def _then_model_view(transform: Transform, prep: Preprocessing) -> Transform:
    """`transform` on the film as acquired, then the model's own view of each image.

    Why: a marker is burned into the film and a re-acquisition changes the film; neither
    happens after the tool standardises the intensities or blanks the margins. Augmenting
    cached normalised pixels would train on images that predict never produces (markers drawn
    over an equalised histogram, or into the flat fill around the lungs)."""

    def transform_then_view(pixels: np.ndarray, keys: np.ndarray) -> np.ndarray:
        changed = transform(pixels, keys)
        if not len(changed):
            return changed
        return np.stack([apply_input(image, prep) for image in changed]).astype(np.uint8)

    return transform_then_view


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
