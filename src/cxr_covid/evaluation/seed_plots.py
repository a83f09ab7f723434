"""The spread across seeds as a PNG: per class, each seed's accuracy as a dot, the mean with
its 95 % interval, and the study's figure as a marker.

Drawn like `cxr_covid.evaluation.plots` (matplotlib's object API on an Agg canvas, rendered to
memory, written atomically).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid.evaluation.plots import new_figure, save_png
from cxr_covid.evaluation.seed_tables import column_name
from cxr_covid.evaluation.seeds import SeedSummary

_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink")


def seed_figure(summary: SeedSummary, title: str = "Test accuracy across seeds") -> Any:
    """One panel per column (Total, then each class); in each, one position per recipe."""
    columns = summary.columns
    rows = summary.rows
    figure = new_figure(2.0 + 2.6 * len(columns), 4.6)
    axes = figure.subplots(1, len(columns), sharey=True, squeeze=False)[0]
    rng = np.random.default_rng(0)  # jitter only, so overlapping seeds stay visible
    published_drawn = False
    for ax, column in zip(axes, columns, strict=True):
        for x, row in enumerate(rows):
            cell = row.cell(column)
            if cell is None or not math.isfinite(cell.mean):
                continue
            colour = _COLOURS[x % len(_COLOURS)]
            values = 100 * cell.values
            jitter = rng.uniform(-0.12, 0.12, size=values.size)
            ax.scatter(x + jitter, values, s=18, color=colour, alpha=0.7, label="_seed", zorder=2)
            low, high = cell.interval
            mean = 100 * cell.mean
            if math.isfinite(low):
                error = [[mean - 100 * low], [100 * high - mean]]
                ax.errorbar(x + 0.3, mean, yerr=error, fmt="o", color="black", capsize=4, zorder=3)
            else:
                ax.plot(x + 0.3, mean, "o", color="black", zorder=3)
            if cell.published is not None:
                ax.plot(
                    x + 0.3,
                    cell.published,
                    marker="D",
                    markersize=7,
                    markerfacecolor="none",
                    markeredgecolor="red",
                    linestyle="none",
                    zorder=4,
                )
                published_drawn = True
        ax.set_title(column_name(column), fontsize=10)
        ax.set_xticks(range(len(rows)), [r.label for r in rows], rotation=30, ha="right")
        ax.set_xlim(-0.6, len(rows) - 0.2)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    handles = [
        axes[0].scatter([], [], s=18, color="grey", label="one seed"),
        axes[0].errorbar([], [], yerr=[], fmt="o", color="black", label="mean, 95 % interval"),
    ]
    if published_drawn:
        handles += axes[0].plot(
            [],
            [],
            marker="D",
            markerfacecolor="none",
            markeredgecolor="red",
            linestyle="none",
            label="the study's figure",
        )
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    figure.suptitle(title, fontsize=10)
    return figure


def write_seed_plot(summary: SeedSummary, path: Path, title: str | None = None) -> Path:
    return save_png(seed_figure(summary, title or "Test accuracy across seeds"), path)
