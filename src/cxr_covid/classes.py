"""The diagnostic classes: canonical names, the study's label order, display names, aliases.

Labels follow the study's notebook: COVID-19 = 0, Healthy (NORMAL) = 1, Viral Pneumonia = 2.
Lung opacity (only in later Kaggle releases) is opt-in and gets label 3.
"""

from __future__ import annotations

import re

COVID = "covid"
NORMAL = "normal"
VIRAL_PNEUMONIA = "viral_pneumonia"
LUNG_OPACITY = "lung_opacity"

ALL_CLASSES: tuple[str, ...] = (COVID, NORMAL, VIRAL_PNEUMONIA, LUNG_OPACITY)
STUDY_CLASSES: tuple[str, ...] = (COVID, NORMAL, VIRAL_PNEUMONIA)

DISPLAY_NAMES: dict[str, str] = {
    COVID: "Covid-19",
    NORMAL: "Healthy",
    VIRAL_PNEUMONIA: "Pneumonia",
    LUNG_OPACITY: "Lung opacity",
}

# Folder names seen in the Kaggle releases and in other public collections, normalised by
# `_key` (lower case, letters and digits only) so "Viral Pneumonia", "viral_pneumonia" and
# "VIRAL-PNEUMONIA" all match.
_ALIASES: dict[str, str] = {
    "covid": COVID,
    "covid19": COVID,
    "covid19positive": COVID,
    "sarscov2": COVID,
    "normal": NORMAL,
    "healthy": NORMAL,
    "viralpneumonia": VIRAL_PNEUMONIA,
    "pneumonia": VIRAL_PNEUMONIA,
    "pneumoniaviral": VIRAL_PNEUMONIA,
    "viral": VIRAL_PNEUMONIA,
    "lungopacity": LUNG_OPACITY,
    "opacity": LUNG_OPACITY,
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical(name: str, extra_aliases: dict[str, str] | None = None) -> str | None:
    """The canonical class for a folder or label name, or None if it is not recognised."""
    if extra_aliases:
        for alias, target in extra_aliases.items():
            if _key(alias) == _key(name):
                return target
    return _ALIASES.get(_key(name))


def display_name(cls: str) -> str:
    return DISPLAY_NAMES.get(cls, cls)


def label_order(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Order classes the way the study numbers them (covid, normal, viral, lung opacity)."""
    known = [c for c in ALL_CLASSES if c in classes]
    return known + sorted(c for c in classes if c not in ALL_CLASSES)
