"""The audit's files: report.md, plots (views, attention) and Grad-CAM panels.

Numbers come from `cxr_covid.audit.results`'s dataclasses; this module only renders them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cxr_covid import atomic, classes, stats
from cxr_covid.about import DISCLAIMER
from cxr_covid.data.overlap import CHECKED_TRANSFORMATIONS
from cxr_covid.evaluation.plots import new_figure, save_png
from cxr_covid.text import percent

if TYPE_CHECKING:
    from cxr_covid.audit.results import AttentionResult, AuditResult, Panels, ViewResult
    from cxr_covid.audit.source_probe import SourceProbeResult


def _pct(x: float) -> str:
    return percent(x)


def cell(p: stats.Proportion) -> str:
    """The house accuracy cell (eval_report.cell); `-` where a view has no images."""
    from cxr_covid.evaluation.report import cell as accuracy_text

    return accuracy_text(p) if p.n else "-"


def distribution(view: ViewResult) -> str:
    return ", ".join(f"{classes.display_name(c)} {n}" for c, n in view.predicted.items())


def view_rows(result: AuditResult) -> list[tuple[str, ViewResult]]:
    rows: list[tuple[str, ViewResult]] = [(v.view, v) for v in result.views]
    if result.control is not None:
        rows.append(("lung-blind control", result.control.view))
    if result.origin_only is not None:
        rows.append((result.origin_only.view, result.origin_only))
    return rows


def estimate_cell(estimate: stats.Estimate | None) -> str:
    if estimate is None:
        return "-"
    return f"{_pct(estimate.value)} [{_pct(estimate.low)}-{_pct(estimate.high)}]"


def probe_markdown(probe: SourceProbeResult | None) -> list[str]:
    """The source probe's section (audit.source_probe.SourceProbeResult; None: not run)."""
    if probe is None:
        return []
    lines = ["", "## Source probe (collection within class)", ""]
    if probe.skipped:
        return [*lines, f"Skipped: {probe.skipped}."]
    lines += [
        "How well a cross-validated logistic regression reads each test image's collection "
        "from the model's penultimate features, within its class (balanced accuracy, 95 % "
        "stratified-bootstrap interval). Near chance: the features carry little of the "
        "source; far above: the model has learnt where its images come from.",
        "",
        "| class | collections (test images) | balanced accuracy | chance |",
        "|---|---|---|---|",
    ]
    for p in probe.per_class:
        sources = ", ".join(f"{c} {n}" for c, n in p.collections.items())
        lines.append(
            f"| {classes.display_name(p.label)} | {sources} | "
            f"{estimate_cell(p.balanced_accuracy)} | {_pct(p.chance)} |"
        )
    lines.append(
        f"| overall | | {estimate_cell(probe.overall)} | {_pct(probe.overall_chance or math.nan)} |"
    )
    return lines + ([""] + [f"- {n}" for n in probe.notes] if probe.notes else [])


def to_markdown(result: AuditResult) -> str:
    lines = [
        f"# Shortcut audit of {result.model_id}",
        "",
        f"> {DISCLAIMER}",
        "",
        "## Verdict",
        "",
        result.verdict,
        "",
        f"*Rests on:* {result.verdict_basis}.",
        "",
        "## Test split, four ways",
        "",
        f"Dataset `{result.dataset}`, test split. Chance: {_pct(result.chance)} "
        f"(largest class: {_pct(result.majority)} of the images). Lung field: "
        f"{result.lung_field['reason']}; hidden parts filled with `{result.fill}`. "
        "Intervals: 95 % Wilson.",
        "",
        "| view | accuracy | "
        + " | ".join(classes.display_name(c) for c in result.classes)
        + " | predicted as |",
        "|---|---|" + "---|" * len(result.classes) + "---|",
    ]
    for label, view in view_rows(result):
        recall = " | ".join(
            cell(view.per_class[c]) if c in view.per_class else "-" for c in result.classes
        )
        flag = " (one class for >= 90 %)" if view.collapsed else ""
        lines.append(f"| {label} | {cell(view.accuracy)} | {recall} | {distribution(view)}{flag} |")
    if result.control is not None:
        c = result.control
        lines += [
            "",
            f"Control: `{c.model_id}`, {c.epochs} epochs, "
            f"{'reused from the cache' if c.reused else 'trained for this audit'} ({c.path}).",
        ]
    else:
        lines += ["", "Control: skipped (--no-control)."]
    if result.attention is not None:
        lines += _attention_lines(result.attention)
    if result.external:
        lines += _external_lines(result)
    lines += probe_markdown(result.source_probe)
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    lines += ["", "![views](views.png)", ""]
    if result.attention is not None:
        lines += ["![attention](attention.png)", ""]
    return "\n".join(lines)


