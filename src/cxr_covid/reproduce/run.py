"""Run the study end to end and set our results beside the published ones.

    download (if absent) -> split -> augment (COVID-19 x5) -> train baseline without
    augmentation, baseline with, inception with -> evaluate the three on the same test
    split -> table: our accuracy (count, 95 % Wilson interval) beside the study's figure,
    with a verdict per cell (is the published figure inside our interval?).

Resumable: the run folder `<home>/reproduce/<run>/` holds `state.json`, rewritten atomically
after every finished step; rerunning the same command skips what is done (the dataset, the
augmentation, each trained model) and continues an interrupted training run from its last
epoch. The folder also receives the tables (JSON, Markdown, CSV), plots and `report.md`.

Data ingest and training live in `cxr_covid.data.ingest`, `cxr_covid.data.augment` and
`cxr_covid.training.run`; they are imported inside the functions that use them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_covid import atomic, classes, paths, stats, study
from cxr_covid.about import DISCLAIMER
from cxr_covid.errors import DataError, UsageError
from cxr_covid.evaluation.core import EvaluationReport, ModelEvaluation
from cxr_covid.evaluation.seeds import SeedSummary
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter
from cxr_covid.reproduce import seeds as reproduce_seeds
from cxr_covid.text import format_duration

STATE_FILE = "state.json"
STATE_FORMAT = 1


# --- options, events, results ---------------------------------------------------------------


@dataclass
class ReproduceOptions:
    preset: str = "paper"
    data: str | None = None  # dataset to use (or to create, when a source is given / absent)
    from_zip: Path | None = None
    url: str | None = None
    release: int | None = None  # default: the preset's (the study's first release)
    out: Path | None = None  # run folder; default <home>/reproduce/<preset>-<dataset>[...]
    image_size: int | None = None  # overrides of the preset
    epochs: int | None = None
    batch_size: int | None = None
    seed: int | None = None
    bootstrap: int = stats.DEFAULT_BOOTSTRAP
    estimate: bool = True
    restart: bool = False  # forget the run folder's state and start over
    seeds: int = 1  # train every model with seeds seed, seed + 1, ... (cxr_covid.evaluation.seeds)
    deterministic: bool = False  # deterministic TensorFlow ops while training
    # The shortcut audit (issue 9): on by default, with optional external labelled folders.
    audit: bool = True
    external: list[Path] = field(default_factory=list)
    class_map: dict[str, str] = field(default_factory=dict)
    control_epochs: int | None = None


@dataclass(frozen=True)
class TimeEstimate:
    seconds_per_step: dict[str, float]  # architecture -> measured seconds per training step
    steps: dict[str, int]  # model key -> training steps (epochs x steps per epoch)
    seconds: dict[str, float]  # model key -> estimated seconds
    cpus: int

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


@dataclass(frozen=True)
class Cell:
    column: str  # total or a class
    ours: stats.Proportion
    published: float  # percent, as printed in the study
    verdict: str  # inside / outside / n/a

    def to_dict(self) -> dict[str, Any]:
        return {
            "ours": self.ours.to_dict(),
            "published_percent": self.published,
            "verdict": self.verdict,
        }


@dataclass(frozen=True)
class Row:
    study_model: study.StudyModel
    model_id: str
    cells: list[Cell]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.study_model.key,
            "label": self.study_model.label,
            "architecture": self.study_model.architecture,
            "augment": self.study_model.augment,
            "model": self.model_id,
            "cells": {c.column: c.to_dict() for c in self.cells},
        }


@dataclass
class ReproduceResult:
    run_dir: Path
    settings: dict[str, Any]
    preset: study.Preset
    rows: list[Row]
    report: EvaluationReport
    files: list[Path] = field(default_factory=list)
    estimate: TimeEstimate | None = None
    data_source: dict[str, Any] = field(default_factory=dict)  # dataset.json's source record
    seeds: SeedSummary | None = None  # the spread across seeds, with --seeds N > 1
    audit: dict[str, Any] | None = None  # the shortcut audit's audit.json (reproduce_audit)

    def inside(self) -> tuple[int, int]:
        verdicts = [c.verdict for r in self.rows for c in r.cells if c.verdict != "n/a"]
        return sum(v == "inside" for v in verdicts), len(verdicts)

    def to_dict(self) -> dict[str, Any]:
        inside, judged = self.inside()
        return {
            "run_dir": str(self.run_dir),
            "preset": self.preset.to_dict(),
            "study_protocol": self.preset.study_protocol,
            "settings": self.settings,
            "data_source": self.data_source,
            "columns": list(study.TABLE_COLUMNS),
            "rows": [r.to_dict() for r in self.rows],
            "published_inside_our_interval": {"inside": inside, "of": judged},
            "verdict_rule": (
                "inside: the study's published figure lies within our 95 % Wilson interval"
            ),
            "evaluation": self.report.to_dict(),
            **({"seeds": self.seeds.to_dict()} if self.seeds is not None else {}),
            "audit": self.audit,
        }


# --- the run folder's state -----------------------------------------------------------------


class RunState:
    """`state.json`: the settings a run was started with and each finished step."""

    def __init__(self, root: Path, data: dict[str, Any]) -> None:
        self.root = root
        self.data = data

    @property
    def path(self) -> Path:
        return self.root / STATE_FILE

    @classmethod
    def open(cls, root: Path, settings: dict[str, Any], restart: bool) -> RunState:
        path = root / STATE_FILE
        if path.is_file() and not restart:
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError) as exc:
                raise DataError(f"{path}: unreadable run state ({exc}); use --restart") from exc
            if data.get("settings") != settings:
                changed = sorted(
                    k
                    for k in set(settings) | set(data.get("settings", {}))
                    if settings.get(k) != data.get("settings", {}).get(k)
                )
                raise UsageError(
                    f"{root} holds a run started with other settings (differs in: "
                    f"{', '.join(changed)}); choose another --out, or --restart to start over"
                )
            return cls(root, data)
        data = {
            "format": STATE_FORMAT,
            "run": uuid.uuid4().hex[:8],  # names this run's models; new on --restart
            "settings": settings,
            "started": store.now_iso(),
            "steps": {},
        }
        state = cls(root, data)
        if root.is_dir():  # a new run in a new folder is saved by its first finished step
            state.save()
        return state

    def step(self, name: str) -> dict[str, Any] | None:
        found = self.data["steps"].get(name)
        return found if isinstance(found, dict) else None

    def finish(self, name: str, **info: Any) -> None:
        self.data["steps"][name] = {**info, "finished": store.now_iso()}
        self.save()

    def save(self) -> None:
        self.data["updated"] = store.now_iso()
        atomic.write_json(self.path, self.data)


# --- steps ----------------------------------------------------------------------------------


def _default_dataset_name(options: ReproduceOptions, release: int | None) -> str:
    """The name `download` would give this source, so an existing download is reused."""
    try:
        from cxr_covid.data.ingest import resolve_source

        source = resolve_source(
            release=release if options.url is None and options.from_zip is None else None,
            url=options.url,
            from_zip=options.from_zip,
            from_dir=None,
        )
        return str(source.default_name)
    except ImportError:  # pragma: no cover - ingest ships with the package
        if options.from_zip is not None:
            return Path(options.from_zip).stem
        return f"kaggle-r{release}" if release else "kaggle-current"


def _settings(options: ReproduceOptions, preset: study.Preset, dataset: str) -> dict[str, Any]:
    source: dict[str, Any]
    if options.from_zip is not None:
        source = {"zip": str(Path(options.from_zip).expanduser().resolve())}
    elif options.url is not None:
        source = {"url": options.url}
    else:
        source = {"kaggle_release": options.release or preset.release}
    return {
        "preset": preset.name,
        "study_protocol": preset.study_protocol
        and options.image_size in (None, preset.image_size)
        and options.epochs in (None, preset.epochs)
        and options.batch_size in (None, preset.batch_size),
        "dataset": dataset,
        "source": source,
        "image_size": options.image_size or preset.image_size,
        "epochs": options.epochs or preset.epochs,
        "batch_size": options.batch_size or preset.batch_size,
        "learning_rate": preset.learning_rate,
        "seed": preset.seed if options.seed is None else options.seed,
        "augment_factor": preset.augment_factor,
        "split": [0.7, 0.15, 0.15],
        **({"recipe": dict(preset.recipe)} if preset.recipe else {}),
    }


def default_run_dir(settings: dict[str, Any], preset: study.Preset) -> Path:
    name = f"{settings['preset']}-{settings['dataset']}"
    if (
        settings["image_size"] != preset.image_size
        or settings["epochs"] != preset.epochs
        or settings["batch_size"] != preset.batch_size
        or settings["seed"] != preset.seed
    ):
        name += (
            f"-{settings['image_size']}px-{settings['epochs']}ep-b{settings['batch_size']}"
            f"-s{settings['seed']}"
        )
    return paths.reproduce_dir() / name


def model_name(state: RunState, key: str, seed: int | None = None) -> str:
    """A model id unique to this run, readable in `models list`.

    The run's random id is part of it so that `--restart` trains new models instead of
    adopting the previous run's. Seeds after the first (`--seeds`) add `-s<seed>`."""
    return f"{key}-{group_name(state)}{_seed_suffix(state, seed)}"


