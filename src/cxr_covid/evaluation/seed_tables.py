"""Run-to-run variation as text: the seed summary's tables, methods note, Markdown and CSV
(numbers from `cxr_covid.evaluation.seeds`)."""

from __future__ import annotations

import math

from cxr_covid import classes, csv_safe
from cxr_covid.evaluation.seeds import (
    EXACT_LIMIT,
    INSIDE_INTERVAL,
    INSIDE_RANGE,
    INTERVAL_METHOD,
    OUTSIDE,
    PERMUTATION_METHOD,
    TOTAL,
    VERDICT_RULE,
    SeedCell,
    SeedSummary,
    per_seed_records,
)


def column_name(column: str) -> str:
    return "Total" if column == TOTAL else classes.display_name(column)


def study_column_name(column: str) -> str:
    """A column of the study's published figures, in the study's own headings."""
    return "Total" if column == TOTAL else classes.study_heading(column)


def spread_text(cell: SeedCell) -> str:
    """`88.48% sd 2.1 [84.85-90.91] (95 % 79.8-95.0)`: mean, sd, seed range, interval."""
    if not math.isfinite(cell.mean):
        return "n/a"
    sd = "n/a" if not math.isfinite(cell.sd) else f"{100 * cell.sd:.2f}"
    low, high = cell.interval
    interval = "" if not math.isfinite(low) else f" (95 % {100 * low:.1f}-{100 * high:.1f})"
    return (
        f"{100 * cell.mean:.2f}% sd {sd} range {100 * cell.low:.2f}-{100 * cell.high:.2f}{interval}"
    )


def summary_header(summary: SeedSummary) -> list[str]:
    return ["Recipe", "Seeds", *(column_name(c) for c in summary.columns)]


def summary_rows(summary: SeedSummary) -> list[list[str]]:
    return [
        [row.label, str(len(row.seeds)), *(spread_text(c) for c in row.cells)]
        for row in summary.rows
    ]


def published_rows(summary: SeedSummary) -> list[list[str]]:
    """The study's figure per cell with the verdict (rows with a published figure only)."""
    rows = []
    for row in summary.rows:
        if all(c.published is None for c in row.cells):
            continue
        rows.append(
            [
                row.label,
                *(
                    "-" if c.published is None else f"{c.published:.2f}% {c.verdict}"
                    for c in row.cells
                ),
            ]
        )
    return rows


def per_seed_header(summary: SeedSummary) -> list[str]:
    return ["Recipe", "Seed", "Model", *(column_name(c) for c in summary.columns)]


def per_seed_rows(summary: SeedSummary) -> list[list[str]]:
    from cxr_covid.evaluation.report import cell

    rows = []
    for row in summary.rows:
        for i, (seed, model) in enumerate(zip(row.seeds, row.models, strict=True)):
            rows.append(
                [
                    row.label,
                    "-" if seed is None else str(seed),
                    model,
                    *(cell(c.per_seed[i]) for c in row.cells),
                ]
            )
    return rows


def comparison_header() -> list[str]:
    return ["A", "B", "A (mean)", "B (mean)", "images that differ", "p", "method"]


def comparison_rows(summary: SeedSummary) -> list[list[str]]:
    from cxr_covid.evaluation.report import p_value

    labels = {r.key: r.label for r in summary.rows}
    return [
        [
            labels.get(c.a, c.a),
            labels.get(c.b, c.b),
            f"{100 * c.accuracy_a:.2f}%",
            f"{100 * c.accuracy_b:.2f}%",
            str(c.differing_images),
            p_value(c.p_value),
            "exact" if c.exact else f"{summary.permutations} permutations",
        ]
        for c in summary.comparisons
    ]


def methods_note(summary: SeedSummary) -> str:
    interval = (
        f"{INTERVAL_METHOD} ({summary.bootstrap} resamples, seed {summary.seed})"
        if summary.bootstrap > 0
        else "the Wilson interval of the seed-averaged accuracy over the images (--bootstrap 0: "
        "seeds not resampled)"
    )
    return (
        "Cells: mean accuracy across seeds, sample sd (points), min-max across seeds, and the "
        f"95 % interval of the seed-averaged accuracy: {interval}. p: "
        + PERMUTATION_METHOD.format(limit=EXACT_LIMIT, permutations=summary.permutations)
        + "."
    )


def to_markdown(summary: SeedSummary, title: str = "Across seeds", level: int = 2) -> str:
    from cxr_covid.evaluation.report import markdown_table

    h = "#" * level
    parts = [f"{h} {title}", "", methods_note(summary), ""]
    parts += [markdown_table(summary_header(summary), summary_rows(summary)), ""]
    published = published_rows(summary)
    if published:
        counts = summary.verdicts()
        header = ["Recipe", *(f"study: {study_column_name(c)}" for c in summary.columns)]
        parts += [f"{h}# The study's figures beside our seeds", "", VERDICT_RULE + ".", ""]
        parts += [markdown_table(header, published), ""]
        parts += [
            f"{counts[INSIDE_RANGE]} inside our seed range, {counts[INSIDE_INTERVAL]} inside "
            f"only the interval, {counts[OUTSIDE]} outside.",
            "",
        ]
    if summary.comparisons:
        parts += [f"{h}# Are the recipes different? Paired permutation test over images", ""]
        parts += [markdown_table(comparison_header(), comparison_rows(summary)), ""]
    parts += [f"{h}# Per seed", ""]
    parts += [markdown_table(per_seed_header(summary), per_seed_rows(summary)), ""]
    parts += [f"- {note}" for note in summary.notes]
    return "\n".join(parts).rstrip() + "\n"


def to_csv(summary: SeedSummary) -> str:
    """The per-seed rows as CSV, through csv_safe like every CSV the tool writes."""
    fields = ["row", "seed", "model", "column", "accuracy", "successes", "n", "ci_low", "ci_high"]
    rows = [["" if r[k] is None else r[k] for k in fields] for r in per_seed_records(summary)]
    return csv_safe.to_text([fields, *rows])
