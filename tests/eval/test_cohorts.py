"""Issue 21 item 2: one folder rule. `eval --data` and `audit --external` read a tree of
cohorts (each holding class folders) as `download --from-dir` does, and report per cohort."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli import app
from cxr_covid.errors import DataError
from cxr_covid.evaluation.testsets import external_test_sets, find_cohorts
from tests.eval.conftest import GOOD
from tests.helpers import write_class_folders

runner = CliRunner()


def _cohort_tree(root: Path) -> Path:
    """Shaped like cxr-external-dev: hannover-covid/covid/, kermany-test/{normal,viral...}/."""
    write_class_folders(root / "hannover-covid", per_class=3, labels=(classes.COVID,), seed=11)
    write_class_folders(
        root / "kermany-test",
        per_class=2,
        labels=(classes.NORMAL, classes.VIRAL_PNEUMONIA),
        folder_names={classes.NORMAL: "NORMAL", classes.VIRAL_PNEUMONIA: "Viral Pneumonia"},
        seed=12,
    )
    (root / "kermany-test" / "masks").mkdir()  # ignored, as download ignores it
    return root


def test_find_cohorts_reads_a_tree_and_a_plain_folder(tmp_path: Path) -> None:
    tree = _cohort_tree(tmp_path / "tree")
    found = find_cohorts(tree)
    assert [c.name for c in found] == ["hannover-covid", "kermany-test"]
    sets = external_test_sets(tree, classes.STUDY_CLASSES)
    assert [(s.name, s.counts()) for s in sets] == [
        ("hannover-covid", {"covid": 3}),
        ("kermany-test", {"normal": 2, "viral_pneumonia": 2}),
    ]
    plain = write_class_folders(tmp_path / "plain", per_class=1)
    assert [c.name for c in find_cohorts(plain)] == [""]
    # Cohorts nested deeper are found too, named by their path; a lone wrapper folder
    # (site-a/2024/) is stepped through, as folder_test_set steps through an extracted zip.
    write_class_folders(tmp_path / "deep" / "site-a" / "2024", per_class=1, seed=3)
    write_class_folders(tmp_path / "deep" / "site-b" / "x" / "early", per_class=1, seed=4)
    write_class_folders(tmp_path / "deep" / "site-b" / "x" / "late", per_class=1, seed=5)
    assert [c.name for c in find_cohorts(tmp_path / "deep")] == [
        "site-a",
        "site-b/x/early",
        "site-b/x/late",
    ]


def test_a_tree_without_class_folders_is_refused_as_before(tmp_path: Path) -> None:
    (tmp_path / "x" / "stuff" / "things").mkdir(parents=True)
    (tmp_path / "x" / "stuff" / "things" / "a.png").write_bytes(b"")
    with pytest.raises(DataError, match="unknown class folder"):
        external_test_sets(tmp_path / "x", classes.STUDY_CLASSES)


def test_eval_data_on_a_cohort_tree_reports_per_cohort(eval_home: Path, tmp_path: Path) -> None:
    tree = _cohort_tree(tmp_path / "external")
    out = tmp_path / "e.json"
    result = runner.invoke(app, ["eval", GOOD, "--data", str(tree), "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    assert "unknown class folder" not in result.output
    models = json.loads(out.read_text())["models"]
    assert [(m["cohort"], m["n"]) for m in models] == [("hannover-covid", 3), ("kermany-test", 4)]
    assert f"{GOOD} on hannover-covid" in result.output
    assert f"{GOOD} on kermany-test" in result.output
    # No McNemar across cohorts: they hold different images.
    assert "not evaluated on the same images" not in result.output


def test_eval_external_is_repeatable_like_everywhere_else(eval_home: Path, tmp_path: Path) -> None:
    """`--external A --external B` evaluates every cohort of both (before: only the last
    folder, silently); a plain folder of class folders is named by its folder."""
    tree = _cohort_tree(tmp_path / "external")
    adults = write_class_folders(tmp_path / "adult-normal", per_class=2, labels=(classes.NORMAL,))
    out = tmp_path / "e.json"
    argv = [
        "eval",
        GOOD,
        "--external",
        str(tree),
        "--external",
        str(adults),
        "--json-out",
        str(out),
    ]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    models = json.loads(out.read_text())["models"]
    assert [(m["cohort"], m["n"]) for m in models] == [
        ("hannover-covid", 3),
        ("kermany-test", 4),
        ("adult-normal", 2),
    ]
    assert f"{GOOD} on adult-normal" in result.output


def test_external_is_the_one_name_and_data_its_hidden_old_spelling(
    eval_home: Path, tmp_path: Path
) -> None:
    """Issue 21 item 5: audit, reproduce and compare say --external; so does eval now."""
    tree = _cohort_tree(tmp_path / "external")
    documents = []
    for spelling in ("--external", "--data"):
        out = tmp_path / f"{spelling.strip('-')}.json"
        result = runner.invoke(app, ["eval", GOOD, spelling, str(tree), "--json-out", str(out)])
        assert result.exit_code == 0, result.output
        documents.append([(m["cohort"], m["n"]) for m in json.loads(out.read_text())["models"]])
    assert documents[0] == documents[1] == [("hannover-covid", 3), ("kermany-test", 4)]
    shown = runner.invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).output
    assert "--external" in shown and "--data " not in shown


def test_api_evaluate_takes_one_folder_or_several(eval_home: Path, tmp_path: Path) -> None:
    import cxr_covid

    tree = _cohort_tree(tmp_path / "external")
    adults = write_class_folders(tmp_path / "adults", per_class=2, labels=(classes.NORMAL,))
    one = cxr_covid.evaluate(GOOD, data=str(tree), save=False, bootstrap=0)
    assert [e.test_set.name for e in one.evaluations] == ["hannover-covid", "kermany-test"]
    both = cxr_covid.evaluate(GOOD, data=[tree, adults], save=False, bootstrap=0)
    assert [e.test_set.name for e in both.evaluations] == [
        "hannover-covid",
        "kermany-test",
        "adults",
    ]
