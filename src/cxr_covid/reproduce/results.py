"""What `reproduce` takes and gives: its options, the time estimate, our table's cells and rows
beside the study's, and the whole result."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxr_covid import stats, study
from cxr_covid.evaluation.results import EvaluationReport
from cxr_covid.evaluation.seeds import SeedSummary


@dataclass
class ReproduceOptions:
    preset: str = "paper"
    data: str | None = None  # dataset to use (or to create, when a source is given / absent)
    from_zip: Path | None = None
    sources: Path | None = None  # where each image comes from (download --sources)
    find_sources: bool = True  # else a sources.csv inside or beside from_zip is used
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
