"""The study's trainings as one run-grid (training/grid.py): each study model x each seed.

A job is named by the run (`run_folder.model_name`) and recorded as the run folder's step
`train:<key>[@<seed>]`, as before the grid existed, so a run folder started by an earlier
version resumes with this one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cxr_covid import study
from cxr_covid.progress import Reporter
from cxr_covid.reproduce.data_steps import study_options
from cxr_covid.reproduce.report import with_interval
from cxr_covid.reproduce.run_folder import RunState, group_name, model_name, train_step
from cxr_covid.training import grid
from cxr_covid.training.events import EpochReport, RunInfo


def study_jobs(
    state: RunState, seeds: Sequence[int], dataset_name: str, deterministic: bool
) -> list[grid.Job]:
    """Every (seed, study model) of the run, seed by seed."""
    settings = state.data["settings"]
    group = group_name(state)
    return [
        grid.Job(
            model_name(state, spec.key, seed),
            study_options(spec, settings, dataset_name, group=group, deterministic=deterministic),
            seed,
            label=spec.key,
        )
        for seed in seeds
        for spec in study.STUDY_MODELS
    ]


class StudySteps:
    """The grid's state kept in the run folder's state.json, one step per training."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def _step(self, job: grid.Job) -> str:
        return train_step(self.state, job.label, job.seed)

    def done(self, job: grid.Job) -> str | None:
        found = self.state.step(self._step(job))
        return str(found["model"]) if found is not None and "model" in found else None

    def finish(self, job: grid.Job, model_id: str) -> None:
        self.state.finish(self._step(job), model=model_id)


def _label(job: grid.Job) -> str:
    return study.study_model(job.label).label


def planned(
    state: RunState, jobs: Sequence[grid.Job], reporter: Reporter
) -> tuple[dict[int, dict[str, str]], list[grid.Job]]:
    """The models this run already trained (seed -> study key -> model id), saying so, and
    the jobs still to run."""
    trained: dict[int, dict[str, str]] = {job.seed: {} for job in jobs}
    todo: list[grid.Job] = []
    for plan in grid.plan(jobs, StudySteps(state)):
        if plan.action == grid.REUSE:
            reporter.message(f"train {_label(plan.job)}: done (model {plan.model_id})")
            trained[plan.job.seed][plan.job.label] = plan.model_id
        else:
            todo.append(plan.job)
    return trained, todo


def train(state: RunState, jobs: Sequence[grid.Job], reporter: Reporter) -> list[grid.JobResult]:
    """Run the jobs still to do; each study model's epochs are a progress task, and each
    epoch's validation accuracy (with its interval) a message."""
    val_images: list[int] = []  # from the RunInfo sent before the first epoch

    def on_job(job: grid.Job, action: str) -> None:
        if action == grid.RESUME:
            reporter.message(f"train {_label(job)}: continuing interrupted run {job.name}")
        elif action == grid.TRAIN:
            reporter.message(f"train {_label(job)} -> model {job.name}")

    def on_start(job: grid.Job, info: RunInfo) -> None:
        val_images[:] = [int(info.val_images)]
        reporter.start(f"train {job.label}", total=info.epochs, unit="epochs")
        reporter.advance(f"train {job.label}", info.first_epoch - 1)

    def on_epoch(job: grid.Job, report: EpochReport) -> None:
        reporter.advance(f"train {job.label}", report.epoch, report.epochs)
        reporter.message(
            f"{job.label}: epoch {report.epoch}/{report.epochs} "
            f"val accuracy {with_interval(report.val_accuracy, val_images)}"
        )

    def on_done(result: grid.JobResult) -> None:
        if result.action != grid.REUSE:
            reporter.finish(f"train {result.job.label}")

    hooks = grid.GridHooks(on_job=on_job, on_start=on_start, on_epoch=on_epoch, on_done=on_done)
    return grid.run_grid(jobs, StudySteps(state), reporter, hooks)