def group_name(state: RunState) -> str:
    """The group its models record (`cxr-covid eval --group NAME`): `<preset>-<run id>`."""
    run = (
        state.data.get("run")
        or hashlib.sha256(str(state.root.resolve()).encode("utf-8")).hexdigest()[:8]
    )
    return f"{state.data['settings']['preset']}-{run}"


def _seed_suffix(state: RunState, seed: int | None) -> str:
    """'' for the run's own --seed (so `--seeds 1` is the run it always was), else -s<seed>."""
    return "" if seed is None or seed == state.data["settings"]["seed"] else f"-s{seed}"


def _train_step(state: RunState, key: str, seed: int | None) -> str:
    suffix = _seed_suffix(state, seed)
    return f"train:{key}" + (f"@{suffix[2:]}" if suffix else "")


def _ensure_dataset(
    options: ReproduceOptions, settings: dict[str, Any], state: RunState, reporter: Reporter
) -> Any:
    from cxr_covid.data.dataset import resolve_dataset

    name = settings["dataset"]
    done = state.step("download")
    try:
        dataset = resolve_dataset(name)
    except DataError:
        dataset = None
    if dataset is not None:
        if done is None:
            reporter.message(f"dataset {name!r} is already in the home: using it")
        else:
            reporter.message(f"download: done ({name})")
        if done is None:
            state.finish("download", dataset=name, reused=True)
        return dataset
    if done is not None:
        raise DataError(
            f"dataset {name!r} recorded by this run is gone from the home; use --restart "
            "to download it again"
        )
    from cxr_covid.data.ingest import download_dataset

    source = settings["source"]
    what = (
        f"Kaggle release {source['kaggle_release']}"
        if "kaggle_release" in source
        else source.get("zip") or source.get("url")
    )
    reporter.message(f"download: {what} -> dataset {name!r}, split 70/15/15 seed 42")

    result = download_dataset(
        release=source.get("kaggle_release"),
        url=source.get("url"),
        from_zip=Path(source["zip"]) if "zip" in source else None,
        name=name,
        classes=classes.STUDY_CLASSES,
        split=(0.7, 0.15, 0.15),
        seed=study.STUDY_SEED,
        reporter=reporter,
    )
    excluded = len(getattr(result, "excluded", []) or [])
    if excluded:
        reporter.message(f"{excluded} image(s) did not decode and were left out")
    state.finish("download", dataset=name, counts=getattr(result, "counts", {}))
    return result.dataset


