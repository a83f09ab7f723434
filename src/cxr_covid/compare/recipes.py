"""Recipes: named bundles of `TrainConfig` options, the one table `compare` and its `--list` read.

    recipe("acquisition").options  ->  {"balance_sources": True, "augment_acquisition": True}
    parse_recipe("mine=--normalize clahe --augment-markers")  ->  Recipe("mine", {...})

`robust` is read from `study.PRESETS["robust"].recipe`, so `reproduce --preset robust` and
`compare --recipe robust` cannot drift apart. A custom recipe is written with the same flags
`cxr-covid train` takes (`RECIPE_FLAGS`; a test checks they are train's); options that belong
to the grid (dataset, epochs, image size, seeds) are refused, as is anything unknown.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from cxr_covid import study
from cxr_covid.data.normalize import NORMALIZE_MODES
from cxr_covid.errors import UsageError
from cxr_covid.training import limits
from cxr_covid.training.flags import options_to_flags

PLAIN = "plain"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,23}$")


@dataclass(frozen=True)
class Recipe:
    name: str
    options: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields
    description: str = ""

    def flags(self) -> str:
        """The options as `train` flags (`--normalize clahe --augment-markers`)."""
        return options_to_flags(self.options) or "(none: the study's recipe)"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options, "flags": self.flags()}


# train's flag -> (TrainConfig field, kind, choices). kind: "flag" (no value), "choice", "float".
RECIPE_FLAGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "--augment": ("augment", "flag", ()),
    "--balance-sources": ("balance_sources", "flag", ()),
    "--augment-acquisition": ("augment_acquisition", "flag", ()),
    "--augment-markers": ("augment_markers", "flag", ()),
    "--adversarial-source": ("adversarial_source", "flag", ()),
    "--adversarial-weight": ("adversarial_weight", "float", ()),
    "--normalize": ("normalize", "choice", NORMALIZE_MODES),
    "--input": ("input", "choice", ("full", "lungs")),
    "--learning-rate": ("learning_rate", "float", ()),
    "--arch": ("arch", "choice", ("baseline", "inception")),
}
# Issue 9's recipe, the robust preset until round 5 of docs/shortcut-audit.md.
_ACQUISITION = {"balance_sources": True, "augment_acquisition": True}


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(PLAIN, {}, "the study's recipe: nothing added"),
        Recipe(
            "robust",
            dict(study.PRESETS["robust"].recipe),
            "reproduce --preset robust's recipe: compare's best in shortcut-audit round 5",
        ),
        Recipe("acquisition", _ACQUISITION, "sources balanced, acquisition augmentation"),
        Recipe("adversarial", {"adversarial_source": True}, "gradient-reversal source head"),
        Recipe("equalize", {"normalize": "equalize"}, "global histogram equalisation"),
        Recipe("clahe", {"normalize": "clahe"}, "adaptive histogram equalisation (CLAHE)"),
        Recipe("markers", {"augment_markers": True}, "random burned-in markers in the margins"),
        Recipe("lungs", {"input": "lungs"}, "only the fixed lung field is seen"),
        Recipe(
            "acquisition-markers",
            {**_ACQUISITION, "augment_markers": True},
            "acquisition plus marker augmentation",
        ),
    )
}


def recipe(name: str) -> Recipe:
    try:
        return RECIPES[name]
    except KeyError:
        known = ", ".join(RECIPES)
        raise UsageError(
            f"unknown recipe {name!r} (choose from: {known}; or NAME='--train-options')"
        ) from None


def parse_recipe(spec: str) -> Recipe:
    """A named recipe (`robust`) or a custom one (`mine=--normalize clahe --augment-markers`)."""
    if "=" not in spec:
        return recipe(spec.strip())
    name, _, text = spec.partition("=")
    name = name.strip()
    if not _NAME.match(name):
        raise UsageError(
            f"--recipe {spec!r}: a recipe name is 1-24 lower-case letters, digits, - or _"
        )
    if name in RECIPES:
        raise UsageError(f"--recipe {spec!r}: {name!r} is a built-in recipe; choose another name")
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UsageError(f"--recipe {spec!r}: {exc}") from None
    return Recipe(name, _parse_flags(spec, words), "custom")


def _parse_flags(spec: str, words: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    i = 0
    while i < len(words):
        flag, _, inline = words[i].partition("=")
        if flag not in RECIPE_FLAGS:
            allowed = ", ".join(RECIPE_FLAGS)
            raise UsageError(
                f"--recipe {spec!r}: unknown option {flag!r} (recipes take: {allowed})"
            )
        name, kind, choices = RECIPE_FLAGS[flag]
        if kind == "flag":
            if inline:
                raise UsageError(f"--recipe {spec!r}: {flag} takes no value")
            options[name] = True
            i += 1
            continue
        value = inline or (words[i + 1] if i + 1 < len(words) else "")
        if not value or value.startswith("--"):
            raise UsageError(f"--recipe {spec!r}: {flag} needs a value")
        options[name] = _value(spec, flag, kind, choices, value)
        i += 1 if inline else 2
    return options


def _value(spec: str, flag: str, kind: str, choices: tuple[str, ...], value: str) -> Any:
    if kind == "choice":
        if value not in choices:
            raise UsageError(
                f"--recipe {spec!r}: {flag} {value!r} is not one of {', '.join(choices)}"
            )
        return value
    try:
        number = float(value)
    except ValueError:
        raise UsageError(f"--recipe {spec!r}: {flag} needs a number, not {value!r}") from None
    high = limits.MAX_ADVERSARIAL_WEIGHT if flag == "--adversarial-weight" else 1.0
    if not 0 < number <= high:
        raise UsageError(f"--recipe {spec!r}: {flag} must be above 0 and at most {high:g}")
    return number


def parse_recipes(specs: list[str]) -> list[Recipe]:
    """The recipes asked for, in order, each name once (default: plain and robust)."""
    chosen = [parse_recipe(s) for s in specs] or [RECIPES[PLAIN], RECIPES["robust"]]
    names = [r.name for r in chosen]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UsageError(f"--recipe {', '.join(repeated)} given twice")
    return chosen
