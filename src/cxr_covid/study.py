"""The study as data: its published results table and the settings `reproduce` runs with.

Lázaro Herrasti & Barco Terrones (2020), results.png: test accuracy in percent, Total /
Covid-19 / Healthy / Pneumonia, on a test split of 435 images (33 COVID-19). The figures are
as printed (apparently truncated, not rounded: 26/33 = 78.79 % is printed 78.78).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from cxr_covid import classes
from cxr_covid.errors import UsageError

TOTAL = "total"
TABLE_COLUMNS: tuple[str, ...] = (TOTAL, *classes.STUDY_CLASSES)

PUBLISHED_TEST_IMAGES = 435
PUBLISHED_COVID_TEST_IMAGES = 33
STUDY_RELEASE = 1  # the first Kaggle release
RELEASE_1_COUNTS: dict[str, int] = {
    classes.COVID: 219,
    classes.NORMAL: 1341,
    classes.VIRAL_PNEUMONIA: 1345,
}
STUDY_AUGMENT_FACTOR = 5
STUDY_SEED = 42


@dataclass(frozen=True)
class StudyModel:
    """One row of the study: which network, with or without augmentation, and its results."""

    key: str  # stable id used in run folders and tables
    label: str  # as the study names the row
    architecture: str
    augment: bool
    published: dict[str, float]  # column -> accuracy in percent

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


STUDY_MODELS: tuple[StudyModel, ...] = (
    StudyModel(
        "baseline-noaug",
        "Baseline, no augmentation",
        "baseline",
        False,
        {TOTAL: 95.41, classes.COVID: 78.78, classes.NORMAL: 98.50, classes.VIRAL_PNEUMONIA: 95.04},
    ),
    StudyModel(
        "baseline-aug",
        "Baseline, augmentation",
        "baseline",
        True,
        {TOTAL: 95.64, classes.COVID: 84.84, classes.NORMAL: 97.01, classes.VIRAL_PNEUMONIA: 96.03},
    ),
    StudyModel(
        "inception-aug",
        "Inception, augmentation",
        "inception",
        True,
        {TOTAL: 95.41, classes.COVID: 87.87, classes.NORMAL: 97.01, classes.VIRAL_PNEUMONIA: 95.04},
    ),
)


def study_model(key: str) -> StudyModel:
    for model in STUDY_MODELS:
        if model.key == key:
            return model
    raise KeyError(key)


@dataclass(frozen=True)
class Preset:
    """How `reproduce` trains: the study's protocol (paper) or a small stand-in (quick)."""

    name: str
    image_size: int
    epochs: int
    batch_size: int
    learning_rate: float = 1e-3  # Adam's default, as the study used
    seed: int = STUDY_SEED
    augment_factor: int = STUDY_AUGMENT_FACTOR
    release: int | None = STUDY_RELEASE
    study_protocol: bool = True
    description: str = ""
    notes: list[str] = field(default_factory=list)
    # TrainConfig options every model of the preset trains with (the robust preset's recipe).
    recipe: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, Preset] = {
    "paper": Preset(
        name="paper",
        image_size=224,
        epochs=30,
        batch_size=32,
        description=(
            "the study's protocol: first Kaggle release, 70/15/15 split (seed 42), COVID-19 "
            "training images augmented 5x, 224 px, Adam 1e-3, 30 epochs, batch 32, best "
            "validation accuracy kept"
        ),
    ),
    "quick": Preset(
        name="quick",
        image_size=64,
        epochs=5,
        batch_size=32,
        study_protocol=False,
        description=(
            "NOT the study's protocol: 64 px and 5 epochs so that it finishes in minutes on a "
            "laptop CPU; same data, split, augmentation and networks"
        ),
    ),
    "robust": Preset(
        name="robust",
        image_size=224,
        epochs=30,
        batch_size=32,
        study_protocol=False,
        # Round 5 of docs/shortcut-audit.md: `compare` ranked this recipe first on external
        # cohorts (3 seeds); it was --balance-sources --augment-acquisition before.
        recipe={"balance_sources": True, "augment_acquisition": True, "augment_markers": True},
        description=(
            "NOT the study's protocol: its networks and settings trained with the recipe "
            "compare ranked best on external cohorts (--balance-sources --augment-acquisition "
            "--augment-markers, docs/shortcut-audit.md round 5); it still misses many healthy "
            "children of another period: judge it by the audit and the external sets"
        ),
    ),
}


def preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r} (choose from: {', '.join(PRESETS)})") from None


def verdict(published_percent: float, low: float, high: float) -> str:
    """'inside' when the study's figure lies in our 95 % interval [low, high] (fractions), else
    'outside'; 'n/a' when we have no interval (no test image of that class).

    The published figures are truncated to two decimals, so a value within 0.01 points of a
    bound counts as inside.
    """
    if low != low or high != high:  # nan
        return "n/a"
    value = published_percent / 100.0
    slack = 0.0001
    return "inside" if low - slack <= value <= high + slack else "outside"
