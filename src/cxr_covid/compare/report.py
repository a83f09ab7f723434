"""What `compare` gives: the result as dataclasses (`to_dict` for --json and compare.json), the
table as data (rows of text cells, shared by the terminal and compare.md), and compare.md."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import classes
from cxr_covid.about import DISCLAIMER
from cxr_covid.compare import ranking
from cxr_covid.compare.judging import ENSEMBLE_TEST, SEED_TEST, AgainstPlain, Verdict, spread
from cxr_covid.compare.recipes import Recipe
from cxr_covid.evaluation.report import p_value

INTERNAL = "internal test"
DECISIONS = (
    "decisions are each model's argmax (the ensemble's: the argmax of its members' mean "
    "probabilities); no threshold is chosen on any set, least of all an external one"
)
RESEARCH = (
    "A research tool: these figures compare training recipes on the sets named; they are not "
    "a diagnostic claim about any patient."
)


@dataclass(frozen=True)
class SetInfo:
    name: str  # INTERNAL, or the external cohort's name
    source: str
    counts: dict[str, int]
    left_out: int = 0  # images that are copies of the models' training images

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "counts": self.counts,
            "left_out_as_training_copies": self.left_out,
        }


@dataclass(frozen=True)
class PooledExternal:
    """Every external image at once: the COVID-19 one-vs-rest AUROC per seed and of the
    ensemble (None where the pool lacks COVID-19 or other images). Pooling sets from other
    sources can itself separate them by source: read it beside the per-set recalls."""

    images: int
    auroc_per_seed: list[float | None]
    auroc_ensemble: float | None

    def mean(self) -> float | None:
        known = [a for a in self.auroc_per_seed if a is not None]
        return float(np.mean(known)) if known else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "auroc_covid_per_seed": self.auroc_per_seed,
            "auroc_covid_mean": self.mean(),
            "auroc_covid_ensemble": self.auroc_ensemble,
        }


@dataclass
class RecipeResult:
    recipe: Recipe
    models: list[str]
    seeds: list[int]
    verdicts: dict[str, list[Verdict]]  # set name -> one verdict per seed, in seed order
    ensemble: dict[str, Verdict]  # set name -> the seeds' mean probabilities, judged
    audit: dict[str, Any] | None = None  # first seed's lung-blind control and source probe
    pooled: PooledExternal | None = None  # every external image at once

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.recipe.to_dict(),
            "external_pooled": self.pooled.to_dict() if self.pooled else None,
            "models": self.models,
            "seeds": self.seeds,
            "sets": {
                name: {
                    "per_seed": [v.to_dict() for v in verdicts],
                    "recall_across_seeds": {
                        c: spread(verdicts, c).to_dict() for c in _classes_of(verdicts)
                    },
                    "ensemble": self.ensemble[name].to_dict(),
                }
                for name, verdicts in self.verdicts.items()
            },
            "audit": self.audit,
        }


def _classes_of(verdicts: list[Verdict]) -> list[str]:
    return list(verdicts[0].recall) if verdicts else []


@dataclass
class CompareResult:
    dataset: str
    folder: Path
    options: dict[str, Any]
    sets: list[SetInfo]
    recipes: list[RecipeResult]
    against_plain: list[AgainstPlain]
    caveats: list[str] = field(default_factory=list)  # what the accuracy may be measuring
    notes: list[str] = field(default_factory=list)
    trained: int = 0  # jobs trained (or resumed) by this run
    reused: int = 0  # jobs found finished

    def ranking(self) -> list[ranking.Rank]:
        external = [s.name for s in self.sets if s.name != INTERNAL]
        named = [(r.recipe.name, r) for r in self.recipes]
        return ranking.rank(named, INTERNAL, external)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "folder": str(self.folder),
            "options": self.options,
            "sets": [s.to_dict() for s in self.sets],
            "recipes": [r.to_dict() for r in self.recipes],
            "against_plain": [a.to_dict() for a in self.against_plain],
            "ranking": [r.to_dict() for r in self.ranking()],
            "ranking_rule": ranking.RULE,
            "methods": {"decisions": DECISIONS, "seed_test": SEED_TEST, "ensemble": ENSEMBLE_TEST},
            "jobs": {"trained": self.trained, "reused": self.reused},
            "caveats": self.caveats,
            "notes": self.notes,
            "disclaimer": DISCLAIMER,
        }


# --- the table as data -----------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if math.isfinite(x) else "n/a"


def _extras(verdicts: list[Verdict]) -> list[str]:
    lines = []
    aurocs = [v.auroc_covid for v in verdicts if v.auroc_covid is not None]
    if aurocs:
        lines.append(f"COVID-19 AUROC {np.mean(aurocs):.3f}")
    gaps = [v.gap for v in verdicts if v.gap is not None]
    if gaps:
        lines.append(f"gap {100 * float(np.mean(gaps)):+.1f} pts")
    return lines


def seeds_cell(verdicts: list[Verdict]) -> list[str]:
    """Per class: mean recall over seeds (min-max); then AUROC and gap (means)."""
    lines = []
    for name in _classes_of(verdicts):
        s = spread(verdicts, name)
        low, high = min(s.values), max(s.values)
        lines.append(f"{classes.display_name(name)} {_pct(s.mean)} ({_pct(low)}-{_pct(high)})")
    return lines + _extras(verdicts)


def ensemble_cell(verdict: Verdict) -> list[str]:
    """Per class: the ensemble's recall [Wilson interval]; then AUROC and gap."""
    lines = [
        f"{classes.display_name(name)} {_pct(p.value)} [{_pct(p.low)}-{_pct(p.high)}]"
        for name, p in verdict.recall.items()
    ]
    return lines + _extras([verdict])


