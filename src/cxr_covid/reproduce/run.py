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

from typing import Any

from cxr_covid import paths, study
from cxr_covid.errors import UsageError
from cxr_covid.models import store
from cxr_covid.progress import NULL, Reporter
from cxr_covid.reproduce import seeds as reproduce_seeds
from cxr_covid.reproduce.data_steps import (
    check_reachable,
    dataset_exists,
    default_dataset_name,
    ensure_augmented,
    ensure_dataset,
    settings_of,
)
from cxr_covid.reproduce.estimate import (
    estimate_time,
    expected_counts,
    format_estimate,
    train_counts,
)
from cxr_covid.reproduce.report import compare_with_study, with_interval, write_outputs
from cxr_covid.reproduce.results import ReproduceOptions, ReproduceResult
from cxr_covid.reproduce.run_folder import (
    RunState,
    default_run_dir,
    group_name,
    model_name,
    train_step,
)


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
            f"val accuracy {with_interval(report.val_accuracy, val_images)}"
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
        step = train_step(state, spec.key, seed)
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
    dataset_name = options.data or default_dataset_name(options, release)
    settings = settings_of(options, preset, dataset_name)
    if options.release is not None:
        settings["source"] = {"kaggle_release": release}
    run_dir = options.out.expanduser() if options.out else default_run_dir(settings, preset)
    # Not created here: the first finished step creates it (RunState.save), so a run that
    # fails at once (offline, say) leaves no empty run folder behind.
    run_dir = run_dir.resolve()
    state = RunState.open(run_dir, settings, options.restart)

    reporter.message(f"run folder: {run_dir}")
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
    if not dataset_exists(dataset_name):
        check_reachable(settings["source"])  # offline: fail now, not after the estimate
    if todo and options.estimate and not dataset_exists(dataset_name):
        expected = expected_counts(settings)
        if expected is not None:
            timing = reproduce_seeds.for_seeds(
                estimate_time(expected, settings, keys, reporter, step_cache), todo
            )
            basis = "before download, assuming the first release's 2905 images"
            reporter.message(format_estimate(timing, basis))
            reproduce_seeds.warn_if_long(timing, settings, reporter)

    dataset = ensure_dataset(options, settings, state, reporter)
    ensure_augmented(dataset, settings, state, reporter)

    if todo and options.estimate:
        timing = reproduce_seeds.for_seeds(
            estimate_time(train_counts(dataset), settings, keys, reporter, step_cache), todo
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
        state.finish(train_step(state, spec.key, seed), model=model_id)
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


__all__ = ["ReproduceOptions", "ReproduceResult", "run"]
