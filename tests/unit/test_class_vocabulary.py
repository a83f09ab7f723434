"""One class vocabulary for display; the study's headings only beside its published figures."""

from __future__ import annotations

import re
from pathlib import Path

from cxr_covid import classes
from cxr_covid.evaluation import seed_tables
from cxr_covid.reproduce import report as reproduce_report

SRC = Path(__file__).resolve().parents[2] / "src" / "cxr_covid"
STUDY_WORDS = re.compile(r"[\"'](Covid-19|Healthy|Pneumonia)[\"']")


def test_display_names_are_the_cli_words_written_out() -> None:
    assert [classes.display_name(c) for c in classes.STUDY_CLASSES] == [
        "COVID-19",
        "normal",
        "viral pneumonia",
    ]
    for cls in classes.ALL_CLASSES:  # each display name reads back as its class
        assert classes.canonical(classes.display_name(cls)) == cls
        assert classes.canonical(classes.study_heading(cls)) == cls


def test_the_study_headings_appear_only_beside_the_published_figures() -> None:
    header = reproduce_report.comparison_header()
    assert "ours: COVID-19" in header and "study: Covid-19" in header
    assert "ours: normal" in header and "study: Healthy" in header
    assert seed_tables.study_column_name("viral_pneumonia") == "Pneumonia"
    assert seed_tables.column_name("viral_pneumonia") == "viral pneumonia"


def test_no_module_writes_the_study_headings_itself() -> None:
    """Only classes.py holds the study's words: a table cannot slip back into them."""
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "classes.py" and STUDY_WORDS.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
