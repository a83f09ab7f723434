"""The model store: one folder per trained model, written atomically.

    <home>/models/<id>/model.keras   the Keras model (loaded with safe_mode=True)
    <home>/models/<id>/model.json    the record: everything needed to reproduce and use it

A model folder is built under a hidden temporary name and renamed into place, so listings
never show a half-written model.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxr_covid import atomic, paths
from cxr_covid.data.dataset import check_name
from cxr_covid.data.images import Preprocessing
from cxr_covid.errors import ModelError

MODEL_FILE = "model.keras"
RECORD_FILE = "model.json"
RECORD_FORMAT = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class ModelRecord:
    """model.json. Required fields first; the rest is filled by whoever trains or evaluates."""

    id: str
    architecture: str
    classes: list[str]
    preprocessing: dict[str, Any]
    last_conv_layer: str
    created: str = field(default_factory=now_iso)
    format: int = RECORD_FORMAT
    dataset: dict[str, Any] = field(default_factory=dict)  # name, manifest_sha256, split_sha256
    training: dict[str, Any] = field(default_factory=dict)  # every option, seed, device, time
    history: dict[str, list[float]] = field(default_factory=dict)  # per-epoch metrics
    metrics: dict[str, Any] = field(default_factory=dict)  # best epoch, val accuracy...
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # saved by `eval`
    # Empty in records written before they existed: such a model is "uncalibrated", unguarded.
    calibration: dict[str, Any] = field(default_factory=dict)  # temperature (calibration.py)
    ood: dict[str, Any] = field(default_factory=dict)  # out-of-distribution guard (ood.py)
    operating_point: dict[str, Any] = field(default_factory=dict)  # eval --save-operating-point
    versions: dict[str, str] = field(default_factory=dict)
    sharing: dict[str, Any] = field(default_factory=dict)  # packs written; where it came from

    @property
    def prep(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        try:
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            record = cls(**known)
        except TypeError as exc:
            raise ModelError(f"not a cxr-covid model record ({exc})") from exc
        if not record.classes or not isinstance(record.classes, list):
            raise ModelError("model record has no class list")
        return record


@dataclass(frozen=True)
class StoredModel:
    root: Path

    @property
    def id(self) -> str:
        return self.root.name

    @property
    def model_path(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def record_path(self) -> Path:
        return self.root / RECORD_FILE

    def record(self) -> ModelRecord:
        try:
            data = json.loads(self.record_path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelError(f"{self.root}: no {RECORD_FILE}; not a cxr-covid model") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"{self.record_path}: corrupt model record ({exc})") from exc
        if not isinstance(data, dict):
            raise ModelError(f"{self.record_path}: not a cxr-covid model record")
        return ModelRecord.from_dict(data)

    def write_record(self, record: ModelRecord) -> None:
        atomic.write_json(self.record_path, record.to_dict())

    def load(self) -> Any:
        """The Keras model, loaded with safe_mode (no arbitrary code from the file)."""
        return load_keras_file(self.model_path)


def load_keras_file(path: Path) -> Any:
    import keras

    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:
        raise ModelError(
            f"{path}: not a loadable Keras model ({type(exc).__name__}: {exc})"
        ) from exc


def model_dir(model_id: str) -> Path:
    return paths.models_dir() / check_name(model_id)


def new_model_id(architecture: str, dataset: str, augmented: bool = False) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    suffix = "-aug" if augmented else ""
    base = f"{architecture}{suffix}-{dataset}-{stamp}"[:64]
    candidate, n = base, 2
    while model_dir(candidate).exists():
        candidate = f"{base[:60]}-{n}"
        n += 1
    return candidate


def save(model: Any, record: ModelRecord, *, replace: bool = False) -> StoredModel:
    """Write a model and its record as one atomic folder in the store."""
    target = model_dir(record.id)
    if target.exists() and not replace:
        raise ModelError(f"a model named {record.id!r} already exists (use another --name)")
    with atomic.building_dir(target, replace=replace) as tmp:
        model.save(tmp / MODEL_FILE)
        atomic.write_json(tmp / RECORD_FILE, record.to_dict())
    return StoredModel(target)


def list_models() -> list[StoredModel]:
    """Complete models in the store, oldest first."""
    root = paths.models_dir()
    if not root.is_dir():
        return []
    found = [
        StoredModel(p)
        for p in root.iterdir()
        if p.is_dir()
        and not atomic.is_temporary(p)
        and (p / RECORD_FILE).is_file()
        and (p / MODEL_FILE).is_file()
    ]

    def created(m: StoredModel) -> tuple[str, str]:
        try:
            return (m.record().created, m.id)
        except ModelError:
            return ("", m.id)

    return sorted(found, key=created)


def resolve(name: str | None = None) -> StoredModel:
    """A stored model by id (or a path to a model folder), or the newest when none is given."""
    if name:
        as_path = Path(name).expanduser()
        if (as_path / RECORD_FILE).is_file():
            return StoredModel(as_path.resolve())
        root = model_dir(name) if _looks_like_id(name) else None
        if root is None or not (root / RECORD_FILE).is_file():
            known = ", ".join(m.id for m in list_models()) or "none"
            raise ModelError(f"no model named {name!r} (known: {known})")
        return StoredModel(root)
    models = list_models()
    if not models:
        raise ModelError("no trained model yet: run `cxr-covid train` first")
    return models[-1]


def _looks_like_id(name: str) -> bool:
    try:
        check_name(name)
        return True
    except Exception:
        return False


def remove(model: StoredModel) -> None:
    """Delete a model: rename it to a hidden name first, so it vanishes from listings at once."""
    hidden = atomic.temp_dir_beside(model.root)
    hidden.rmdir()
    model.root.rename(hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def library_versions() -> dict[str, str]:
    """Versions worth recording with a model (imports TensorFlow)."""
    import platform

    import keras
    import numpy
    import tensorflow as tf

    from cxr_covid import __version__

    return {
        "cxr_covid": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
