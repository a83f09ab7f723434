"""`compare --audit`: the shortcut audit (audit/run.py) of each recipe's first seed, for its
lung-blind control accuracy and its source probe. Each audit trains one lung-blind control
model (cached by the audit under `<home>/audit/controls/`); its report lands in
`<run folder>/audits/<recipe>/`, and a rerun reads an audit already written there."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cxr_covid.compare.grid_jobs import CompareOptions
from cxr_covid.compare.report import CompareResult
from cxr_covid.progress import Reporter


def _interval(figure: dict[str, Any] | None) -> str:
    if not figure or figure.get("value") is None:
        return "n/a"
    low, high = figure.get("ci") or [None, None]
    text = f"{100 * figure['value']:.1f}%"
    if low is not None and high is not None:
        text += f" [{100 * low:.1f}-{100 * high:.1f}]"
    return text


def summary(model_id: str, audit: dict[str, Any]) -> dict[str, Any]:
    """The two figures compare shows, from an audit's audit.json document."""
    control = audit.get("control") or {}
    probe = audit.get("source_probe") or {}
    chance = probe.get("overall_chance")
    probe_text = _interval(probe.get("overall"))
    if probe.get("skipped"):
        probe_text = f"skipped: {probe['skipped']}"
    elif chance is not None and math.isfinite(chance):
        probe_text += f" (chance {100 * chance:.0f}%)"
    return {
        "model": model_id,
        "control": _interval(control.get("accuracy")),
        "source_probe": probe_text,
        "control_detail": control or None,
        "source_probe_detail": probe or None,
    }


def audit_first_seeds(
    result: CompareResult, options: CompareOptions, folder: Path, reporter: Reporter
) -> None:
    from cxr_covid.audit.results import AuditOptions
    from cxr_covid.audit.run import run_audit

    for recipe in result.recipes:
        model_id = recipe.models[0]
        # Keyed by the model, not the recipe: a rerun with other settings trains other models,
        # and must not show the audit of an earlier one.
        target = folder / "audits" / model_id
        written = target / "audit.json"
        document = json.loads(written.read_text(encoding="utf-8")) if written.is_file() else {}
        if document.get("model") != model_id:
            reporter.message(f"audit of {model_id} (trains a lung-blind control)")
            audit = run_audit(
                AuditOptions(
                    model=model_id,
                    control_epochs=options.audit_control_epochs,
                    attention=False,
                    panels=0,
                    out=target,
                    batch_size=options.batch_size,
                    class_map=options.class_map,
                ),
                reporter,
            )
            document = audit.to_dict()
        recipe.audit = summary(model_id, document)