def _attention_lines(att: AttentionResult) -> list[str]:
    lines = [
        "",
        "## Attention (Grad-CAM mass inside the lung field)",
        "",
        f"Layer `{att.layer}`. Uniform attention would put {_pct(att.field_area)} inside."
        + (
            f" {att.no_evidence} image(s) had an all-zero map (no region raised the "
            "predicted class) and are left out."
            if att.no_evidence
            else ""
        ),
        "",
        "| class | images | median | quartiles | lowest |",
        "|---|---|---|---|---|",
    ]
    for cls, spread in att.per_class().items():
        lines.append(
            f"| {classes.display_name(cls)} | {spread['n']:.0f} | {_pct(spread['median'])} | "
            f"{_pct(spread['q1'])}-{_pct(spread['q3'])} | {_pct(spread['min'])} |"
        )
    if att.panels:
        lines += ["", "Images that look furthest outside the lungs:", ""]
        lines += [f"![{Path(p).name}]({p})" for p in att.panels]
    return lines


def _external_lines(result: AuditResult) -> list[str]:
    lines = [
        "",
        "## External sets",
        "",
        "| set | class | images | recall | internal recall | difference [95 % CI] |",
        "|---|---|---|---|---|---|",
    ]
    full = result.views[0]
    for ext in result.external:
        for cls, prop in ext.per_class.items():
            d, lo, hi = ext.difference.get(cls, (math.nan, math.nan, math.nan))
            internal = full.per_class.get(cls)
            lines.append(
                f"| {Path(ext.folder).name} | {classes.display_name(cls)} | {prop.n} | "
                f"{cell(prop)} | {cell(internal) if internal else '-'} | "
                f"{100 * d:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] points |"
            )
        if ext.overlaps:
            lines.append(
                f"\n{len(ext.overlaps)} image(s) of {ext.folder} are training or "
                "validation images of the model (or near-duplicates) and were left out."
            )
        lines.append(f"\nLeakage check: {CHECKED_TRANSFORMATIONS}.")
    return lines


def write_plots(folder: Path, result: AuditResult) -> None:
    rows = view_rows(result)
    figure = new_figure(7, 3.6)
    axis = figure.subplots()
    values = [v.accuracy.value for _, v in rows]
    errors = np.array(
        [[v.accuracy.value - v.accuracy.low, v.accuracy.high - v.accuracy.value] for _, v in rows]
    ).T
    axis.bar(range(len(rows)), values, yerr=errors, capsize=4, color="0.55")
    axis.axhline(result.chance, color="tab:red", linestyle="--", label="chance")
    axis.set_xticks(range(len(rows)), [label for label, _ in rows])
    axis.set_ylim(0, 1)
    axis.set_ylabel("test accuracy (95 % Wilson)")
    axis.legend(loc="upper right")
    axis.set_title(f"{result.model_id}: test split, four ways")
    save_png(figure, folder / "views.png")
    if result.attention is not None and result.attention.per_image:
        per_class = result.attention.per_class()
        figure = new_figure(6, 3.6)
        axis = figure.subplots()
        data = [[s for _, c, s in result.attention.per_image if c == cls] for cls in per_class]
        axis.boxplot(data, tick_labels=[classes.display_name(c) for c in per_class])
        axis.axhline(result.attention.field_area, color="tab:red", linestyle="--", label="uniform")
        axis.set_ylim(0, 1)
        axis.set_ylabel("Grad-CAM mass inside the lung field")
        axis.legend(loc="lower right")
        save_png(figure, folder / "attention.png")


def write_panels(
    folder: Path,
    attention: AttentionResult,
    images: Sequence[Path],
    model_classes: Sequence[str],
    panels: Panels,
) -> list[str]:
    """Grad-CAM panels (heatmap_images.panel_png) of the `panels.count` images that look
    furthest outside the lung field, each with the field the audit measured against outlined
    (as `heatmap` draws it); returns their paths relative to `folder`."""
    from cxr_covid.inference.gradcam import upsample
    from cxr_covid.inference.heatmap_images import LungOutline, overlay, panel_png

    share_of = {p: s for p, _, s in attention.per_image}
    order = sorted(
        (i for i in range(len(images)) if str(images[i]) in share_of),
        key=lambda i: share_of[str(images[i])],
    )[: panels.count]
    written: list[str] = []
    for rank, i in enumerate(order, 1):
        pixels = panels.pixels[i]
        size = pixels.shape[0]
        heat = upsample(panels.cams[i].cam, size, size)
        share = share_of[str(images[i])]
        outline = LungOutline(panels.fields[i], panels.field_kind, share)
        title = images[i].name  # the share is in the outline's caption
        png = panel_png(
            pixels,
            overlay(pixels, heat),
            model_classes,
            panels.cams[i],
            title=title,
            lungs=outline,
        )
        relative = f"panels/{rank:02d}-{images[i].stem}.png"
        atomic.write_bytes(folder / relative, png)
        written.append(relative)
    return written
