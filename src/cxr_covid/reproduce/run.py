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

from cxr_covid import study
from cxr_covid.errors import UsageError
from cxr_covid.progress import NULL, Reporter
from cxr_covid.reproduce import seeds as reproduce_seeds
from cxr_covid.reproduce import trainings
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
from cxr_covid.reproduce.report import compare_with_study, write_outputs
from cxr_covid.reproduce.results import ReproduceOptions, ReproduceResult, TimeEstimate
from cxr_covid.reproduce.run_folder import (
    RunState,
    default_run_dir,
)
from cxr_covid.training import grid


def _open_run(options: ReproduceOptions) -> tuple[study.Preset, str, RunState]:
    """The preset, the dataset's name and the run folder's state (new, or the one to resume)."""
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
    return preset, dataset_name, RunState.open(run_dir.resolve(), settings, options.restart)


def _announce(preset: study.Preset, settings: dict[str, Any], reporter: Reporter) -> None:
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


def _estimate(
    counts: tuple[int, int, int] | None,
    settings: dict[str, Any],
    todo: list[grid.Job],
    reporter: Reporter,
    step_cache: dict[str, float],
    basis: str = "",
) -> TimeEstimate | None:
    """The grid's estimate for the trainings still to do, said and warned about."""
    if counts is None or not todo:
        return None
    keys = list(dict.fromkeys(job.label for job in todo))
    per_seed = [(job.seed, study.study_model(job.label)) for job in todo]
    timing = reproduce_seeds.for_seeds(
        estimate_time(counts, settings, keys, reporter, step_cache), per_seed
    )
    reporter.message(format_estimate(timing, basis))
    reproduce_seeds.warn_if_long(timing, settings, reporter)
    return timing


def run(options: ReproduceOptions, reporter: Reporter = NULL) -> ReproduceResult:
    """Reproduce the study (see module doc). Returns our table beside the published one.

    `reporter` hears every stage: messages (plan, estimate, skips), and the download,
    augmentation, training and evaluation as tasks."""
    preset, dataset_name, state = _open_run(options)
    settings = state.data["settings"]
    if not dataset_exists(dataset_name):
        check_reachable(settings["source"])  # offline: fail now, naming no folder
    new = "" if state.root.is_dir() else " (created when the first step finishes)"
    reporter.message(f"run folder: {state.root}{new}")
    _announce(preset, settings, reporter)

    seed_list = reproduce_seeds.seeds_of(settings["seed"], options.seeds)
    if len(seed_list) > 1:
        reporter.message(reproduce_seeds.plan_message(seed_list, settings))
    jobs = trainings.study_jobs(state, seed_list, dataset_name, options.deterministic)
    trained_by_seed, todo = trainings.planned(state, jobs, reporter)
    step_cache: dict[str, float] = {}
    timing = None
    if options.estimate and not dataset_exists(dataset_name):
        basis = "before download, assuming the first release's 2905 images"
        counts = expected_counts(settings)
        timing = _estimate(counts, settings, todo, reporter, step_cache, basis)

    dataset = ensure_dataset(options, settings, state, reporter)
    ensure_augmented(dataset, settings, state, reporter)

    if options.estimate:
        timing = _estimate(train_counts(dataset), settings, todo, reporter, step_cache) or timing
    # The jobs train on the dataset as it is named now it exists.
    running = trainings.study_jobs(state, seed_list, dataset.name, options.deterministic)
    todo_names = {job.name for job in todo}
    for done in trainings.train(state, [j for j in running if j.name in todo_names], reporter):
        trained_by_seed[done.job.seed][done.job.label] = done.model_id
    return _results(options, state, preset, dataset, trained_by_seed, timing, reporter)


def _results(
    options: ReproduceOptions,
    state: RunState,
    preset: study.Preset,
    dataset: Any,
    trained_by_seed: dict[int, dict[str, str]],
    timing: TimeEstimate | None,
    reporter: Reporter,
) -> ReproduceResult:
    """Evaluate every trained model, set our table beside the study's, audit if asked, and
    write the run folder's files."""
    settings, run_dir = state.data["settings"], state.root
    seed_list = list(trained_by_seed)
    trained = trained_by_seed[seed_list[0]]
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
