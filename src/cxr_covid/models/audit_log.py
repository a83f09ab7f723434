"""Audits kept in the model record: one short summary per `cxr-covid audit` run.

The audit's full output stays in its own folder (`<home>/audits/<model>-<time>/`); the record
keeps what a model card or `models show` needs to say that a model was audited, when, with
what verdict and on which figures (docs/commands/models.md). The audit calls
`append_audit(stored, result.to_dict())` once it has written its folder.
"""

from __future__ import annotations

import contextlib
from typing import Any

from cxr_covid.errors import CxrCovidError
from cxr_covid.models.store import StoredModel

AUDIT_SUMMARY_FORMAT = 1


def _accuracy(entry: Any) -> dict[str, Any] | None:
    """{value, successes, n, ci} of a proportion in the audit's JSON, or None."""
    if not isinstance(entry, dict):
        return None
    keys = ("value", "successes", "n", "ci")
    return {k: entry.get(k) for k in keys} if "n" in entry else None


def audit_summary(audit: dict[str, Any]) -> dict[str, Any]:
    """The record's summary of an audit document (`audit --json`): date, verdict, figures."""
    figures: dict[str, Any] = {}
    for view in audit.get("views") or []:
        if isinstance(view, dict) and isinstance(view.get("view"), str):
            figures[view["view"]] = _accuracy(view.get("accuracy"))
    for name in ("control", "origin_only"):
        part = audit.get(name)
        if isinstance(part, dict):
            figures[name] = _accuracy(part.get("accuracy"))
    attention = audit.get("attention")
    if isinstance(attention, dict):
        figures["median_share_inside_lungs"] = attention.get("median_share_inside")
    external = [
        {"folder": e.get("folder"), "accuracy": _accuracy(e.get("accuracy"))}
        for e in audit.get("external") or []
        if isinstance(e, dict)
    ]
    if external:
        figures["external"] = external
    return {
        "format": AUDIT_SUMMARY_FORMAT,
        "created": audit.get("created"),
        "dataset": audit.get("dataset"),
        "verdict": audit.get("verdict"),
        "shortcut_level": audit.get("shortcut_level"),
        "chance": audit.get("chance"),
        "figures": figures,
        "folder": audit.get("folder"),
    }


def append_audit(stored: StoredModel, audit: dict[str, Any]) -> bool:
    """Append the summary of `audit` to the model's record. False (the audit itself stands,
    in its folder) when the record cannot be written: a read-only model folder."""
    # Read again: an eval or calibrate may have written the record while the audit ran.
    record = stored.reload_record()
    record.audits = [*record.audits, audit_summary(audit)]
    with contextlib.suppress(OSError, CxrCovidError):
        stored.write_record(record)
        return True
    return False
