"""Issue 21, item 12: percentages were written two ways (`87.88%` in eval, `12 %` in the
audit); one helper, `text.percent`, writes them all."""

from __future__ import annotations

import re
from pathlib import Path

from cxr_covid import text
from cxr_covid.audit import report as audit_report
from cxr_covid.audit import verdict as audit_verdict
from cxr_covid.evaluation import report as eval_report

SRC = Path(__file__).resolve().parents[2] / "src" / "cxr_covid"


def test_one_helper_writes_every_percentage() -> None:
    assert text.percent(0.8788, 2) == "87.88%"
    assert text.percent(0.5) == "50.0%"
    assert text.percent(float("nan")) == "n/a"
    assert eval_report.percent(0.8788) == "87.88%"
    assert audit_report._pct(0.5) == "50.0%"
    assert audit_verdict._pct(0.5) == "50%"


def test_no_figure_is_formatted_with_a_space_before_the_percent_sign() -> None:
    spaced = re.compile(r"\}( |\\u00a0)%")  # f"{100 * x:.0f} %"
    found = [
        f"{path.relative_to(SRC)}:{n}"
        for path in SRC.rglob("*.py")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if spaced.search(line)
    ]
    assert found == []
