"""The model record written when training ends, and the save into the store."""

from __future__ import annotations

import shutil
from typing import Any

from cxr_covid import models
from cxr_covid.data import pipeline
from cxr_covid.data.images import Preprocessing
from cxr_covid.data.manifest import split_hash
from cxr_covid.models import store
from cxr_covid.models.records import History
from cxr_covid.training.context import Rows, RunContext
from cxr_covid.training.distribute import Placement
from cxr_covid.training.run_folder import RunState, check_name_free


def images_per_second(state: RunState) -> float:
    return state.timed_images / state.train_seconds if state.train_seconds else 0.0


def build_record(
    run: RunContext,
    placement: Placement,
    prep: Preprocessing,
    rows: Rows,
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
            "images_per_second": round(images_per_second(state), 2),
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


def save_model(
    run: RunContext, placement: Placement, final: Any, record: store.ModelRecord
) -> store.StoredModel:
    """Store the model (chief only) and drop the run folder it no longer needs."""
    if not placement.is_chief:
        return store.StoredModel(store.model_dir(run.run_id))
    check_name_free(run.run_id)  # taken while this run trained: keep the run, say how
    stored = store.save(final, record)
    shutil.rmtree(run.folder, ignore_errors=True)
    return stored