def table_header(result: CompareResult) -> list[str]:
    return ["recipe", *(s.name for s in result.sets)]


def table_rows(result: CompareResult) -> list[list[list[str]]]:
    """Rows of cells, each cell a list of lines: per recipe, its seeds, then its ensemble."""
    rows = []
    for r in result.recipes:
        n = len(r.seeds)
        rows.append([[r.recipe.name, f"{n} seed{'s' * (n != 1)}: mean (range)"]])
        rows[-1] += [seeds_cell(r.verdicts[s.name]) for s in result.sets]
        rows.append([[f"{r.recipe.name}, ensemble", f"mean of {n}: [95 % CI]"]])
        rows[-1] += [ensemble_cell(r.ensemble[s.name]) for s in result.sets]
    return rows


def against_header() -> list[str]:
    return ["recipe", "set", "class", "recall - plain, by seed", "seed test p", "ensembles: +/-, p"]


def against_rows(result: CompareResult) -> list[list[str]]:
    rows = []
    for a in result.against_plain:
        diffs = ", ".join(f"{100 * d:+.1f}" for d in a.differences) or "n/a"
        m = a.mcnemar
        rows.append(
            [
                a.recipe,
                a.set_name,
                classes.display_name(a.class_name),
                f"{diffs} pts",
                f"{a.seed_p:.2f}",
                f"+{m.a_only} / -{m.b_only}, p={p_value(m.p_exact)}",
            ]
        )
    return rows


def ranking_header() -> list[str]:
    return [
        "rank",
        "recipe",
        "external score (seeds)",
        "ensemble",
        "weakest external cell",
        "internal accuracy",
        "external COVID-19 AUROC, pooled (seeds; ensemble)",
    ]


def ranking_rows(result: CompareResult) -> list[list[str]]:
    rows = []
    pooled = {r.recipe.name: r.pooled for r in result.recipes}
    for place, r in enumerate(result.ranking(), start=1):
        set_name, class_name, worst = r.worst
        auroc = _auroc_cell(pooled.get(r.recipe))
        drop = "" if r.internal_drop is None else f" ({-100 * r.internal_drop:+.1f} vs plain)"
        rows.append(
            [
                str(place) if r.eligible else "not eligible",
                r.recipe,
                _pct(r.external_score),
                _pct(r.ensemble_score),
                f"{set_name}, {classes.display_name(class_name)} {_pct(worst)}",
                f"{_pct(r.internal_accuracy)}{drop}",
                auroc,
            ]
        )
    return rows


def _auroc_cell(pooled: PooledExternal | None) -> str:
    if pooled is None or pooled.mean() is None:
        return "n/a"
    ensemble = "n/a" if pooled.auroc_ensemble is None else f"{pooled.auroc_ensemble:.3f}"
    return f"{pooled.mean():.3f}; {ensemble} ({pooled.images} images)"


def audit_header() -> list[str]:
    return ["recipe", "model (first seed)", "lung-blind control accuracy", "source probe"]


def audit_rows(result: CompareResult) -> list[list[str]]:
    return [
        [r.recipe.name, r.audit["model"], r.audit["control"], r.audit["source_probe"]]
        for r in result.recipes
        if r.audit is not None
    ]


# --- compare.md ------------------------------------------------------------------------------


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def clean(text: str) -> str:
        return text.replace("|", "\\|")

    lines = ["| " + " | ".join(map(clean, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(clean(c) for c in row) + " |" for row in rows]
    return lines


def to_markdown(result: CompareResult) -> str:
    sets = "; ".join(f"{s.name}: {s.source} ({sum(s.counts.values())} images)" for s in result.sets)
    parts = [
        f"# Recipes compared on {result.dataset}",
        "",
        f"Sets: {sets}.",
        "",
        "Per class: recall, mean over seeds (min-max); ensemble rows: recall [Wilson 95 % CI]; "
        "gap: internal minus external recall, in points, over the set's classes.",
        "",
    ]
    rows = [["<br>".join(cell) for cell in row] for row in table_rows(result)]
    parts += _md_table(table_header(result), rows)
    if result.against_plain:
        parts += [
            "",
            "## Against plain",
            "",
            f"Seeds: {SEED_TEST}.",
            f"Ensembles: {ENSEMBLE_TEST}.",
            "",
        ]
        parts += _md_table(against_header(), against_rows(result))
    if result.ranking():
        parts += ["", "## Ranking", "", f"Rule: {ranking.RULE}.", ""]
        parts += _md_table(ranking_header(), ranking_rows(result))
    if any(r.audit for r in result.recipes):
        parts += ["", "## Audit (first seed of each recipe)", ""]
        parts += _md_table(audit_header(), audit_rows(result))
    parts += ["", "## What these figures may measure", ""]
    parts += [f"- {c}" for c in result.caveats]
    parts += [f"- {n}" for n in result.notes]
    parts += ["", f"Decisions: {DECISIONS}.", "", RESEARCH, "", DISCLAIMER, ""]
    return "\n".join(parts)