def _check_reachable(source: dict[str, Any]) -> None:
    """DownloadError at once when the dataset must be downloaded but the host's name cannot
    be looked up (no retries: being offline does not pass in 30 s)."""
    from cxr_covid.data.download import check_resolvable
    from cxr_covid.data.sources import kaggle_url

    if "url" in source:
        check_resolvable(str(source["url"]))
    elif "kaggle_release" in source:
        check_resolvable(kaggle_url(source["kaggle_release"]))


def _ensure_augmented(
    dataset: Any, settings: dict[str, Any], state: RunState, reporter: Reporter
) -> None:
    if state.step("augment") is not None:
        reporter.message("augment: done")
        return
    from cxr_covid.data.augment import augment_dataset

    factor = settings["augment_factor"]
    reporter.message(f"augment: COVID-19 training images x{factor} (flips, rotations)")

    result = augment_dataset(
        dataset, factor=factor, classes=(classes.COVID,), seed=settings["seed"], reporter=reporter
    )
    before = getattr(result, "before", {}).get(classes.COVID)
    after = getattr(result, "after", {}).get(classes.COVID)
    if before is not None and after is not None:
        reporter.message(f"augment: COVID-19 training images {before} -> {after}")
    state.finish(
        "augment", before=getattr(result, "before", {}), after=getattr(result, "after", {})
    )


