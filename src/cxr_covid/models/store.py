"""The model store: one folder per trained model, written atomically.

    <home>/models/<id>/model.keras   the Keras model (loaded with safe_mode=True)
    <home>/models/<id>/model.json    the record: everything needed to reproduce and use it

A model folder is built under a hidden temporary name and renamed into place, so listings
never show a half-written model.
"""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from cxr_covid import atomic, jsonfile, paths
from cxr_covid.data.dataset import check_name
from cxr_covid.data.images import Preprocessing
from cxr_covid.errors import ModelError
from cxr_covid.models.records import History, SavedEvaluation, evaluations_from_list
from cxr_covid.models.validation import decision_rule_problem

MODEL_FILE = "model.keras"
RECORD_FILE = "model.json"
RECORD_FORMAT = 1


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def added_now() -> str:
    """`added`: to the microsecond, so two models added within a second keep their order."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


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
    history: History = field(default_factory=History)  # per-epoch metrics
    metrics: dict[str, Any] = field(default_factory=dict)  # best epoch, val accuracy...
    evaluations: list[SavedEvaluation] = field(default_factory=list)  # saved by `eval`
    # Empty in records written before they existed: such a model is "uncalibrated", unguarded.
    calibration: dict[str, Any] = field(default_factory=dict)  # temperature (calibration.py)
    ood: dict[str, Any] = field(default_factory=dict)  # out-of-distribution guard (ood.py)
    operating_point: dict[str, Any] = field(default_factory=dict)  # eval --save-operating-point
    versions: dict[str, str] = field(default_factory=dict)
    sharing: dict[str, Any] = field(default_factory=dict)  # packs written; where it came from
    # When the model entered this store (trained, imported, ensembled): what "newest" means.
    # Empty in records written before it existed (see added_at).
    added: str = ""
    audits: list[dict[str, Any]] = field(default_factory=list)  # models/audit_log.py
    # An ensemble's member networks (models/ensemble.py, `models ensemble`); empty otherwise.
    members: list[dict[str, Any]] = field(default_factory=list)

    @property
    def prep(self) -> Preprocessing:
        return Preprocessing.from_dict(self.preprocessing)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of model.json (a record read and written again is unchanged)."""
        data = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        data["history"] = self.history.to_dict()
        data["evaluations"] = [e.to_dict() for e in self.evaluations]
        for newer in _WRITTEN_WHEN_SET:  # an older record reads and writes back unchanged
            if not data[newer]:
                del data[newer]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelRecord:
        try:
            known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
            if "history" in known:
                known["history"] = History.from_dict(known["history"])
            if "evaluations" in known:
                known["evaluations"] = evaluations_from_list(known["evaluations"])
            record = cls(**known)
        except TypeError as exc:
            raise ModelError(f"not a cxr-covid model record ({exc})") from exc
        problem = record_problem(record)
        if problem:
            raise ModelError(f"broken model record: {problem}")
        return record


# Fields added after the first records: left out of model.json until they hold something.
_WRITTEN_WHEN_SET = ("added", "audits", "members")

_FIELD_TYPES: dict[str, type] = {
    "id": str,
    "architecture": str,
    "last_conv_layer": str,
    "created": str,
    "preprocessing": dict,
    "dataset": dict,
    "training": dict,
    "history": History,
    "metrics": dict,
    "evaluations": list,
    "calibration": dict,
    "ood": dict,
    "operating_point": dict,
    "versions": dict,
    "sharing": dict,
    "added": str,
    "audits": list,
    "members": list,
}


