"""`reproduce --seeds N`: the study's three models trained N times each (seeds --seed + i).

The run folder's `state.json` records every (model, seed) as its own step, so an interrupted
multi-seed run continues at the seed and epoch where it stopped, and a 3-seed run is
extended to 5 by rerunning with `--seeds 5` (the first three seeds are reused). The
dataset, its split and the augmented copies are made once and shared by every seed: the
seed varies the weight initialisation, dropout and the order of the training images.

This module holds the multi-seed parts of a reproduce run (the time estimate over all
seeds, evaluation per seed, the spread across seeds and its files); the statistics live in
`cxr_covid.evaluation.seeds`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_covid import atomic, study
from cxr_covid.evaluation import seed_tables, seeds
from cxr_covid.text import format_duration
from cxr_covid.training.seeds import seeds_of

if TYPE_CHECKING:
    from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation
    from cxr_covid.progress import Reporter
    from cxr_covid.reproduce.results import ReproduceResult, TimeEstimate
    from cxr_covid.reproduce.run_folder import RunState

__all__ = ["seeds_of"]

# Above this, the estimate says in words that the run takes many hours.
LONG_RUN_SECONDS = 3 * 3600
SEEDS_CSV = "seeds.csv"
SEEDS_PLOT = "seeds.png"


def plan_message(seed_list: Sequence[int], settings: dict[str, Any]) -> str:
    n = len(seed_list)
    text = (
        f"seeds: every model is trained {n} times (seeds {seed_list[0]}-{seed_list[-1]}), "
        f"{3 * n} trainings, each evaluated on the same test split; the table reports the "
        "mean, sd and range across seeds."
    )
    if settings["study_protocol"]:
        text += (
            f" The paper preset takes hours per seed on a CPU (about 7 h for the three models "
            f"on a 2-core machine): {n} seeds run for many hours; a GPU or `--preset quick` "
            "is the practical choice."
        )
    return text


def for_seeds(timing: TimeEstimate, todo: Sequence[tuple[int, study.StudyModel]]) -> TimeEstimate:
    """The one-model-per-key estimate scaled to every (seed, model) still to train."""
    from cxr_covid.reproduce.results import TimeEstimate

    counts = Counter(spec.key for _, spec in todo)
    if max(counts.values(), default=1) <= 1:
        return timing
    return TimeEstimate(
        timing.seconds_per_step,
        {f"{key} x{n}": timing.steps[key] * n for key, n in counts.items()},
        {f"{key} x{n}": timing.seconds[key] * n for key, n in counts.items()},
        timing.cpus,
    )


def warn_if_long(timing: TimeEstimate, settings: dict[str, Any], reporter: Reporter) -> None:
    if timing.total_seconds < LONG_RUN_SECONDS:
        return
    total = format_duration(timing.total_seconds, rough=True)
    reporter.message(
        f"this run will take many hours: about {total} of "
        f"training on this machine ({timing.cpus} CPU cores). It is resumable: stop it "
        "with Ctrl-C and rerun the same command to continue at the seed and epoch where "
        "it stopped. `--preset quick` takes minutes; a GPU takes far less."
    )


def evaluate_seeds(
    state: RunState,
    trained_by_seed: dict[int, dict[str, str]],
    bootstrap: int,
    reporter: Reporter,
) -> EvaluationReport:
    """Evaluate each seed's three models on the test split (McNemar within each seed).

    Each evaluation is saved into its model's record once: a rerun recomputes the same
    numbers, so only models this run has not evaluated before are saved."""
    from cxr_covid.evaluation.evaluate import evaluate
    from cxr_covid.evaluation.results import EvaluationReport

    done = state.step("eval") or {}
    saved = set(done.get("evaluated") or dict(done.get("models") or {}).values())
    n = len(trained_by_seed)
    seed = state.data["settings"]["seed"]
    reporter.message(
        "eval: the three models on the same test split"
        if n == 1
        else f"eval: the three models x {n} seeds on the same test split"
    )
    reports = []
    for models in trained_by_seed.values():
        ids = [models[spec.key] for spec in study.STUDY_MODELS]
        reports.append(
            evaluate(
                ids,
                split="test",
                bootstrap=bootstrap,
                seed=seed,
                save=not set(ids) <= saved,
                reporter=reporter,
            )
        )
    if len(reports) == 1:
        return reports[0]
    return EvaluationReport(
        [e for r in reports for e in r.evaluations],
        [c for r in reports for c in r.comparisons],
        [note for r in reports for note in r.notes],
        reports[0].confidence,
        bootstrap,
        seed,
    )


def summarize_seeds(
    trained_by_seed: dict[int, dict[str, str]],
    by_id: dict[str, ModelEvaluation],
    bootstrap: int,
    settings: dict[str, Any],
) -> seeds.SeedSummary:
    recipes = [
        seeds.Recipe(
            spec.key,
            spec.label,
            [(seed, by_id[models[spec.key]]) for seed, models in trained_by_seed.items()],
            dict(spec.published),
        )
        for spec in study.STUDY_MODELS
    ]
    return seeds.summarize(
        recipes, list(study.TABLE_COLUMNS), bootstrap=bootstrap, seed=settings["seed"]
    )


def markdown(result: ReproduceResult) -> list[str]:
    """The report's section on the seeds (empty with one seed)."""
    if result.seeds is None:
        return []
    n = result.seeds.seed_count
    text = seed_tables.to_markdown(result.seeds, f"Across {n} seeds (run-to-run variation)")
    return [text, ""]


def write_outputs(result: ReproduceResult) -> list[Path]:
    """`seeds.csv` (the per-seed table) and `plots/seeds.png` (with --seeds N > 1)."""
    if result.seeds is None:
        return []
    from cxr_covid.evaluation.seed_plots import write_seed_plot

    root = result.run_dir
    atomic.write_text(root / SEEDS_CSV, seed_tables.to_csv(result.seeds))
    title = f"Test accuracy across {result.seeds.seed_count} seeds (preset {result.preset.name})"
    plot = write_seed_plot(result.seeds, root / "plots" / SEEDS_PLOT, title)
    return [root / SEEDS_CSV, plot]