def _train_counts(dataset: Any) -> tuple[int, int, int]:
    """(original training images, augmented training images, validation images)."""
    rows = dataset.rows()
    original = sum(1 for r in rows if r.split == "train" and r.origin == "original")
    augmented = sum(1 for r in rows if r.split == "train" and r.origin != "original")
    val = sum(1 for r in rows if r.split == "val" and r.origin == "original")
    return original, augmented, val


def measure_step_seconds(arch: str, image_size: int, batch_size: int, steps: int = 3) -> float:
    """Seconds per training step of a fresh model on random pixels, after one warm-up step."""
    import keras
    import numpy as np

    from cxr_covid import models

    model = models.build(arch, image_size, len(classes.STUDY_CLASSES))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(batch_size, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, 3, size=(batch_size,))
    model.train_on_batch(x, y)  # builds and traces the step: not representative
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def expected_counts(settings: dict[str, Any]) -> tuple[int, int, int] | None:
    """Before the data is here: the image counts of the study's release, when that is the
    source (training originals, augmented copies, validation); else None."""
    if settings["source"].get("kaggle_release") != study.STUDY_RELEASE:
        return None
    counts = study.RELEASE_1_COUNTS
    train = sum(round(0.7 * n) for n in counts.values())
    augmented = round(0.7 * counts[classes.COVID]) * (settings["augment_factor"] - 1)
    val = sum(round(0.15 * n) for n in counts.values())
    return train, augmented, val


def estimate_time(
    counts: tuple[int, int, int],
    settings: dict[str, Any],
    keys: list[str],
    reporter: Reporter,
    step_cache: dict[str, float] | None = None,
) -> TimeEstimate:
    """Measured seconds per training step x the steps each model will take."""
    original, augmented, val = counts
    size, batch, epochs = settings["image_size"], settings["batch_size"], settings["epochs"]
    per_step = step_cache if step_cache is not None else {}
    steps: dict[str, int] = {}
    seconds: dict[str, float] = {}
    for key in keys:
        spec = study.study_model(key)
        if spec.architecture not in per_step:
            reporter.message(f"estimate: timing a few {spec.architecture} steps...")
            per_step[spec.architecture] = measure_step_seconds(spec.architecture, size, batch)
        images = original + (augmented if spec.augment else 0)
        n_steps = math.ceil(images / batch) * epochs
        steps[key] = n_steps
        # Validation each epoch: a forward pass only, roughly a third of a training step.
        val_steps = math.ceil(val / batch) * epochs
        seconds[key] = per_step[spec.architecture] * (n_steps + val_steps / 3)
    return TimeEstimate(dict(per_step), steps, seconds, os.cpu_count() or 1)


def _with_interval(accuracy: float, val_images: list[int]) -> str:
    """`87.04% (47/54) [75.6-93.6]`: an accuracy is never shown without its interval."""
    from cxr_covid.evaluation.report import accuracy_cell

    return accuracy_cell(accuracy, val_images[0] if val_images else 0)


