"""The typed parts of a model record (model.json): the training history and saved evaluations.

Read from and written back to JSON without loss: a key this version does not know is kept in
`extra`, and the keys are written in the order they were read, so an older record read and
saved again is byte-for-byte the same (apart from what was changed on purpose).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxr_covid.errors import ModelError

JsonObject = dict[str, Any]  # a JSON object as json.loads returns it

HISTORY_COLUMNS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")

# The training options that define a recipe, with the value a record written before the option
# existed stands for: two models are seeds of one recipe when these agree. Every TrainConfig
# field is here except the ones that name a model or only say where and how exactly it ran
# (seed, name, group, deterministic, strategy, precision, calibrate); a test checks both against
# TrainConfig, so a new training option cannot be left out. Precision is placement, not recipe:
# `auto` gives float32 or bfloat16 depending on the machine, and the stored model is float32.
RECIPE_DEFAULTS: dict[str, Any] = {
    "arch": "baseline",
    "dataset": None,
    "epochs": 30,
    "batch_size": 32,
    "image_size": 224,
    "learning_rate": 1e-3,
    "early_stopping": None,
    "augment": False,
    "resize": "nearest",
    "balance_sources": False,
    "augment_acquisition": False,
    "input": "full",
    "normalize": "none",
    "augment_markers": False,
    "adversarial_source": False,
    "adversarial_weight": 0.3,
}


def recipe_of_training(training: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe options of a record's `training` (or a TrainConfig's dict)."""
    return {name: training.get(name, default) for name, default in RECIPE_DEFAULTS.items()}


