"""The options of one training run (`TrainConfig`), checked before anything is built."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from cxr_covid import models
from cxr_covid.data.dataset import check_name
from cxr_covid.data.images import RESIZE_METHODS
from cxr_covid.data.lungs import INPUTS
from cxr_covid.data.normalize import NORMALIZE_MODES
from cxr_covid.errors import UsageError
from cxr_covid.training import limits
from cxr_covid.training.distribute import STRATEGIES
from cxr_covid.training.precision import check_request as check_precision


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
    normalize: str = "none"  # issue 19: intensity standardisation (data/normalize.py)
    augment_markers: bool = False  # issue 19: burned-in marker augmentation (markers.py)
    # Issue 19: a gradient-reversal head against the collection, within class (adversarial.py).
    adversarial_source: bool = False
    adversarial_weight: float = limits.DEFAULT_ADVERSARIAL_WEIGHT

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
        if not (0 < self.adversarial_weight <= limits.MAX_ADVERSARIAL_WEIGHT):  # refuses NaN
            raise UsageError(
                f"--adversarial-weight must be above 0 and at most "
                f"{limits.MAX_ADVERSARIAL_WEIGHT:g} (got {self.adversarial_weight})"
            )
        if self.normalize not in NORMALIZE_MODES:
            raise UsageError(
                f"unknown --normalize {self.normalize!r} (choose from: none, equalize, clahe)"
            )
        if self.name is not None:
            check_name(self.name)


def _check_range(option: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise UsageError(f"{option} must be between {low} and {high} (got {value})")