def _train_one(
    spec: study.StudyModel,
    name: str,
    dataset_name: str,
    settings: dict[str, Any],
    reporter: Reporter,
    *,
    seed: int | None = None,
    group: str | None = None,
    deterministic: bool = False,
) -> str:
    from cxr_covid.training import run as training

    val_images: list[int] = []  # from the RunInfo sent before the first epoch
    task = f"train {spec.key}"  # epochs done; training's own tasks show the steps

    def on_start(info: training.RunInfo) -> None:
        val_images[:] = [int(info.val_images)]
        reporter.start(task, total=info.epochs, unit="epochs")
        reporter.advance(task, info.first_epoch - 1)

    def on_epoch(report: training.EpochReport) -> None:
        reporter.advance(task, report.epoch, report.epochs)
        reporter.message(
            f"{spec.key}: epoch {report.epoch}/{report.epochs} "
            f"val accuracy {_with_interval(report.val_accuracy, val_images)}"
        )

    interrupted = paths.runs_dir() / name / "state.json"
    if interrupted.is_file():
        reporter.message(f"train {spec.label}: continuing interrupted run {name}")
        result = training.resume(name, reporter, on_start=on_start, on_epoch=on_epoch)
    else:
        reporter.message(f"train {spec.label} -> model {name}")
        result = training.train(
            training.TrainConfig(
                arch=spec.architecture,
                dataset=dataset_name,
                epochs=settings["epochs"],
                batch_size=settings["batch_size"],
                image_size=settings["image_size"],
                learning_rate=settings["learning_rate"],
                seed=settings["seed"] if seed is None else seed,
                name=name,
                augment=spec.augment,
                deterministic=deterministic,
                group=group,
                **settings.get("recipe", {}),
            ),
            reporter,
            on_start=on_start,
            on_epoch=on_epoch,
        )
    reporter.finish(task)
    return str(result.model.id)


def _trained_models(
    state: RunState, reporter: Reporter, seed: int | None = None
) -> tuple[dict[str, str], list[study.StudyModel]]:
    """Models this run already trained (by study key), and those still to train."""
    trained: dict[str, str] = {}
    todo: list[study.StudyModel] = []
    for spec in study.STUDY_MODELS:
        step = _train_step(state, spec.key, seed)
        done = state.step(step)
        name = model_name(state, spec.key, seed)
        if done is not None and store.model_dir(done["model"]).is_dir():
            reporter.message(f"train {spec.label}: done (model {done['model']})")
            trained[spec.key] = done["model"]
        elif store.model_dir(name).is_dir():
            # Trained, but the run stopped before recording it.
            state.finish(step, model=name)
            reporter.message(f"train {spec.label}: done (model {name})")
            trained[spec.key] = name
        else:
            todo.append(spec)
    return trained, todo


def format_estimate(timing: TimeEstimate, basis: str = "") -> str:
    parts = ", ".join(f"{k} ~{format_duration(s, rough=True)}" for k, s in timing.seconds.items())
    basis = f"; {basis}" if basis else ""
    total = format_duration(timing.total_seconds, rough=True)
    return (
        f"estimate: about {total} of training on this machine "
        f"({timing.cpus} CPU cores; measured seconds per step x steps{basis}): {parts}"
    )


def _dataset_exists(name: str) -> bool:
    from cxr_covid.data.dataset import dataset_path

    try:
        return (dataset_path(name) / "manifest.csv").is_file()
    except UsageError:
        return False


def compare_with_study(
    evaluations: dict[str, ModelEvaluation], trained: dict[str, str]
) -> list[Row]:
    rows = []
    for spec in study.STUDY_MODELS:
        evaluation = evaluations[trained[spec.key]]
        cells = []
        for column in study.TABLE_COLUMNS:
            if column == study.TOTAL:
                ours = evaluation.accuracy
            else:
                result = evaluation.class_result(column)
                ours = result.accuracy if result else stats.proportion(0, 0)
            published = spec.published[column]
            cells.append(
                Cell(column, ours, published, study.verdict(published, ours.low, ours.high))
            )
        rows.append(Row(spec, trained[spec.key], cells))
    return rows


# --- the whole run --------------------------------------------------------------------------