def _number(where: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ModelError(f"broken model record: {where} should be a number, not {value!r}")
    return value  # as read: 1 stays 1, so the record is written back unchanged


def _count(where: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ModelError(f"broken model record: {where} should be a whole number, not {value!r}")
    return value


def _text(where: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise ModelError(f"broken model record: {where} should be text, not {value!r}")


def _object(where: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ModelError(f"broken model record: {where} should be an object, not {value!r}")
    return value


def _ordered(keys: tuple[str, ...], values: Mapping[str, object]) -> JsonObject:
    """`values` in the order of `keys` (those read), then any new ones in their own order."""
    out: JsonObject = {k: values[k] for k in keys if k in values}
    out.update({k: v for k, v in values.items() if k not in out})
    return out


# --- history --------------------------------------------------------------------------------


@dataclass
class History:
    """Per-epoch figures of a training run (one list entry per epoch)."""

    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)  # metrics of other versions
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # as read / written

    @property
    def epochs(self) -> int:
        return max((len(v) for v in self.columns().values()), default=0)

    def columns(self) -> dict[str, list[float]]:
        """The recorded metrics, by name, in the record's order."""
        known = {name: getattr(self, name) for name in HISTORY_COLUMNS}
        present = {k: v for k, v in known.items() if k in self.keys or v}
        return _ordered(self.keys, {**present, **self.extra})

    def to_dict(self) -> dict[str, list[float]]:
        return self.columns()

    @classmethod
    def from_dict(cls, data: object) -> History:
        values = _object("history", data)
        columns: dict[str, list[float]] = {}
        for name, column in values.items():
            if not isinstance(column, list):
                raise ModelError(
                    f"broken model record: history should map each metric to a list, "
                    f"not {name}={column!r}"
                )
            for value in column:
                _number(f"history.{name}", value)
            columns[name] = column
        return cls(
            loss=columns.get("loss", []),
            accuracy=columns.get("accuracy", []),
            val_loss=columns.get("val_loss", []),
            val_accuracy=columns.get("val_accuracy", []),
            seconds=columns.get("seconds", []),
            extra={k: v for k, v in columns.items() if k not in HISTORY_COLUMNS},
            keys=tuple(values),
        )


# --- evaluations ----------------------------------------------------------------------------


@dataclass
class ClassFigures:
    """One class of a saved evaluation: its accuracy (= recall), count and AUC."""

    accuracy: float | None = None
    correct: int | None = None  # absent in the oldest records: derived from accuracy x n
    n: int = 0
    auc: float | None = None
    extra: JsonObject = field(default_factory=dict)  # accuracy_ci and anything newer
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> JsonObject:
        values: JsonObject = {}
        for name in ("accuracy", "correct", "n", "auc"):
            if name in self.keys or getattr(self, name) is not None:
                values[name] = getattr(self, name)
        return _ordered(self.keys, {**values, **self.extra})

    @classmethod
    def from_dict(cls, data: object, where: str) -> ClassFigures:
        values = _object(where, data)
        known = {"accuracy", "correct", "n", "auc"}
        return cls(
            accuracy=_number(f"{where}.accuracy", values.get("accuracy")),
            correct=_count(f"{where}.correct", values.get("correct")),
            n=_count(f"{where}.n", values.get("n")) or 0,
            auc=_number(f"{where}.auc", values.get("auc")),
            extra={k: v for k, v in values.items() if k not in known},
            keys=tuple(values),
        )


_EVALUATION_TEXT = ("split", "source", "dataset", "split_sha256", "created")
_EVALUATION_NUMBERS = ("accuracy", "balanced_accuracy", "macro_f1")
_EVALUATION_COUNTS = ("correct", "n", "failed")


@dataclass
class SavedEvaluation:
    """One entry of the record's `evaluations`, as `eval` saves it (`models show`, the card).

    Keys this class does not name (the decision figures of eval_decisions, kinds written by
    other commands) stay in `extra`, shown as they are.
    """

    split: str | None = None
    source: str | None = None
    dataset: str | None = None
    split_sha256: str | None = None
    accuracy: float | None = None
    accuracy_ci: list[float | None] | None = None
    correct: int | None = None
    n: int | None = None
    per_class: dict[str, ClassFigures] = field(default_factory=dict)
    balanced_accuracy: float | None = None
    macro_f1: float | None = None
    confusion_matrix: list[list[int]] | None = None
    failed: int | None = None
    created: str | None = None
    extra: JsonObject = field(default_factory=dict)
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)

    @property
    def where(self) -> str:
        """What it was evaluated on, in words: its source, else its split."""
        return self.source or self.split or str(self.extra.get("kind", "?"))

    @property
    def is_standard(self) -> bool:
        """Whether this is an `eval` result (n and an accuracy), not another kind of entry."""
        return self.n is not None and (self.correct is not None or self.accuracy is not None)

    def to_dict(self) -> JsonObject:
        values: JsonObject = {}
        for name in (*_EVALUATION_TEXT, *_EVALUATION_NUMBERS, *_EVALUATION_COUNTS):
            if name in self.keys or getattr(self, name) is not None:
                values[name] = getattr(self, name)
        if "accuracy_ci" in self.keys or self.accuracy_ci is not None:
            values["accuracy_ci"] = self.accuracy_ci
        if "confusion_matrix" in self.keys or self.confusion_matrix is not None:
            values["confusion_matrix"] = self.confusion_matrix
        if "per_class" in self.keys or self.per_class:
            values["per_class"] = {c: f.to_dict() for c, f in self.per_class.items()}
        return _ordered(self.keys, {**values, **self.extra})

    @classmethod
    def from_dict(cls, data: object, where: str = "evaluation") -> SavedEvaluation:
        values = _object(where, data)
        per_class = values.get("per_class")
        matrix = values.get("confusion_matrix")
        ci = values.get("accuracy_ci")
        if matrix is not None and not (
            isinstance(matrix, list) and all(isinstance(row, list) for row in matrix)
        ):
            raise ModelError(f"broken model record: {where}.confusion_matrix is not a matrix")
        if ci is not None and not isinstance(ci, list):
            raise ModelError(f"broken model record: {where}.accuracy_ci should be a list")
        known = {
            *_EVALUATION_TEXT,
            *_EVALUATION_NUMBERS,
            *_EVALUATION_COUNTS,
            "accuracy_ci",
            "per_class",
            "confusion_matrix",
        }
        text = {k: _text(f"{where}.{k}", values.get(k)) for k in _EVALUATION_TEXT}
        number = {k: _number(f"{where}.{k}", values.get(k)) for k in _EVALUATION_NUMBERS}
        count = {k: _count(f"{where}.{k}", values.get(k)) for k in _EVALUATION_COUNTS}
        return cls(
            split=text["split"],
            source=text["source"],
            dataset=text["dataset"],
            split_sha256=text["split_sha256"],
            created=text["created"],
            accuracy=number["accuracy"],
            balanced_accuracy=number["balanced_accuracy"],
            macro_f1=number["macro_f1"],
            correct=count["correct"],
            n=count["n"],
            failed=count["failed"],
            accuracy_ci=ci,
            confusion_matrix=matrix,
            per_class={
                str(c): ClassFigures.from_dict(f, f"{where}.per_class.{c}")
                for c, f in _object(f"{where}.per_class", per_class or {}).items()
            },
            extra={k: v for k, v in values.items() if k not in known},
            keys=tuple(values),
        )


def evaluations_from_list(data: object) -> list[SavedEvaluation]:
    if not isinstance(data, list):
        raise ModelError(f"broken model record: evaluations should be a list, not {data!r}")
    return [SavedEvaluation.from_dict(e, f"evaluations[{i}]") for i, e in enumerate(data)]
