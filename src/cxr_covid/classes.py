"""The diagnostic classes: canonical names, the study's label order, display names, aliases.

Labels follow the study's notebook: COVID-19 = 0, Healthy (NORMAL) = 1, Viral Pneumonia = 2.
Lung opacity (only in later Kaggle releases) is opt-in and gets label 3.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from cxr_covid.text import split_list

COVID = "covid"
NORMAL = "normal"
VIRAL_PNEUMONIA = "viral_pneumonia"
LUNG_OPACITY = "lung_opacity"

ALL_CLASSES: tuple[str, ...] = (COVID, NORMAL, VIRAL_PNEUMONIA, LUNG_OPACITY)
STUDY_CLASSES: tuple[str, ...] = (COVID, NORMAL, VIRAL_PNEUMONIA)

# The one vocabulary every table, message and picture uses: the CLI's and the CSV's class
# names (covid, normal, viral_pneumonia) written as words, so a reader matches them at sight.
DISPLAY_NAMES: dict[str, str] = {
    COVID: "COVID-19",
    NORMAL: "normal",
    VIRAL_PNEUMONIA: "viral pneumonia",
    LUNG_OPACITY: "lung opacity",
}

# The study's own table headings, used only where its published table is shown beside ours
# (reproduce's comparison, the seed tables' "study:" columns), so both can be read against
# the paper.
STUDY_HEADINGS: dict[str, str] = {
    COVID: "Covid-19",
    NORMAL: "Healthy",
    VIRAL_PNEUMONIA: "Pneumonia",
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
    """How a class is written for people: `COVID-19`, `normal`, `viral pneumonia`."""
    return DISPLAY_NAMES.get(cls, cls)


def study_heading(cls: str) -> str:
    """The study's heading for a class (`Covid-19`, `Healthy`, `Pneumonia`), for the
    published figures only; other classes fall back to `display_name`."""
    return STUDY_HEADINGS.get(cls, display_name(cls))


def label_order(classes: list[str] | tuple[str, ...]) -> list[str]:
    """Order classes the way the study numbers them (covid, normal, viral, lung opacity)."""
    known = [c for c in ALL_CLASSES if c in classes]
    return known + sorted(c for c in classes if c not in ALL_CLASSES)


# `--class-map FOLDER=skip` leaves a folder out on purpose (download and eval alike).
SKIP = "skip"
_SKIP_WORDS = ("skip", "ignore")


def parse_class_map(items: str | Sequence[str] | None) -> dict[str, str]:
    """`--class-map` values -> {folder: canonical class or SKIP}.

    Accepts one comma-separated string or several (`--class-map A=covid --class-map B=skip`);
    targets may be aliases ("COVID-19=covid", "sick=COVID"). Raises UsageError naming the
    entry that is not FOLDER=CLASS.
    """
    from cxr_covid.errors import UsageError

    texts = [items] if isinstance(items, str) else list(items or [])
    mapping: dict[str, str] = {}
    for text in texts:
        for part in split_list(text):
            folder, sep, target = (p.strip() for p in part.rpartition("="))
            if not sep or not folder or not target:
                raise UsageError(f"--class-map wants FOLDER=CLASS, got {part.strip()!r}")
            if target.lower() in _SKIP_WORDS:
                mapping[folder] = SKIP
                continue
            resolved = target if target in ALL_CLASSES else canonical(target)
            if resolved is None:
                raise UsageError(
                    f"--class-map {part.strip()!r}: unknown class {target!r} "
                    f"(choose from: {', '.join(ALL_CLASSES)}, or skip)"
                )
            mapping[folder] = resolved
    return mapping