def run(options: ReproduceOptions, reporter: Reporter = NULL) -> ReproduceResult:
    """Reproduce the study (see module doc). Returns our table beside the published one.

    `reporter` hears every stage: messages (plan, estimate, skips), and the download,
    augmentation, training and evaluation as tasks."""
    preset = study.preset(options.preset)
    if options.from_zip is not None and options.url is not None:
        raise UsageError("give at most one of --from-zip and --url")
    if options.release is not None and (options.from_zip is not None or options.url is not None):
        raise UsageError("--release selects a Kaggle release; it cannot go with --from-zip/--url")
    release = options.release if options.release is not None else preset.release
    dataset_name = options.data or _default_dataset_name(options, release)
    settings = _settings(options, preset, dataset_name)
    if options.release is not None:
        settings["source"] = {"kaggle_release": release}
    run_dir = options.out.expanduser() if options.out else default_run_dir(settings, preset)
    # Not created here: the first finished step creates it (RunState.save), so a run that
    # fails at once (offline, say) leaves no empty run folder behind.
    run_dir = run_dir.resolve()
    state = RunState.open(run_dir, settings, options.restart)
    if not _dataset_exists(dataset_name):
        _check_reachable(settings["source"])  # offline: fail now, naming no folder

    new = "" if run_dir.is_dir() else " (created when the first step finishes)"
    reporter.message(f"run folder: {run_dir}{new}")
    if settings["study_protocol"]:
        reporter.message(
            f"preset {preset.name}: {preset.description}. Training inception at 224 px for "
            "30 epochs on a 2-core CPU takes hours (the baseline less); the estimate below "
            "is measured on this machine. `--preset quick` is a minutes-long stand-in."
        )
    else:
        reporter.message(
            f"preset {preset.name}: {settings['image_size']} px, {settings['epochs']} "
            f"epochs, batch {settings['batch_size']}. NOT the study's protocol (224 px, 30 "
            "epochs, batch 32): its numbers are not comparable with the study's."
        )

    seed_list = reproduce_seeds.seeds_of(settings["seed"], options.seeds)
    if len(seed_list) > 1:
        reporter.message(reproduce_seeds.plan_message(seed_list, settings))
    trained_by_seed: dict[int, dict[str, str]] = {}
    todo: list[tuple[int, study.StudyModel]] = []
    for seed in seed_list:
        done_models, left = _trained_models(state, reporter, seed)
        trained_by_seed[seed] = done_models
        todo += [(seed, spec) for spec in left]
    trained = trained_by_seed[seed_list[0]]
    keys = list(dict.fromkeys(spec.key for _, spec in todo))
    step_cache: dict[str, float] = {}
    timing = None
    if todo and options.estimate and not _dataset_exists(dataset_name):
        expected = expected_counts(settings)
        if expected is not None:
            timing = reproduce_seeds.for_seeds(
                estimate_time(expected, settings, keys, reporter, step_cache), todo
            )
            basis = "before download, assuming the first release's 2905 images"
            reporter.message(format_estimate(timing, basis))
            reproduce_seeds.warn_if_long(timing, settings, reporter)

    dataset = _ensure_dataset(options, settings, state, reporter)
    _ensure_augmented(dataset, settings, state, reporter)

    if todo and options.estimate:
        timing = reproduce_seeds.for_seeds(
            estimate_time(_train_counts(dataset), settings, keys, reporter, step_cache), todo
        )
        reporter.message(format_estimate(timing))
        reproduce_seeds.warn_if_long(timing, settings, reporter)
    for seed, spec in todo:
        model_id = _train_one(
            spec,
            model_name(state, spec.key, seed),
            dataset.name,
            settings,
            reporter,
            seed=seed,
            group=group_name(state),
            deterministic=options.deterministic,
        )
        state.finish(_train_step(state, spec.key, seed), model=model_id)
        trained_by_seed[seed][spec.key] = model_id

    report = reproduce_seeds.evaluate_seeds(state, trained_by_seed, options.bootstrap, reporter)
    by_id = {e.model_id: e for e in report.evaluations}
    rows = compare_with_study(by_id, trained)
    audit = None
    if options.audit:
        from cxr_covid.reproduce.audit import audit_step

        audit = audit_step(
            state,
            run_dir,
            trained,
            options.external,
            options.class_map,
            options.control_epochs,
            reporter,
        )
    source = dataset.info().get("source")
    result = ReproduceResult(
        run_dir,
        settings,
        preset,
        rows,
        report,
        estimate=timing,
        data_source=source if isinstance(source, dict) else {"kind": str(source)},
        audit=audit,
    )
    if len(seed_list) > 1:
        result.seeds = reproduce_seeds.summarize_seeds(
            trained_by_seed, by_id, options.bootstrap, settings
        )
    result.files = write_outputs(result, dataset)
    inside, judged = result.inside()
    evaluated = sorted(by_id)
    state.finish(
        "eval", models=trained, evaluated=evaluated, seeds=seed_list, inside=inside, judged=judged
    )
    reporter.message(f"wrote {len(result.files)} files to {run_dir}")
    return result


