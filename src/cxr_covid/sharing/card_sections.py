"""Sections of the model card that read more than the record: the calibration figures of a
stored evaluation, where the training images come from (the dataset's recorded collections
and age groups), and the audits kept in the record. Rendered as text, never as raw JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cxr_covid.classes import display_name
from cxr_covid.models.store import ModelRecord
from cxr_covid.text import percent

CALIBRATION_KEYS = ("probabilities", "ece", "brier", "ood_flagged")
_MEASURES = {"ece": "Expected calibration error", "brier": "Brier score"}


def _estimate(entry: Any) -> str:
    """`0.041 [0.020-0.070]` from {"value", "ci"}; `n/a` when there is no number."""
    if not isinstance(entry, dict) or not isinstance(entry.get("value"), (int, float)):
        return "n/a"
    text = f"{entry['value']:.3f}"
    ci = entry.get("ci")
    if isinstance(ci, list) and len(ci) == 2 and all(isinstance(x, (int, float)) for x in ci):
        text += f" [{ci[0]:.3f}-{ci[1]:.3f}]"
    return text


def calibration_lines(extra: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Bullet lines for an evaluation's calibration figures, and what is left of `extra`."""
    lines: list[str] = []
    if isinstance(extra.get("probabilities"), str):
        lines.append(f"- Probabilities reported: {extra['probabilities']}.")
    for key, label in _MEASURES.items():
        by_kind = extra.get(key)
        if isinstance(by_kind, dict) and by_kind:
            parts = [f"{kind} {_estimate(value)}" for kind, value in by_kind.items()]
            lines.append(f"- {label} (lower is better): {'; '.join(parts)}.")
    flagged = extra.get("ood_flagged")
    if isinstance(flagged, int):
        lines.append(f"- Images the out-of-distribution guard flagged: {flagged}.")
    rest = {k: v for k, v in extra.items() if k not in CALIBRATION_KEYS}
    return lines, rest


def _counts(table: dict[str, dict[str, int]], classes: Sequence[str]) -> list[str]:
    lines = []
    for cls in [c for c in classes if c in table] + [c for c in table if c not in classes]:
        by_origin = table[cls]
        total = sum(by_origin.values()) or 1
        named = ", ".join(
            f"{origin} {n} ({percent(n / total, 0)})"
            for origin, n in sorted(by_origin.items(), key=lambda item: -item[1])
        )
        lines.append(f"  - {display_name(cls)}: {named}.")
    return lines


def provenance_lines(record: ModelRecord, summary: dict[str, Any] | None) -> list[str]:
    """Where the training images come from, as recorded for the dataset (`download
    --sources`, the Kaggle workbooks); says so when nothing is recorded."""
    collections = (summary or {}).get("collections") or {}
    ages = (summary or {}).get("age_groups") or {}
    known = any(o != "unknown" for t in (collections, ages) for c in t.values() for o in c)
    if not known:
        return [
            "- Sources by class: not recorded for this dataset (give them with `cxr-covid "
            "download --sources FILE.csv`). In the Kaggle database, viral pneumonia (all) and "
            "part of the normal images are the Kermany et al. paediatric collection, and the "
            "COVID-19 images adults from public repositories (see the licences below)."
        ]
    lines = ["- Sources by class, as recorded for this dataset (original images):"]
    lines += _counts(collections, record.classes)
    if any(o != "unknown" for c in ages.values() for o in c):
        lines.append("- Age groups by class:")
        lines += _counts(ages, record.classes)
    lines += [f"- **Confounding:** {text}" for text in (summary or {}).get("confounding", [])]
    return lines


def audit_lines(record: ModelRecord) -> list[str]:
    """The shortcut audits kept in the record (`cxr-covid audit`), newest last."""
    if not record.audits:
        return [
            "## Shortcut audit",
            "",
            "- Not audited yet: run `cxr-covid audit` and write the card again.",
            "",
        ]
    lines = ["## Shortcut audit", ""]
    for number, audit in enumerate(record.audits, 1):
        lines.append(
            f"### Audit {number}: {audit.get('created', '?')} on dataset "
            f"`{audit.get('dataset', '?')}`"
        )
        lines += ["", f"- Verdict: {audit.get('verdict', '?')}"]
        if audit.get("shortcut_level"):
            lines.append(f"- Shortcut level: {audit['shortcut_level']}.")
        figures = audit.get("figures") or {}
        for name, figure in figures.items():
            if isinstance(figure, dict) and isinstance(figure.get("value"), (int, float)):
                lines.append(
                    f"- {name.replace('_', ' ')}: {percent(figure['value'])} "
                    f"({figure.get('successes', '?')}/{figure.get('n', '?')})."
                )
        inside = figures.get("median_share_inside_lungs")
        if isinstance(inside, (int, float)):
            lines.append(f"- Median Grad-CAM mass inside the lungs: {percent(inside)}.")
        if audit.get("folder"):
            lines.append(f"- Full report: `{audit['folder']}`.")
        lines.append("")
    return lines
