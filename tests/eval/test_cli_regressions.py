"""Eval and reproduce from the command line: bugs found by walking the documented
commands as a new user would."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app

runner = CliRunner()


@pytest.mark.parametrize("command", ["eval", "reproduce"])
def test_eval_and_reproduce_refuse_a_negative_seed(command: str) -> None:
    result = runner.invoke(app, [command, "--seed", "-1"])
    assert result.exit_code == 2, result.output
    assert "--seed" in result.output


def test_without_bootstrap_the_notes_do_not_claim_bootstrap_intervals() -> None:
    # With --bootstrap 0 the F1/AUC cells have no interval, yet the note under the table
    # announced "[95 % percentile bootstrap, 0 resamples ...]".
    from cxr_covid.evaluation.report import methods_note
    from cxr_covid.evaluation.results import EvaluationReport

    none = EvaluationReport([], [], [], 0.95, 0, 42)
    assert "0 resamples" not in methods_note(none)
    assert "no interval" in methods_note(none)
    assert (
        "0 resamples" not in none.to_dict()["interval_methods"]["f1_balanced_accuracy_macro_f1_auc"]
    )
    some = EvaluationReport([], [], [], 0.95, 200, 42)
    assert "200 resamples" in methods_note(some)


def test_reproduce_report_says_how_a_run_left_the_protocol() -> None:
    # report.md said "(smaller images and fewer epochs)" for any non-protocol run, e.g. for
    # the paper preset with only --batch-size 16; and printed the source as raw JSON.
    from cxr_covid.reproduce.report import _protocol_changes, describe_source

    paper_but_batch = {"image_size": 224, "epochs": 30, "batch_size": 16}
    assert _protocol_changes(paper_but_batch) == ["batch 16 instead of 32"]
    quick = {"image_size": 64, "epochs": 5, "batch_size": 32}
    assert _protocol_changes(quick) == ["64 px instead of 224", "5 epochs instead of 30"]
    assert describe_source({"kind": "zip", "path": "/x/a.zip"}) == "zip /x/a.zip"
    assert describe_source({"kind": "kaggle", "url": "https://k", "release": 1}) == (
        "Kaggle release 1"
    )
    assert describe_source({"kind": "dir", "path": "/x"}) == "folder /x"


def test_reproduce_progress_shows_validation_accuracy_with_its_interval() -> None:
    # "baseline-noaug: epoch 5/5 val accuracy 87.04%" had no count and no interval.
    from cxr_covid.reproduce.report import with_interval as _with_interval

    assert _with_interval(47 / 54, [54]) == "87.04% (47/54) [75.6-93.6]"
    assert _with_interval(0.5, []) == "50.00%"


def test_eval_on_the_validation_split_is_not_titled_test_accuracy() -> None:
    # `eval --split val` printed (and wrote in Markdown) "Test accuracy (..., val split)".
    import dataclasses

    import numpy as np

    from cxr_covid.evaluation.report import accuracy_title, to_markdown
    from cxr_covid.evaluation.results import EvaluationReport
    from tests.eval.test_report import Y_TRUE, _evaluation

    test = _evaluation("m", np.asarray(Y_TRUE))
    val = dataclasses.replace(test, test_set=dataclasses.replace(test.test_set, split="val"))
    assert accuracy_title(EvaluationReport([test], [], [], 0.95, 0, 1)) == "Test accuracy"
    report = EvaluationReport([val], [], [], 0.95, 0, 1)
    assert accuracy_title(report) == "Validation accuracy"
    assert "Test accuracy" not in to_markdown(report)