# --- outputs --------------------------------------------------------------------------------


def comparison_header() -> list[str]:
    names = [classes.display_name(c) if c != study.TOTAL else "Total" for c in study.TABLE_COLUMNS]
    return ["Model", *(f"ours: {n}" for n in names), *(f"study: {n}" for n in names)]


def comparison_rows(result: ReproduceResult) -> list[list[str]]:
    from cxr_covid.evaluation.report import cell

    rows = []
    for row in result.rows:
        ours = [cell(c.ours) for c in row.cells]
        published = [f"{c.published:.2f}% {c.verdict}" for c in row.cells]
        rows.append([row.study_model.label, *ours, *published])
    return rows


def caveats(result: ReproduceResult) -> list[str]:
    notes = []
    if not result.settings["study_protocol"]:
        notes.append(
            f"This run used preset {result.preset.name!r} "
            f"({result.settings['image_size']} px, {result.settings['epochs']} epochs): NOT "
            "the study's protocol, so a figure outside our interval says little about the "
            "study."
        )
    source = result.data_source
    if source.get("kind") != "kaggle" or str(source.get("release")) != str(study.STUDY_RELEASE):
        notes.append(
            "The data is not the Kaggle release the study used (release 1: 219 COVID-19, "
            "1341 normal, 1345 viral pneumonia), so its test set differs from the study's."
        )
    notes += [
        f"The study's COVID-19 test set holds {study.PUBLISHED_COVID_TEST_IMAGES} images: the "
        "95 % Wilson interval around 29/33 spans 72.7-95.2 %, so its three rows are not "
        "statistically distinguishable; McNemar's test asks the same of ours.",
        "Our split follows the notebook (70/15/15, stratified, seed 42) but the images in "
        "each split need not be the study's own; "
        + (
            "each model is one training run, so run-to-run variation is not measured "
            "(`--seeds 5` measures it)."
            if result.seeds is None
            else f"each model was trained with {result.seeds.seed_count} seeds: the first "
            "table shows the first seed only, the seeds section pools them all."
        ),
        "The viral-pneumonia and many normal images come from a paediatric collection, while "
        "the COVID-19 images come from adults: a network can learn age or the hospital's "
        "equipment rather than disease. High accuracy here is not evidence of clinical use.",
        DISCLAIMER,
    ]
    return notes


def _protocol_changes(settings: dict[str, Any]) -> list[str]:
    """How a run's settings differ from the study's (the paper preset)."""
    paper = study.PRESETS["paper"]
    changes = []
    for key, unit in (("image_size", " px"), ("epochs", " epochs"), ("batch_size", "")):
        if settings[key] != getattr(paper, key):
            label = "batch " if key == "batch_size" else ""
            changes.append(f"{label}{settings[key]}{unit} instead of {getattr(paper, key)}")
    return changes


def describe_source(source: dict[str, Any]) -> str:
    """dataset.json's source record in words: "zip /path", "Kaggle release 1", ..."""
    kind = source.get("kind")
    if kind == "kaggle":
        return f"Kaggle release {source.get('release', 'current')}"
    where = source.get("path") or source.get("url")
    if kind and where:
        return f"{'folder' if kind == 'dir' else kind} {where}"
    return json.dumps(source) if source else "unknown"


