"""`compare` end to end on a tiny generated dataset: two recipes, one seed, 1 epoch at 16 px;
the table and JSON, the files in the run folder, and a resume that reuses finished jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cxr_covid import classes
from cxr_covid.cli import app
from cxr_covid.compare.grid_jobs import CompareOptions
from cxr_covid.compare.recipes import parse_recipes
from cxr_covid.compare.run import run_compare
from cxr_covid.training import grid
from cxr_covid.training.events import TrainingInterrupted
from tests.helpers import build_dataset, write_class_folders
from tests.json_docs import assert_documented

runner = CliRunner()


def _external_tree(root: Path) -> Path:
    write_class_folders(root / "site-covid", per_class=3, labels=(classes.COVID,), seed=21)
    write_class_folders(
        root / "site-kids", per_class=3, labels=(classes.NORMAL, classes.VIRAL_PNEUMONIA), seed=22
    )
    return root


@pytest.fixture
def tiny(cxr_home: Path, tmp_path: Path) -> Path:
    build_dataset(cxr_home, "tiny", per_class=10, size=16)
    return _external_tree(tmp_path / "external")


def _options(external: Path, out: Path) -> CompareOptions:
    return CompareOptions(
        dataset="tiny",
        recipes=parse_recipes(["plain", "equalize"]),
        seeds=1,
        external=[external],
        image_size=16,
        epochs=1,
        batch_size=8,
        out=out,
    )


class _Counting:
    """The real training calls, counted; optionally interrupted at the n-th training."""

    def __init__(self, interrupt_at: int | None = None) -> None:
        self.trained = 0
        self.interrupt_at = interrupt_at

    def train(self, config: Any, reporter: Any, **hooks: Any) -> Any:
        from cxr_covid.training import run

        self.trained += 1
        if self.trained == self.interrupt_at:
            raise TrainingInterrupted(config.name, 0)
        return run.train(config, reporter, **hooks)


def test_compare_resumes_and_never_redoes_a_finished_job(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = _Counting(interrupt_at=2)
    with pytest.raises(TrainingInterrupted):
        run_compare(_options(tiny, out), trainer=grid.Trainer(train=first.train))
    assert first.trained == 2 and not (out / "compare.json").exists()
    second = _Counting()
    result = run_compare(_options(tiny, out), trainer=grid.Trainer(train=second.train))
    assert second.trained == 1  # plain was finished: only equalize is trained
    assert (result.trained, result.reused) == (1, 1)
    third = _Counting()
    run_compare(_options(tiny, out), trainer=grid.Trainer(train=third.train))
    assert third.trained == 0
    written = json.loads((out / "compare.json").read_text())
    assert [s["name"] for s in written["sets"]] == ["internal test", "site-covid", "site-kids"]
    assert [r["name"] for r in written["recipes"]] == ["plain", "equalize"]
    assert "| recipe | internal test | site-covid | site-kids |" in (out / "compare.md").read_text()


def test_an_interrupted_compare_says_rerun_the_same_command(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxr_covid.training import run

    def interrupted(config: Any, reporter: Any, **hooks: Any) -> Any:
        raise TrainingInterrupted(str(config.name), 0)

    monkeypatch.setattr(run, "train", interrupted)
    args = ["compare", "-d", "tiny", "-r", "plain", "--seeds", "1", "--external", str(tiny)]
    args += ["--image-size", "16", "--epochs", "1", "--out", str(tmp_path / "run")]
    result = runner.invoke(app, args)
    assert result.exit_code == 130, result.output
    assert "rerun the same command to continue" in result.stderr
    assert "train --resume" not in result.stderr  # a grid continues by itself


def test_compare_command_prints_the_table_and_json(tiny: Path, tmp_path: Path) -> None:
    args = ["compare", "-d", "tiny", "-r", "plain", "-r", "mine=--normalize clahe", "--seeds", "1"]
    args += ["--external", str(tiny), "--image-size", "16", "--epochs", "1", "--batch-size", "8"]
    args += ["--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert_documented("compare", doc)
    plain, mine = doc["recipes"]
    assert mine["options"] == {"normalize": "clahe"}
    internal = plain["sets"]["internal test"]
    assert set(internal["ensemble"]["recall"]) == set(classes.STUDY_CLASSES)
    assert internal["ensemble"]["auroc_covid"] is not None  # COVID-19 and others present
    assert plain["sets"]["site-covid"]["ensemble"]["auroc_covid"] is None  # COVID-19 only
    assert plain["sets"]["site-kids"]["per_seed"][0]["gap_from_internal"] is not None
    against = doc["against_plain"]
    assert {(a["recipe"], a["set"]) for a in against} == {
        ("mine", "internal test"),
        ("mine", "site-covid"),
        ("mine", "site-kids"),
    }
    assert "sign-flip" in doc["methods"]["seed_test"]
    assert {r["recipe"] for r in doc["ranking"]} == {"plain", "mine"}
    pooled = plain["external_pooled"]  # site-covid has no AUROC alone; pooled, it has
    assert pooled["images"] == sum(
        sum(s["counts"].values()) - s["left_out_as_training_copies"]
        for s in doc["sets"]
        if s["name"] != "internal test"
    )
    assert pooled["auroc_covid_ensemble"] is not None
    assert "within 3 points of plain" in doc["ranking_rule"]
    table = runner.invoke(app, args)  # reuses both models
    assert table.exit_code == 0, table.output
    for words in ("Recipes on tiny", "mine, ensemble", "Against plain", "Ranking", "research tool"):
        assert words in table.stdout
    assert "0 trained, 2 reused" in table.output


def test_compare_audit_and_audit_external_per_cohort(tiny: Path, tmp_path: Path) -> None:
    """--audit: the first seed's lung-blind control and source probe, read back on a rerun;
    and `audit --external` on a cohort tree gives one external result per cohort."""
    from cxr_covid.audit.results import AuditOptions
    from cxr_covid.audit.run import run_audit

    options = _options(tiny, tmp_path / "run")
    options.recipes = parse_recipes(["plain"])
    options.audit, options.audit_control_epochs = True, 1
    result = run_compare(options)
    (plain,) = result.recipes
    assert plain.audit is not None and plain.audit["model"] == plain.models[0]
    assert plain.audit["control"].endswith("]") and "%" in plain.audit["control"]
    assert plain.audit["source_probe"]  # skipped here (no collections), and says why
    assert (tmp_path / "run" / "audits" / plain.models[0] / "audit.json").is_file()
    assert "Audit (first seed" in (tmp_path / "run" / "compare.md").read_text()
    again = run_compare(options)  # the written audit is read back, not redone
    assert again.recipes[0].audit == plain.audit

    audit = run_audit(
        AuditOptions(
            model=plain.models[0],
            external=[tiny],
            control=False,
            attention=False,
            source_probe=False,
            out=tmp_path / "audit",
        )
    )
    assert [Path(e.folder).name for e in audit.external] == ["site-covid", "site-kids"]
    assert [e.images for e in audit.external] == [3, 6]


def test_an_adversarial_recipe_without_sources_is_refused_before_training(
    tiny: Path, tmp_path: Path
) -> None:
    from cxr_covid.errors import CxrCovidError

    options = _options(tiny, tmp_path / "run")
    options.recipes = parse_recipes(["plain", "adversarial"])
    counting = _Counting()
    with pytest.raises(CxrCovidError, match="records no collections"):
        run_compare(options, trainer=grid.Trainer(train=counting.train))
    assert counting.trained == 0
