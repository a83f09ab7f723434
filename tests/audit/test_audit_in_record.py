"""Issue 21, item 8: an audit leaves its summary in the model record, so the card shows it."""

from __future__ import annotations

from pathlib import Path

from cxr_covid.audit.run import AuditOptions, run_audit
from cxr_covid.models import store
from cxr_covid.sharing.card import render
from tests.audit.test_audit import build, train


def test_a_finished_audit_is_summarised_in_the_model_record(cxr_home: Path) -> None:
    build(cxr_home, "corners", shortcut=True, per_class=10)
    model_id = train("corners", epochs=1)
    result = run_audit(AuditOptions(model=model_id, control=False, attention=False))
    (summary,) = store.resolve(model_id).record().audits
    assert summary["verdict"] == result.verdict
    assert summary["folder"] == str(result.folder)
    assert summary["figures"]["full"]["n"] == result.views[0].accuracy.n
    assert f"Verdict: {result.verdict}" in render(store.resolve(model_id).record())