def provenance_lines(dataset: Any) -> list[str]:
    """The download's confounding warnings, repeated where the results are read."""
    from cxr_covid.data.provenance import confounding_warnings

    try:
        rows = dataset.rows()
    except Exception:  # the section is a courtesy; never fail the report on it
        return []
    warnings = confounding_warnings(rows)
    if warnings:
        body = [f"- **Warning:** {w}" for w in warnings]
    elif all(r.collection == "unknown" for r in rows):
        body = [
            "Not recorded for this dataset, so confounding could not be checked: attach it "
            "with `cxr-covid download --sources FILE.csv --dataset NAME`."
        ]
    else:
        body = ["No class is confounded with a collection or an age group (docs/provenance.md)."]
    return ["## Where the images come from", "", *body, ""]


def to_markdown(result: ReproduceResult, dataset: Any) -> str:
    from cxr_covid.evaluation import report as eval_report

    inside, judged = result.inside()
    s = result.settings
    protocol = (
        "the study's protocol"
        if s["study_protocol"]
        else f"**NOT the study's protocol** ({', '.join(_protocol_changes(s)) or 'changed'})"
    )
    lines = [
        "# Reproducing the study",
        "",
        f"Preset `{result.preset.name}`: {protocol}. Dataset `{s['dataset']}` "
        f"(source: {describe_source(result.data_source)}), {s['image_size']} px, "
        f"{s['epochs']} epochs, "
        f"batch {s['batch_size']}, Adam {s['learning_rate']}, seed {s['seed']}, COVID-19 "
        f"training images augmented x{s['augment_factor']}.",
        "",
    ]
    try:
        original, augmented, val = _train_counts(dataset)
        test = result.report.evaluations[0].n if result.report.evaluations else 0
        lines += [
            f"Images: {original} training (+{augmented} augmented COVID-19 copies for the "
            f"augmented models), {val} validation, {test} test.",
            "",
        ]
    except Exception:  # the counts are a courtesy; never fail the report on them
        pass
    lines += [
        "## Our results beside the study's"
        + ("" if result.seeds is None else f": first seed only (seed {s['seed']})"),
        "",
        "Each of our cells: test accuracy (correct/images) [95 % Wilson interval]. Each study "
        "cell: the published figure, and whether it lies **inside** or **outside** our "
        "interval.",
        "",
        eval_report.markdown_table(comparison_header(), comparison_rows(result)),
        "",
        f"{inside} of {judged} published figures lie inside our 95 % intervals.",
        "",
    ]
    if result.audit is not None:
        from cxr_covid.reproduce.audit import markdown as audit_markdown

        lines += audit_markdown(result.audit)
    if result.report.comparisons:
        lines += [
            "## Are our three models different? McNemar's test",
            "",
            eval_report.markdown_table(
                eval_report.comparison_header(), eval_report.comparison_rows(result.report)
            ),
            "",
        ]
    lines += reproduce_seeds.markdown(result)
    lines += provenance_lines(dataset)
    lines += ["## Caveats", ""] + [f"- {c}" for c in caveats(result)] + [""]
    lines += [
        "## Files",
        "",
        "- `results.json`, `results.md`: this table, and every figure of the evaluation",
        "- `evaluation.csv`: every figure, one per row",
        "- `plots/`: confusion matrices, ROC curves, reliability diagrams",
        *(
            ["- `seeds.csv`, `plots/seeds.png`: every seed's accuracy per cell, and their plot"]
            if result.seeds is not None
            else []
        ),
        "- `state.json`: the run's settings and finished steps (rerun to resume)",
        "",
    ]
    return "\n".join(lines)


def write_outputs(result: ReproduceResult, dataset: Any) -> list[Path]:
    from cxr_covid.evaluation import report as eval_report
    from cxr_covid.evaluation.plots import write_plots

    root = result.run_dir
    files = []
    atomic.write_json(root / "results.json", result.to_dict())
    files.append(root / "results.json")
    markdown = to_markdown(result, dataset)
    details = eval_report.to_markdown(result.report, title="Evaluation details")
    atomic.write_text(root / "results.md", markdown + "\n" + details.replace("# ", "## ", 1))
    files.append(root / "results.md")
    atomic.write_text(root / "report.md", markdown)
    files.append(root / "report.md")
    eval_report.write_csv(root / "evaluation.csv", result.report)
    files.append(root / "evaluation.csv")
    files.extend(write_plots(result.report, root / "plots"))
    files.extend(reproduce_seeds.write_outputs(result))
    return files
