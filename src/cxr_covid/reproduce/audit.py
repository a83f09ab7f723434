"""The shortcut audit as a step of `reproduce`: run once per run folder (resumable), and its
verdict set beside the study's table in report.md (issue 9).

The audited model is the study's first row (baseline, no augmentation): the lung-blind
control measures the dataset, which all three rows share.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cxr_covid import classes, stats
from cxr_covid.audit import report as audit_report
from cxr_covid.progress import Reporter

AUDITED_KEY = "baseline-noaug"
FOLDER = "audit"


def audit_step(
    state: Any,
    run_dir: Path,
    trained: dict[str, str],
    external: Sequence[Path],
    class_map: dict[str, str],
    control_epochs: int | None,
    reporter: Reporter,
) -> dict[str, Any]:
    """The audit's summary (audit.json's content), computed unless this run already has it."""
    from cxr_covid.audit.results import DEFAULT_CONTROL_EPOCHS, AuditOptions
    from cxr_covid.audit.run import run_audit

    folder = run_dir / FOLDER
    saved = folder / "audit.json"
    if state.step("audit") is not None and saved.is_file():
        reporter.message(f"audit: done ({folder})")
        return dict(json.loads(saved.read_text(encoding="utf-8")))
    if saved.is_file():  # written, but the run stopped before recording it
        data = dict(json.loads(saved.read_text(encoding="utf-8")))
    else:
        reporter.message(f"audit: {trained[AUDITED_KEY]} (lungs hidden / only, lung-blind control)")
        result = run_audit(
            AuditOptions(
                model=trained[AUDITED_KEY],
                external=list(external),
                class_map=dict(class_map),
                control_epochs=control_epochs or DEFAULT_CONTROL_EPOCHS,
                out=folder,
            ),
            reporter,
        )
        data = result.to_dict()
    state.finish("audit", folder=str(folder), level=data.get("shortcut_level"))
    return data


def _cell(p: dict[str, Any]) -> str:
    """A proportion from audit.json, written as the audit's own report writes it."""
    return audit_report.cell(stats.proportion(int(p.get("successes") or 0), int(p.get("n") or 0)))


def markdown(audit: dict[str, Any]) -> list[str]:
    """Lines for report.md: the verdict and the four ways of seeing the test split."""
    lines = [
        "## Shortcut audit: does the model read the lungs or the dataset?",
        "",
        f"Model `{audit['model']}`. **Verdict:** {audit['verdict']}",
        "",
        f"*Rests on:* {audit['verdict_basis']}.",
        "",
        "| view | test accuracy [95 % CI] | predicted as |",
        "|---|---|---|",
    ]
    views = list(audit.get("views", []))
    if audit.get("control"):
        views.append({**audit["control"], "view": "lung-blind control"})
    for view in views:
        predicted = ", ".join(
            f"{classes.display_name(c)} {n}" for c, n in view.get("predicted", {}).items()
        )
        lines.append(f"| {view['view']} | {_cell(view['accuracy'])} | {predicted} |")
    lines.append("")
    for ext in audit.get("external", []):
        recall = "; ".join(
            f"{classes.display_name(c)} {_cell(p)}" for c, p in ext["recall"].items()
        )
        lines.append(f"- External `{Path(ext['folder']).name}`: {recall}.")
    lines += ["", f"Full audit: `{FOLDER}/report.md`.", ""]
    return lines
