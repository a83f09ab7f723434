"""`cxr-covid compare`: train recipes x seeds on one dataset (the run-grid) and judge every
model, and each recipe's seed ensemble, on the internal test split and on external sets.

    result = run_compare(CompareOptions(dataset="mixed", recipes=[...], external=[...]))

Resumable: the grid's state is `<folder>/grid.json` and models are reused from the store, so
the same command continues where it stopped. Judging is redone each run (it is quick);
compare.json and compare.md are written atomically into the run folder at the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic, classes
from cxr_covid.compare import grid_jobs, judging
from cxr_covid.compare.grid_jobs import CompareOptions
from cxr_covid.compare.recipes import PLAIN
from cxr_covid.compare.report import (
    INTERNAL,
    CompareResult,
    PooledExternal,
    RecipeResult,
    SetInfo,
    to_markdown,
)
from cxr_covid.errors import DataError
from cxr_covid.progress import NULL, Reporter
from cxr_covid.text import format_duration
from cxr_covid.training import grid

JUDGING_TASK = "judging models"


@dataclass
class _Set:
    info: SetInfo
    paths: list[Path]
    y_true: np.ndarray  # class index per image


def run_compare(
    options: CompareOptions, reporter: Reporter = NULL, trainer: grid.Trainer | None = None
) -> CompareResult:
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import split_hash

    dataset = resolve_dataset(options.dataset)
    options.dataset = dataset.name  # pinned: a rerun cannot drift to a newer dataset
    options.validate()
    rows = dataset.rows()
    split = split_hash(rows)
    model_classes = classes.label_order(sorted({r.label for r in rows}))
    _check_adversarial(options, model_classes, rows, dataset.name)
    jobs = grid_jobs.build_jobs(options, split)
    folder = grid_jobs.run_folder(options, split)
    state = grid.GridFolder(folder)
    sets = _external_sets(options, model_classes)  # a bad folder fails before any training
    seconds, left = grid_jobs.estimate_seconds(jobs, state, dataset, reporter)
    reporter.message(
        f"compare: {len(jobs)} trainings ({left} to train, about "
        f"{format_duration(seconds, rough=True)} on this machine), run folder {folder}"
    )
    done = grid.run_grid(jobs, state, reporter, grid_jobs.hooks(reporter.message), trainer=trainer)
    model_ids = [d.model_id for d in done]
    internal = _internal_set(dataset.name, model_classes)
    all_sets = [internal, *_without_training_copies(sets, model_ids[0])]
    probabilities = _predict(model_ids, all_sets, model_classes, reporter)
    result = judge_grid(options, all_sets, jobs, model_ids, probabilities, model_classes)
    result.folder = folder
    result.trained = sum(1 for d in done if not d.reused)
    result.reused = len(done) - result.trained
    result.caveats = _caveats(dataset.name)
    if options.audit:
        from cxr_covid.compare.audits import audit_first_seeds

        audit_first_seeds(result, options, folder, reporter)
    folder.mkdir(parents=True, exist_ok=True)
    atomic.write_json(folder / "compare.json", result.to_dict())
    atomic.write_text(folder / "compare.md", to_markdown(result))
    return result


def _check_adversarial(
    options: CompareOptions, model_classes: list[str], rows: Sequence[Any], dataset: str
) -> None:
    """A source-adversarial recipe on a dataset with no source to remove is refused before
    anything trains, not after the recipes before it (training/adversarial.plan's rule)."""
    from cxr_covid.training.adversarial import plan

    train_rows = [r for r in rows if r.split == "train"]
    for recipe in options.recipes:
        if recipe.options.get("adversarial_source"):
            plan(model_classes, train_rows, 1.0, dataset)


def _internal_set(dataset: str, model_classes: list[str]) -> _Set:
    from cxr_covid.evaluation.testsets import dataset_test_set

    test = dataset_test_set(dataset, "test")
    index = {c: i for i, c in enumerate(model_classes)}
    info = SetInfo(INTERNAL, test.source, test.counts())
    return _Set(info, list(test.paths), np.array([index[x] for x in test.labels]))


def _external_sets(options: CompareOptions, model_classes: list[str]) -> list[_Set]:
    """Every cohort of every --external folder (evaluation/testsets.py's one rule)."""
    from cxr_covid.evaluation.testsets import external_test_sets

    index = {c: i for i, c in enumerate(model_classes)}
    found: list[_Set] = []
    for root in options.external:
        for images in external_test_sets(root, model_classes, options.class_map):
            name = images.name or Path(images.source.removeprefix("folder ")).name
            if any(s.info.name == name for s in found):
                name = f"{name} ({root})"
            info = SetInfo(name, images.source, images.counts())
            found.append(
                _Set(info, list(images.paths), np.array([index[x] for x in images.labels]))
            )
    return found


def _without_training_copies(sets: list[_Set], model_id: str) -> list[_Set]:
    """External images that are copies of the dataset's training or validation images measure
    memory: left out (every model of the grid shares the dataset, so one check serves all)."""
    from cxr_covid.data.overlap import overlaps_for_model
    from cxr_covid.models import store

    record = store.resolve(model_id).record()
    kept = []
    for s in sets:
        copies = overlaps_for_model(s.paths, record.dataset).paths
        keep = [i for i, p in enumerate(s.paths) if p not in copies]
        if not keep:
            raise DataError(f"every image of {s.info.source} is a training image: nothing to judge")
        info = SetInfo(s.info.name, s.info.source, s.info.counts, len(s.paths) - len(keep))
        kept.append(_Set(info, [s.paths[i] for i in keep], s.y_true[keep]))
    return kept


def _predict(
    model_ids: list[str], sets: list[_Set], model_classes: list[str], reporter: Reporter
) -> list[list[np.ndarray]]:
    """probabilities[model][set]: (images, classes), NaN rows for images that do not decode."""
    from cxr_covid.inference.batches import predict_paths
    from cxr_covid.models import store

    reporter.start(JUDGING_TASK, total=len(model_ids), unit="models")
    found = []
    for n, model_id in enumerate(model_ids, start=1):
        stored = store.resolve(model_id)
        record = stored.record()
        if list(record.classes) != model_classes:
            raise DataError(
                f"model {model_id} knows {', '.join(record.classes)}, the dataset "
                f"{', '.join(model_classes)}: it cannot be judged with the others"
            )
        model = stored.load()
        per_set = []
        for s in sets:
            probs = np.full((len(s.paths), len(record.classes)), np.nan)
            for p in predict_paths(model, s.paths, record.prep, 32):
                if p.probabilities is not None:
                    probs[p.index] = p.probabilities
            per_set.append(probs)
        found.append(per_set)
        reporter.advance(JUDGING_TASK, n)
    reporter.finish(JUDGING_TASK)
    return found


def judge_grid(
    options: CompareOptions,
    sets: Sequence[_Set],
    jobs: Sequence[grid.Job],
    model_ids: Sequence[str],
    probabilities: Sequence[Sequence[np.ndarray]],
    model_classes: list[str],
) -> CompareResult:
    """Every model and every recipe's ensemble on every set, and the tests against plain.
    Images some model could not read are left out for all, so every figure of a set is on
    the same images (McNemar needs that)."""
    readable = [
        ~np.any([np.isnan(per_set[k]).any(axis=1) for per_set in probabilities], axis=0)
        for k in range(len(sets))
    ]
    notes = [
        f"{int((~ok).sum())} image(s) of {s.info.name} could not be read and were left out"
        for s, ok in zip(sets, readable, strict=True)
        if not ok.all()
    ]
    recipes = []
    per_recipe = options.seeds  # build_jobs: recipe by recipe, seeds in order
    for r_index, recipe in enumerate(options.recipes):
        members = list(range(r_index * per_recipe, (r_index + 1) * per_recipe))
        verdicts: dict[str, list[judging.Verdict]] = {}
        ensemble: dict[str, judging.Verdict] = {}
        for k, s in enumerate(sets):
            y = s.y_true[readable[k]]
            probs = [probabilities[i][k][readable[k]] for i in members]
            verdicts[s.info.name] = [judging.judge(p, y, model_classes) for p in probs]
            ensemble[s.info.name] = judging.judge(
                judging.ensemble_probabilities(probs), y, model_classes
            )
        _add_gaps(verdicts, ensemble, INTERNAL)
        recipes.append(
            RecipeResult(
                recipe,
                [model_ids[i] for i in members],
                [jobs[i].seed for i in members],
                verdicts,
                ensemble,
                pooled=_pooled_external(sets, readable, probabilities, members, model_classes),
            )
        )
    return CompareResult(
        options.dataset or "",
        Path(),
        _options_dict(options),
        [s.info for s in sets],
        recipes,
        _against_plain(recipes, sets, readable, model_classes),
        notes=notes,
    )


def _pooled_external(
    sets: Sequence[_Set],
    readable: list[np.ndarray],
    probabilities: Sequence[Sequence[np.ndarray]],
    members: list[int],
    model_classes: list[str],
) -> PooledExternal | None:
    """The COVID-19 AUROC over every external image at once, per seed and for the ensemble:
    an external set often holds one class only (a hospital's COVID-19 films), where an AUROC
    of its own is undefined."""
    external = [k for k, s in enumerate(sets) if s.info.name != INTERNAL]
    if not external:
        return None
    y = np.concatenate([sets[k].y_true[readable[k]] for k in external])
    per_seed = [
        np.concatenate([probabilities[i][k][readable[k]] for k in external]) for i in members
    ]
    ensemble = judging.ensemble_probabilities(per_seed)
    return PooledExternal(
        images=int(y.size),
        auroc_per_seed=[judging.covid_auroc(p, y, model_classes) for p in per_seed],
        auroc_ensemble=judging.covid_auroc(ensemble, y, model_classes),
    )


def _add_gaps(
    verdicts: dict[str, list[judging.Verdict]], ensemble: dict[str, judging.Verdict], internal: str
) -> None:
    for name in verdicts:
        if name == internal:
            continue
        for own, ref in zip(verdicts[name], verdicts[internal], strict=True):
            own.gap = judging.gap(ref, own)
        ensemble[name].gap = judging.gap(ensemble[internal], ensemble[name])


def _against_plain(
    recipes: list[RecipeResult],
    sets: Sequence[_Set],
    readable: list[np.ndarray],
    model_classes: list[str],
) -> list[judging.AgainstPlain]:
    plain = next((r for r in recipes if r.recipe.name == PLAIN), None)
    if plain is None:
        return []
    found = []
    for r in recipes:
        if r is plain:
            continue
        for k, s in enumerate(sets):
            name = s.info.name
            y = s.y_true[readable[k]]
            for cls in r.ensemble[name].recall:
                found.append(
                    judging.against_plain(
                        r.recipe.name,
                        name,
                        cls,
                        (r.verdicts[name], plain.verdicts[name]),
                        (r.ensemble[name], plain.ensemble[name]),
                        y == model_classes.index(cls),
                    )
                )
    return found


def _options_dict(options: CompareOptions) -> dict[str, Any]:
    return {
        "recipes": [r.to_dict() for r in options.recipes],
        "seeds": options.seeds,
        "first_seed": options.first_seed,
        "image_size": options.image_size,
        "epochs": options.epochs,
        "batch_size": options.batch_size,
        "external": [str(p) for p in options.external],
        "audit": options.audit,
    }


SHORTCUT_NOTE = (
    "high accuracy on pooled public chest X-rays may measure where an image comes from (its "
    "collection, hospital, the patients' ages, burned-in markers) rather than the disease; the "
    "external sets are the check, and `--audit` measures it on the internal data"
)


def _caveats(dataset: str) -> list[str]:
    from cxr_covid.evaluation.testsets import dataset_caveats

    return [SHORTCUT_NOTE, *dataset_caveats(dataset)]