def record_problem(record: ModelRecord) -> str | None:
    """Why `record` cannot be used (a wrong type, an impossible value), or None.

    A hand-edited or damaged model.json must fail here, with its reason, rather than deep
    inside a listing or a prediction.
    """
    for name, kind in _FIELD_TYPES.items():
        value = getattr(record, name)
        if not isinstance(value, kind):
            return f"{name} should be a {kind.__name__}, not {value!r}"
    classes = record.classes
    if not isinstance(classes, list) or not classes:
        return "no class list"
    if not all(isinstance(c, str) and c for c in classes) or len(set(classes)) != len(classes):
        return f"classes should be distinct names, not {classes!r}"
    if not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in record.members):
        return "members should be objects with an id"
    try:
        Preprocessing.from_dict(record.preprocessing)
    except (TypeError, ValueError) as exc:
        return f"preprocessing: {exc}"
    return decision_rule_problem(record.calibration, record.operating_point, classes)


def check_network_matches(model: Any, record: ModelRecord, where: Path) -> None:
    """Raise ModelError when the record does not describe this network: another input size
    or channel count, or another number of classes. Predicting through such a pair would
    give every image a row of numbers that mean nothing."""
    try:
        _, height, width, channels = tuple(model.inputs[0].shape)
        outputs = model.outputs[0].shape[-1]
    except (AttributeError, IndexError, TypeError, ValueError) as exc:
        raise ModelError(f"{where}: not an image classifier ({exc})") from exc
    size = record.prep.image_size
    if (height, width) != (size, size) and None not in (height, width):
        raise ModelError(
            f"{where}: the record says {size}x{size} px inputs but the network takes "
            f"{width}x{height}; the record does not belong to this network"
        )
    if channels not in (None, 3):
        raise ModelError(f"{where}: the network takes {channels} channels, not RGB")
    if outputs is not None and outputs != len(record.classes):
        raise ModelError(
            f"{where}: the record lists {len(record.classes)} classes "
            f"({', '.join(record.classes)}) but the network has {outputs} outputs"
        )


def read_record(path: Path) -> ModelRecord:
    """model.json read and parsed into a checked ModelRecord: the one place a stored record
    is read (StoredModel.record and reload_record come here), so every check of a stored
    record belongs here."""
    try:
        data = jsonfile.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{path.parent}: no {RECORD_FILE}; not a cxr-covid model") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: corrupt model record ({exc})") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path}: not a cxr-covid model record")
    try:
        return ModelRecord.from_dict(data)
    except ModelError as exc:
        raise ModelError(f"{path}: {exc}") from exc


@dataclass(frozen=True)
class StoredModel:
    """A model folder in (or out of) the store. Its record is read and parsed once, on first
    use, and shared by everything that gets this object (predict, eval, heatmap, audit,
    calibrate, the API); `reload_record` reads it again before a read-modify-write."""

    root: Path
    _cache: dict[str, ModelRecord] = field(
        default_factory=dict, compare=False, hash=False, repr=False
    )

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
        """The parsed record (read from model.json on first use only)."""
        if "record" not in self._cache:
            self._cache["record"] = read_record(self.record_path)
        return self._cache["record"]

    def reload_record(self) -> ModelRecord:
        """The record read again from disk: keeps what another command wrote meanwhile."""
        self._cache.pop("record", None)
        return self.record()

    def write_record(self, record: ModelRecord) -> None:
        atomic.write_json(self.record_path, record.to_dict())
        self._cache["record"] = record

    def load(self) -> Any:
        """The Keras model, loaded with safe_mode (no arbitrary code from the file), checked
        against its record (input size, classes)."""
        record = self.record()
        model = load_keras_file(self.model_path)
        check_network_matches(model, record, self.root)
        return model


def load_keras_file(path: Path, *, compile: bool = False) -> Any:
    """Load a .keras file with safe_mode; every failure is a one-line ModelError."""
    import zipfile

    import keras

    if not path.is_file():
        raise ModelError(f"{path}: model file not found")
    # Keras answers "File not found" for a cut-off archive, which sends people looking for
    # a file that is right there.
    if not zipfile.is_zipfile(path):
        raise ModelError(
            f"{path}: corrupt or truncated model file, not a loadable Keras model "
            "(not a complete .keras zip archive)"
        )
    check_keras_archive(path)
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=compile)
    except Exception as exc:
        raise ModelError(f"{path}: {_load_failure(exc)}") from exc


