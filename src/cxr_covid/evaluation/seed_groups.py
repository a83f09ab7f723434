"""Groups of stored models trained together with several seeds (`train --seeds`), and their
summary across seeds (`eval --group`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cxr_covid import stats
from cxr_covid.errors import ModelError
from cxr_covid.evaluation.seeds import DEFAULT_PERMUTATIONS, TOTAL, Recipe, SeedSummary, summarize
from cxr_covid.models import store
from cxr_covid.models.records import recipe_of_training

GROUP_FIELD = "group"  # in a model record's `training` options


def model_group(record: store.ModelRecord) -> str | None:
    group = record.training.get(GROUP_FIELD)
    return str(group) if group else None


def group_models(name: str) -> list[store.StoredModel]:
    """The stored models of one group, oldest first; ModelError when there are none."""
    found: list[store.StoredModel] = []
    groups: set[str] = set()
    for model in store.list_models():
        try:
            group = model_group(model.record())
        except ModelError:
            continue
        if group:
            groups.add(group)
        if group == name:
            found.append(model)
    if not found:
        known = ", ".join(sorted(groups)) or "none"
        raise ModelError(f"no models in group {name!r} (known groups: {known})")
    return found


def recipe_of(record: store.ModelRecord) -> tuple[str, str]:
    """(key, label) of a model's recipe: what its group's models share but the seed."""
    t = record.training
    arch = str(t.get("arch", record.architecture))
    augment = bool(t.get("augment", False))
    for spec in _study_models():
        if spec.architecture == arch and spec.augment == augment:
            base_key, base_label = spec.key, spec.label
            break
    else:
        base_key = f"{arch}{'-aug' if augment else ''}"
        base_label = f"{arch}, {'augmentation' if augment else 'no augmentation'}"
    details = [f"{k}={v}" for k, v in recipe_of_training(t).items() if k not in ("arch", "augment")]
    return f"{base_key}|{'|'.join(details)}", base_label


def _study_models() -> Sequence[Any]:
    from cxr_covid import study

    return study.STUDY_MODELS


def recipes_of_group(
    evaluations: Sequence[Any], records: Sequence[store.ModelRecord]
) -> list[Recipe]:
    """Split a group's evaluations into recipes (rows), each model's runs in seed order."""
    grouped: dict[str, tuple[str, list[tuple[int | None, Any]]]] = {}
    for evaluation, record in zip(evaluations, records, strict=True):
        key, label = recipe_of(record)
        seed = record.training.get("seed")
        grouped.setdefault(key, (label, []))[1].append(
            (int(seed) if isinstance(seed, int) else None, evaluation)
        )
    labels = [label for label, _ in grouped.values()]
    recipes = []
    for key, (label, runs) in grouped.items():
        runs.sort(key=lambda run: (run[0] is None, run[0] or 0))
        # Two recipes with the same network differ elsewhere: show the full key then.
        shown = label if labels.count(label) == 1 else key.replace("|", " ")
        recipes.append(Recipe(key.split("|", 1)[0] if shown == label else key, shown, runs))
    # The study's rows in the study's order, then any other recipe as first seen.
    order = [spec.key for spec in _study_models()]
    first_seen = {recipe.key: i for i, recipe in enumerate(recipes)}

    def position(recipe: Recipe) -> tuple[int, int]:
        base = recipe.key.split("|", 1)[0]
        return (order.index(base) if base in order else len(order), first_seen[recipe.key])

    return sorted(recipes, key=position)


def summarize_group(
    report: Any,
    records: Sequence[store.ModelRecord],
    *,
    bootstrap: int = stats.DEFAULT_BOOTSTRAP,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 42,
) -> SeedSummary:
    """The spread view of an evaluated group (`eval --group`): one row per recipe."""
    columns = [TOTAL, *report.columns()]
    return summarize(
        recipes_of_group(report.evaluations, records),
        columns,
        bootstrap=bootstrap,
        permutations=permutations,
        seed=seed,
        confidence=report.confidence,
    )
