"""What `cxr-covid info` reports: versions, the home, devices, datasets and models."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Any

from cxr_covid import paths
from cxr_covid.about import __version__
from cxr_covid.data.dataset import list_datasets
from cxr_covid.errors import CxrCovidError
from cxr_covid.models import store


@dataclass
class DatasetSummary:
    name: str
    source: str
    images: int
    classes: dict[str, int]
    splits: dict[str, int]
    augmented: int
    created: str
    broken: str | None = None  # why its records cannot be read; None for a good dataset


@dataclass
class ModelSummary:
    id: str
    architecture: str
    dataset: str
    image_size: int
    augmented: bool
    val_accuracy: float | None
    val_images: int
    test_accuracy: float | None
    test_images: int
    created: str
    broken: str | None = None  # why the record cannot be used; None for a good model


@dataclass
class SystemInfo:
    versions: dict[str, str]
    home: str
    home_overridden: bool
    devices: list[dict[str, str]]
    datasets: list[DatasetSummary] = field(default_factory=list)
    models: list[ModelSummary] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _devices() -> tuple[dict[str, str], list[dict[str, str]]]:
    import keras
    import tensorflow as tf

    versions = {"tensorflow": tf.__version__, "keras": keras.__version__}
    devices = [{"name": d.name, "type": d.device_type} for d in tf.config.list_physical_devices()]
    return versions, devices


def summarize_datasets() -> list[DatasetSummary]:
    summaries = []
    for ds in list_datasets():
        try:
            rows = ds.rows()
            info = ds.info()
        except CxrCovidError as exc:  # listed with its reason, as a broken model is
            summaries.append(DatasetSummary(ds.name, "", 0, {}, {}, 0, "", broken=str(exc)))
            continue
        classes: dict[str, int] = {}
        splits: dict[str, int] = {}
        augmented = 0
        for row in rows:
            if row.origin != "original":
                augmented += 1
                continue
            classes[row.label] = classes.get(row.label, 0) + 1
            splits[row.split] = splits.get(row.split, 0) + 1
        summaries.append(
            DatasetSummary(
                name=ds.name,
                source=str(info.get("source", {}).get("kind", "?"))
                if isinstance(info.get("source"), dict)
                else str(info.get("source", "?")),
                images=sum(classes.values()),
                classes=classes,
                splits=splits,
                augmented=augmented,
                created=str(info.get("created", "")),
            )
        )
    return summaries


def _latest_accuracy(record: store.ModelRecord, split: str) -> tuple[float | None, int]:
    """(accuracy, images) of the newest saved evaluation on the dataset's `split`."""
    for evaluation in reversed(record.evaluations):
        if (
            evaluation.split == split
            and evaluation.accuracy is not None
            and (evaluation.source or "dataset").startswith("dataset")
        ):
            return evaluation.accuracy, evaluation.n or 0
    return None, 0


def summarize_models() -> list[ModelSummary]:
    """Every model in the store; a broken record is listed with its reason, never hidden and
    never in the way of the others."""
    summaries = []
    for model in store.list_models():
        try:
            summaries.append(_summarize(model.record()))
        except (CxrCovidError, ValueError, TypeError, AttributeError) as exc:
            summaries.append(_broken(model.id, str(exc)))
    return summaries


def _broken(model_id: str, reason: str) -> ModelSummary:
    return ModelSummary(
        id=model_id,
        architecture="",
        dataset="",
        image_size=0,
        augmented=False,
        val_accuracy=None,
        val_images=0,
        test_accuracy=None,
        test_images=0,
        created="",
        broken=reason,
    )


def architecture_label(record: store.ModelRecord) -> str:
    """The architecture as listed: an ensemble says how many members it averages."""
    if record.members:
        return f"{record.architecture} ({len(record.members)} members)"
    return record.architecture


def _summarize(record: store.ModelRecord) -> ModelSummary:
    val = record.metrics.get("best_val_accuracy")
    test_accuracy, test_images = _latest_accuracy(record, "test")
    return ModelSummary(
        id=record.id,
        architecture=architecture_label(record),
        dataset=str(record.dataset.get("name", "")),
        image_size=int(record.preprocessing.get("image_size", 0)),
        augmented=bool(record.training.get("augment", False)),
        val_accuracy=float(val) if val is not None else None,
        val_images=int(record.dataset.get("val_images", 0)),
        test_accuracy=test_accuracy,
        test_images=test_images,
        created=record.created,
    )


def describe(*, with_devices: bool = True) -> SystemInfo:
    versions = {"cxr_covid": __version__, "python": platform.python_version()}
    devices: list[dict[str, str]] = []
    if with_devices:
        tf_versions, devices = _devices()
        versions.update(tf_versions)
    return SystemInfo(
        versions=versions,
        home=str(paths.home()),
        home_overridden=bool(os.environ.get(paths.HOME_ENV)),
        devices=devices,
        datasets=summarize_datasets(),
        models=summarize_models(),
    )