# A .keras file is a zip of config.json + metadata.json (text: a few KB to ~1 MB for the
# study's networks) and model.weights.h5 (the weights). Keras reads the JSON whole into memory,
# so a deflate bomb there cost gigabytes on every load (issue 22, case 5). The bounds, checked
# on the declared sizes before Keras opens the file (Python's zipfile never inflates a member
# past its declared size):
MAX_KERAS_JSON_BYTES = 16 * 1024**2  # config.json / metadata.json
MAX_KERAS_UNPACKED_BYTES = 8 * 1024**3  # everything: weights of the largest network x ~90
MAX_KERAS_MEMBERS = 1000


def check_keras_archive(path: Path) -> None:
    """ModelError when the .keras zip would inflate beyond the bounds above, or inflates
    more than 100x (the dataset archives' per-member rule, data/extract.py)."""
    import zipfile

    from cxr_covid.data.extract import Limits, check_archive
    from cxr_covid.errors import ArchiveError

    limits = Limits(max_bytes=MAX_KERAS_UNPACKED_BYTES, max_members=MAX_KERAS_MEMBERS)
    try:
        with zipfile.ZipFile(path) as archive:
            members = check_archive(archive, limits, path.stat().st_size)
    except ArchiveError as exc:
        raise ModelError(f"{path}: refused model file: {exc}") from exc
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path}: corrupt or truncated model file ({exc})") from exc
    for info in members:
        if info.filename.endswith(".json") and info.file_size > MAX_KERAS_JSON_BYTES:
            raise ModelError(
                f"{path}: refused model file: its {info.filename} would inflate to "
                f"{info.file_size:,} bytes, more than the limit of {MAX_KERAS_JSON_BYTES:,} "
                "(a real one is a few KB; a bomb?)"
            )


def _load_failure(exc: Exception) -> str:
    import zipfile
    import zlib

    text = str(exc)
    if "safe_mode" in text or "Lambda" in text:
        return (
            "refused: the file carries code (a Lambda layer or custom function) that safe mode "
            "does not run; cxr-covid never executes code from a model file"
        )
    if isinstance(exc, zipfile.BadZipFile | zlib.error | EOFError) or "CRC" in text:
        return f"corrupt or truncated model file ({text.splitlines()[0] if text else exc!r})"
    first = text.splitlines()[0] if text else ""
    return f"not a loadable Keras model ({type(exc).__name__}: {first})"


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
    record.added = added_now()
    with atomic.building_dir(target, replace=replace) as tmp:
        model.save(tmp / MODEL_FILE)
        atomic.write_json(tmp / RECORD_FILE, record.to_dict())
    return StoredModel(target)


def added_at(record: ModelRecord) -> str:
    """When the model entered this store (ISO 8601, UTC). Records written before `added`
    existed fall back to their import time, else to when they were made (= trained here)."""
    imported = record.sharing.get("imported_from")
    if record.added:
        return record.added
    if isinstance(imported, dict) and isinstance(imported.get("imported"), str):
        return str(imported["imported"])
    return record.created


def list_models() -> list[StoredModel]:
    """Complete models in the store, in the order they were added to it (newest last)."""
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

    def added(m: StoredModel) -> tuple[str, str]:
        try:
            return (added_at(m.record()), m.id)
        except ModelError:
            return ("", m.id)

    return sorted(found, key=added)


def resolve(name: str | None = None) -> StoredModel:
    """A stored model by id (or a path to a model folder), or, when none is given, the one
    most recently added to the store (trained or imported)."""
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
    with atomic.writing(model.root):
        model.root.rename(hidden)
    shutil.rmtree(hidden, ignore_errors=True)


def library_versions() -> dict[str, str]:
    """Versions worth recording with a model (imports TensorFlow)."""
    import platform

    import keras
    import numpy
    import tensorflow as tf

    from cxr_covid.about import __version__

    return {
        "cxr_covid": __version__,
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
    }
