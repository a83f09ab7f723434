"""Figures of an evaluation as PNG: confusion matrix, ROC curves, reliability diagram.

Drawn with matplotlib's object API on an Agg canvas (no pyplot, no global backend, no
display needed), rendered to memory, then written atomically.
"""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid import atomic, classes, stats
from cxr_covid.evaluation.results import EvaluationReport, ModelEvaluation

PLOT_KINDS = ("confusion", "roc", "reliability")


def new_figure(width: float, height: float) -> Any:
    """A matplotlib figure drawn off-screen (Agg, no pyplot state): every plot of the tool."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=120, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def save_png(figure: Any, path: Path) -> Path:
    """The figure as a PNG, written atomically."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    atomic.write_bytes(path, buffer.getvalue())
    return path


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def confusion_figure(evaluation: ModelEvaluation) -> Any:
    cm = evaluation.confusion.astype(np.int64)
    names = [classes.display_name(c) for c in evaluation.classes]
    support = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, support, out=np.zeros(cm.shape, dtype=float), where=support > 0)
    figure = new_figure(1.6 + 1.3 * len(names), 1.2 + 1.2 * len(names))
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            colour = "white" if share[i, j] > 0.6 else "black"
            text = f"{cm[i, j]}\n{100 * share[i, j]:.1f}%" if support[i, 0] else "0"
            ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(
        f"{evaluation.model_id}\naccuracy {100 * evaluation.accuracy.value:.2f}% "
        f"({evaluation.accuracy.successes}/{evaluation.n})",
        fontsize=9,
    )
    figure.colorbar(image, ax=ax, label="share of the true class")
    return figure


def roc_figure(evaluation: ModelEvaluation) -> Any:
    figure = new_figure(5.0, 4.6)
    ax = figure.add_subplot()
    for j, cls in enumerate(evaluation.classes):
        positive = evaluation.y_true == j
        if not positive.any() or positive.all():
            continue
        fpr, tpr = stats.roc_curve(positive, evaluation.probabilities[:, j])
        auc = evaluation.per_class[j].auc
        label = f"{classes.display_name(cls)} (AUC {auc.value:.3f}"
        if math.isfinite(auc.low):
            label += f" [{auc.low:.3f}-{auc.high:.3f}]"
        ax.plot(fpr, tpr, label=label + ")")  # straight segments: ties move diagonally
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("1 - specificity (false positive rate)")
    ax.set_ylabel("sensitivity (true positive rate)")
    ax.set_title(f"ROC, one class vs the rest\n{evaluation.model_id}", fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    return figure


def reliability_figure(evaluation: ModelEvaluation) -> Any:
    figure = new_figure(5.0, 5.4)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    bins = evaluation.calibration
    centres = [(b.low + b.high) / 2 for b in bins]
    width = bins[0].high - bins[0].low if bins else 0.1
    accuracy = [b.accuracy if b.count else 0.0 for b in bins]
    top.bar(
        centres, accuracy, width=width * 0.9, color="tab:blue", alpha=0.8, label="accuracy in bin"
    )
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    top.set_ylim(0, 1)
    top.set_ylabel("accuracy")
    ece = "n/a" if not math.isfinite(evaluation.ece) else f"{evaluation.ece:.3f}"
    title = f"Reliability (top-class confidence), ECE {ece}"
    decisions = evaluation.decisions
    if decisions is not None and decisions.temperature is not None:
        # Calibrated model: the bars are after temperature scaling, the dots before.
        raw = [(b.mean_confidence, b.accuracy) for b in decisions.raw_bins if b.count]
        if raw:
            top.plot(
                [c for c, _ in raw],
                [a for _, a in raw],
                marker="o",
                color="tab:red",
                label="before calibration (mean confidence, accuracy)",
            )
        before = decisions.quality["uncalibrated"].ece.value
        title = (
            f"Reliability, ECE {before:.3f} before, {ece} after calibration "
            f"(T = {decisions.temperature:.3g})"
        )
    top.set_title(f"{title}\n{evaluation.model_id}", fontsize=9)
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(centres, [b.count for b in bins], width=width * 0.9, color="tab:grey")
    bottom.set_xlim(0, 1)
    bottom.set_xlabel("confidence of the predicted class")
    bottom.set_ylabel("images")
    return figure


def write_plots(report: EvaluationReport, folder: Path) -> list[Path]:
    """One PNG per model and kind: <model>-confusion.png, <model>-roc.png, ..."""
    written = []
    for evaluation in report.evaluations:
        stem = _safe(evaluation.model_id)
        written.append(save_png(confusion_figure(evaluation), folder / f"{stem}-confusion.png"))
        if evaluation.n:
            written.append(save_png(roc_figure(evaluation), folder / f"{stem}-roc.png"))
            written.append(
                save_png(reliability_figure(evaluation), folder / f"{stem}-reliability.png")
            )
    return written
