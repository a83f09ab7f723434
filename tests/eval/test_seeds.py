"""Run-to-run variation (`--seeds`): the statistics, `reproduce --seeds`, `train --seeds` and
`eval --group`, with tiny models on tiny generated data."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid import stats, study
from cxr_covid.cli import app
from cxr_covid.evaluation import seeds
from cxr_covid.progress import NullReporter
from tests.eval.test_reproduce_e2e import kaggle_like_zip
from tests.helpers import build_dataset
from tests.json_docs import assert_documented

runner = CliRunner()


# --- statistics (no TensorFlow) -------------------------------------------------------------


def test_permutation_test_with_one_seed_is_mcnemars_exact_test() -> None:
    rng = np.random.default_rng(3)
    checked = 0
    for _ in range(20):
        a = rng.random(40) < 0.8
        b = rng.random(40) < 0.6
        if int((a != b).sum()) > seeds.EXACT_LIMIT:
            continue  # beyond the exact enumeration: the test samples permutations instead
        p, exact = seeds.paired_permutation_test(a.astype(float), b.astype(float))
        assert exact
        assert p == pytest.approx(stats.mcnemar(a, b).p_exact)
        checked += 1
    assert checked >= 5


def test_permutation_test_sees_a_consistent_difference_over_many_images() -> None:
    # 60 images; recipe A is right on every seed of 40 more images than B, never the reverse.
    a = np.r_[np.ones(50), np.full(10, 0.2)]
    b = np.r_[np.ones(10), np.full(40, 0.4), np.full(10, 0.2)]
    p, exact = seeds.paired_permutation_test(a, b, permutations=2000, seed=1)
    assert not exact
    assert p < 0.01
    same, _ = seeds.paired_permutation_test(a, a.copy())
    assert same == 1.0
    # The sign of the difference does not matter (two-sided).
    assert seeds.paired_permutation_test(b, a, permutations=2000, seed=1)[0] == p


def test_seed_interval_counts_images_once_and_widens_with_seed_noise() -> None:
    y_true = np.repeat([0, 1], 20)
    masks = [np.ones(40, dtype=bool), y_true == 0]
    one = (np.arange(40) < 30)[None, :]  # one run: 30 of 40 right

    def interval(correct: np.ndarray) -> list[tuple[float, float]]:
        return seeds.seed_averaged_intervals(correct, y_true, masks, 400, 0)

    # The same images seen by 4 identical seeds are still 40 images, not 160: the interval
    # is the one-run interval, as wide as the images make it (about a Wilson interval).
    assert interval(np.repeat(one, 4, axis=0)) == interval(one)
    low, high = interval(one)[0]
    wilson = stats.wilson_interval(30, 40)
    assert high - low == pytest.approx(wilson[1] - wilson[0], abs=0.08)
    # Two seeds with the same mean (0.75) but 90 % and 60 % apart: the seeds' disagreement
    # widens the interval.
    apart = np.stack([np.arange(40) < 36, np.arange(40) < 24])
    same = np.stack([np.arange(40) < 30, np.arange(40) < 30])
    (a_low, a_high), _ = interval(apart)
    (s_low, s_high), _ = interval(same)
    assert a_high - a_low > s_high - s_low + 0.05


def test_seed_interval_never_collapses_when_every_seed_is_always_right() -> None:
    # 18 of 18 on each of three seeds: the bootstrap alone would say [100 %, 100 %].
    y_true = np.zeros(18, dtype=int)
    masks = [np.ones(18, dtype=bool)]
    ((low, high),) = seeds.seed_averaged_intervals(np.ones((3, 18), bool), y_true, masks, 200, 0)
    assert high == 1.0
    assert low == pytest.approx(stats.wilson_interval(18, 18)[0])
    # Without a bootstrap: the Wilson interval of the seed-averaged accuracy over the images.
    correct = np.stack([np.arange(18) < 15, np.arange(18) < 17])
    ((w_low, w_high),) = seeds.seed_averaged_intervals(correct, y_true, masks, 0, 0)
    assert (w_low, w_high) == pytest.approx(stats.wilson_interval(16, 18))


def test_verdict_range_then_interval_then_outside() -> None:
    per_seed = [stats.proportion(k, 33) for k in (27, 29, 30)]
    cell = seeds.SeedCell("covid", per_seed, (0.75, 0.95))
    assert seeds.verdict(100 * 28 / 33, cell) == seeds.INSIDE_RANGE
    assert seeds.verdict(78.78, cell) == seeds.INSIDE_INTERVAL
    assert seeds.verdict(97.0, cell) == seeds.OUTSIDE
    assert cell.mean == pytest.approx(np.mean([27 / 33, 29 / 33, 30 / 33]))
    assert cell.sd == pytest.approx(np.std([27 / 33, 29 / 33, 30 / 33], ddof=1))
    assert (cell.low, cell.high) == (27 / 33, 30 / 33)
    one = seeds.SeedCell("covid", per_seed[:1], (0.7, 0.9))
    assert math.isnan(one.sd) and one.to_dict()["sd"] is None


# --- reproduce --seeds ----------------------------------------------------------------------

TINY = ["--preset", "quick", "--image-size", "16", "--batch-size", "16", "--bootstrap", "50"]


def _reproduce(archive: Path, run_dir: Path, *extra: str) -> object:
    args = ["reproduce", *TINY, "--from-zip", str(archive), "--out", str(run_dir), *extra]
    return runner.invoke(app, args)


def test_reproduce_seeds_spread_from_real_per_seed_evaluations(
    cxr_home: Path, tmp_path: Path
) -> None:
    archive = kaggle_like_zip(tmp_path / "archive.zip", per_class=12)
    run_dir = tmp_path / "run"
    result = _reproduce(archive, run_dir, "--epochs", "1", "--seeds", "2", "--json")
    assert result.exit_code == 0, result.output
    assert "estimate: about" in result.stderr and " x2 " in result.stderr
    data = json.loads(result.stdout)
    assert_documented("reproduce", data)
    summary = data["seeds"]
    assert summary["seeds"] == 2
    assert [r["key"] for r in summary["rows"]] == [m.key for m in study.STUDY_MODELS]

    predictions: dict[str, list[float]] = {}
    for row, spec in zip(summary["rows"], study.STUDY_MODELS, strict=True):
        assert row["seeds"] == [42, 43]
        assert len(set(row["models"])) == 2
        for seed, model_id in zip(row["seeds"], row["models"], strict=True):
            record = json.loads((cxr_home / "models" / model_id / "model.json").read_text())
            # Seeds differ and are recorded; every model belongs to the run's group.
            assert record["training"]["seed"] == seed
            assert record["training"]["group"] == summary_group(run_dir)
            assert len(record["evaluations"]) == 1
            saved = record["evaluations"][0]
            for column, cell in row["cells"].items():
                i = row["seeds"].index(seed)
                mine = cell["per_seed"][i]
                # Each per-seed figure is that model's own saved evaluation.
                if column == "total":
                    assert (mine["successes"], mine["n"]) == (saved["correct"], saved["n"])
                else:
                    theirs = saved["per_class"][column]
                    assert (mine["successes"], mine["n"]) == (theirs["correct"], theirs["n"])
            predictions[model_id] = record["evaluations"][0]["confusion_matrix"]
        for column, cell in row["cells"].items():
            values = [p["successes"] / p["n"] for p in cell["per_seed"]]
            assert cell["mean"] == pytest.approx(np.mean(values))
            assert cell["sd"] == pytest.approx(np.std(values, ddof=1))
            assert [cell["min"], cell["max"]] == pytest.approx([min(values), max(values)])
            assert cell["published_percent"] == spec.published[column]
            cell_obj = seeds.SeedCell(
                column,
                [stats.proportion(p["successes"], p["n"]) for p in cell["per_seed"]],
                (cell["interval"][0], cell["interval"][1]),
            )
            assert cell["verdict"] == seeds.verdict(spec.published[column], cell_obj)
    assert len(summary["comparisons"]) == 3
    assert all(0 < c["p_value"] <= 1 for c in summary["comparisons"])
    # Two seeds of one recipe are two different networks: their weights differ.
    row = summary["rows"][2]
    weights = [_weights(cxr_home, model_id) for model_id in row["models"]]
    assert any(not np.array_equal(a, b) for a, b in zip(*weights, strict=True))

    per_seed = list(csv.DictReader(io.StringIO((run_dir / "seeds.csv").read_text())))
    assert len(per_seed) == 3 * 2 * len(study.TABLE_COLUMNS)
    assert {r["seed"] for r in per_seed} == {"42", "43"}
    assert (run_dir / "plots" / "seeds.png").stat().st_size > 1000
    report = (run_dir / "report.md").read_text()
    assert "Across 2 seeds" in report and "Per seed" in report and "permutation" in report
    assert "first seed only" in report
    assert len(data["evaluation"]["models"]) == 6
    assert len(data["evaluation"]["mcnemar"]) == 6  # within each seed

    # Extend to 3 seeds: the first two are reused, only seed 44 is trained.
    more = _reproduce(archive, run_dir, "--epochs", "1", "--seeds", "3", "--no-estimate")
    assert more.exit_code == 0, more.output
    assert more.output.count(": done (model ") == 6
    assert more.output.count(" -> model ") == 3
    extended = json.loads((run_dir / "results.json").read_text())["seeds"]
    assert extended["rows"][0]["seeds"] == [42, 43, 44]
    assert extended["rows"][0]["models"][:2] == summary["rows"][0]["models"]
    assert "Across 3 seeds" in more.output
    for model_id in summary["rows"][0]["models"]:  # reused models were not evaluated twice
        record = json.loads((cxr_home / "models" / model_id / "model.json").read_text())
        assert len(record["evaluations"]) == 1

    # The run's models are a group: `eval --group` gives the same view for any recipe.
    group = summary_group(run_dir)
    grouped = runner.invoke(app, ["eval", "--group", group, "--json", "--no-save"])
    assert grouped.exit_code == 0, grouped.output
    view = json.loads(grouped.stdout)["group"]
    assert view["name"] == group
    assert [r["label"] for r in view["rows"]] == [m.label for m in study.STUDY_MODELS]
    for mine, theirs in zip(view["rows"], extended["rows"], strict=True):
        assert mine["seeds"] == theirs["seeds"]
        assert mine["cells"]["total"]["mean"] == pytest.approx(theirs["cells"]["total"]["mean"])


def summary_group(run_dir: Path) -> str:
    from cxr_covid.reproduce import run_folder

    state = json.loads((run_dir / "state.json").read_text())
    return run_folder.group_name(run_folder.RunState(run_dir, state))


def _weights(home: Path, model_id: str) -> list[np.ndarray]:
    from cxr_covid.models import store

    model = store.StoredModel(home / "models" / model_id).load()
    return [np.asarray(w) for w in model.get_weights()]


def _models(run_dir: Path) -> dict[tuple[str, int], str]:
    summary = json.loads((run_dir / "results.json").read_text())["seeds"]
    return {
        (row["key"], seed): model
        for row in summary["rows"]
        for seed, model in zip(row["seeds"], row["models"], strict=True)
    }


def _per_seed(run_dir: Path) -> dict[tuple[str, int], list[tuple[int, int]]]:
    summary = json.loads((run_dir / "results.json").read_text())["seeds"]
    found = {}
    for row in summary["rows"]:
        for i, seed in enumerate(row["seeds"]):
            found[(row["key"], seed)] = [
                (cell["per_seed"][i]["successes"], cell["per_seed"][i]["n"])
                for cell in row["cells"].values()
            ]
    return found


def test_reproduce_seeds_resumes_at_the_seed_and_epoch_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An interrupted 2-seed run (Ctrl-C in the second seed's second model, after its first
    epoch), resumed, gives the per-seed results of an uninterrupted run (--deterministic)."""
    from cxr_covid.errors import EXIT_INTERRUPTED, CxrCovidError
    from cxr_covid.reproduce import run as reproduce
    from cxr_covid.reproduce import run_folder

    archive = kaggle_like_zip(tmp_path / "archive.zip", per_class=12)
    extra = ["--epochs", "2", "--seeds", "2", "--deterministic", "--no-estimate"]

    monkeypatch.setenv("CXR_COVID_HOME", str(tmp_path / "home-straight"))
    straight = _reproduce(archive, tmp_path / "straight", *extra)
    assert straight.exit_code == 0, straight.output

    monkeypatch.setenv("CXR_COVID_HOME", str(tmp_path / "home-resumed"))
    run_dir = tmp_path / "resumed"
    options = reproduce.ReproduceOptions(
        preset="quick",
        from_zip=archive,
        out=run_dir,
        image_size=16,
        epochs=2,
        batch_size=16,
        bootstrap=50,
        estimate=False,
        seeds=2,
        deterministic=True,
    )

    class Interrupt(NullReporter):
        def message(self, text: str) -> None:
            in_seed_43 = "-s43" in (current[-1] if current else "")
            if text.startswith("baseline-aug: epoch 1/") and in_seed_43:
                raise KeyboardInterrupt
            if text.startswith("train ") and " -> model " in text:
                current.append(text)

    current: list[str] = []
    with pytest.raises(CxrCovidError) as caught:
        reproduce.run(options, Interrupt())
    assert caught.value.exit_code == EXIT_INTERRUPTED
    state = json.loads((run_dir / "state.json").read_text())
    assert "train:baseline-aug@43" not in state["steps"]
    assert {"train:baseline-noaug", "train:baseline-aug", "train:inception-aug"} <= set(
        state["steps"]
    )
    assert "train:baseline-noaug@43" in state["steps"]

    resumed = _reproduce(archive, run_dir, *extra)
    assert resumed.exit_code == 0, resumed.output
    assert resumed.output.count(": done (model ") == 4
    assert "continuing interrupted run baseline-aug-" in resumed.output
    interrupted = run_folder.model_name(run_folder.RunState(run_dir, state), "baseline-aug", 43)
    record = json.loads(
        (tmp_path / "home-resumed" / "models" / interrupted / "model.json").read_text()
    )
    assert record["training"]["resumed"] == 1 and record["training"]["seed"] == 43

    assert _per_seed(run_dir) == _per_seed(tmp_path / "straight")
    # And beyond the counts: the resumed model's weights are those of the straight run.
    straight_models = _models(tmp_path / "straight")
    for (key, seed), model_id in _models(run_dir).items():
        mine = _weights(tmp_path / "home-resumed", model_id)
        theirs = _weights(tmp_path / "home-straight", straight_models[(key, seed)])
        assert all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True)), (key, seed)


# --- train --seeds and eval --group ---------------------------------------------------------


def test_train_seeds_then_eval_group(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    args = ["train", "--epochs", "1", "--image-size", "16", "--batch-size", "8"]
    first = runner.invoke(app, [*args, "--seeds", "2", "--seed", "7", "--name", "grp", "--json"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert_documented("train-seeds", data)
    assert data["group"] == "grp" and data["seeds"] == [7, 8]
    assert [m["model"] for m in data["models"]] == ["grp-s7", "grp-s8"]
    values = [m["best_val_accuracy"] for m in data["models"]]
    assert data["best_val_accuracy"]["mean"] == pytest.approx(np.mean(values))
    for model in data["models"]:
        record = json.loads((cxr_home / "models" / model["model"] / "model.json").read_text())
        assert record["training"]["group"] == "grp"
        assert record["training"]["seed"] == model["seed"]

    # Extending the group keeps the finished seeds.
    more = runner.invoke(app, [*args, "--seeds", "3", "--seed", "7", "--name", "grp"])
    assert more.exit_code == 0, more.output
    assert more.output.count("already trained") == 2
    assert "eval --group grp" in more.output
    assert "mean" in more.output

    grouped = runner.invoke(app, ["eval", "--group", "grp", "--bootstrap", "50"])
    assert grouped.exit_code == 0, grouped.output
    assert "Across 3 seeds" in grouped.output and "grp-s9" in grouped.output
    as_json = runner.invoke(app, ["eval", "--group", "grp", "--json", "--no-save"])
    assert_documented("eval", json.loads(as_json.stdout))
    view = json.loads(as_json.stdout)["group"]
    assert len(view["rows"]) == 1 and view["rows"][0]["seeds"] == [7, 8, 9]
    totals = [m["accuracy"]["value"] for m in json.loads(as_json.stdout)["models"]]
    assert view["rows"][0]["cells"]["total"]["mean"] == pytest.approx(np.mean(totals))

    # Mistakes get one line and a documented exit code.
    unknown = runner.invoke(app, ["eval", "--group", "nope"])
    assert unknown.exit_code == 6 and "known groups: grp" in unknown.output
    both = runner.invoke(app, ["eval", "grp-s7", "--group", "grp"])
    assert both.exit_code == 2
    resume = runner.invoke(app, [*args, "--seeds", "2", "--resume", "grp-s7"])
    assert resume.exit_code == 2
    clash = runner.invoke(
        app, [*args, "--seeds", "2", "--seed", "7", "--name", "grp", "--epochs", "2"]
    )
    assert clash.exit_code == 2 and "not seed 7 of this recipe" in clash.output
    # A recipe option is part of the recipe too: plain seeds never pass as balanced ones.
    recipe = runner.invoke(
        app, [*args, "--seeds", "2", "--seed", "7", "--name", "grp", "--balance-sources"]
    )
    assert recipe.exit_code == 2 and "differs in: balance_sources" in recipe.output


# --- the time estimate over every seed ------------------------------------------------------


def test_estimate_covers_every_seed_and_says_many_hours() -> None:
    from cxr_covid.reproduce import seeds as reproduce_seeds
    from cxr_covid.reproduce.estimate import format_estimate
    from cxr_covid.reproduce.results import TimeEstimate

    keys = [m.key for m in study.STUDY_MODELS]
    one_seed = TimeEstimate(
        {"baseline": 0.4, "inception": 1.5},
        dict.fromkeys(keys, 2000),
        {keys[0]: 1500.0, keys[1]: 2900.0, keys[2]: 9000.0},
        2,
    )
    todo = [(seed, spec) for seed in range(42, 47) for spec in study.STUDY_MODELS]
    five = reproduce_seeds.for_seeds(one_seed, todo)
    assert five.total_seconds == pytest.approx(5 * one_seed.total_seconds)
    assert "inception-aug x5" in format_estimate(five)
    told = _Messages()
    settings = {"study_protocol": True}
    reproduce_seeds.warn_if_long(five, settings, told)
    assert len(told.seen) == 1 and "many hours" in told.seen[0]
    short = reproduce_seeds.for_seeds(one_seed, todo[:1])
    assert short is one_seed  # one model to train: the estimate is the one it always was


class _Stop(Exception):
    pass


class _Messages(NullReporter):
    """Keeps the messages; raises _Stop at the first that `stop_at` accepts."""

    def __init__(self, stop_at: Callable[[str], bool] = lambda text: False) -> None:
        self.seen: list[str] = []
        self.stop_at = stop_at

    def message(self, text: str) -> None:
        self.seen.append(text)
        if self.stop_at(text):
            raise _Stop


def test_paper_preset_with_five_seeds_says_many_hours_before_anything_runs(
    tmp_path: Path,
) -> None:
    from cxr_covid.reproduce import run as reproduce

    archive = kaggle_like_zip(tmp_path / "archive.zip", per_class=2)
    # The plan comes first; the first download, skip or estimate message ends it.
    reporter = _Messages(lambda text: text.startswith(("download:", "dataset ", "estimate:")))
    options = reproduce.ReproduceOptions(from_zip=archive, out=tmp_path / "run", seeds=5)
    with pytest.raises(_Stop):
        reproduce.run(options, reporter)
    plan = " ".join(reporter.seen[:-1])
    assert "15 trainings" in plan and "many hours" in plan and "seeds 42-46" in plan


def test_train_group_interrupted_continues_at_the_seed_and_epoch(cxr_home: Path) -> None:
    from cxr_covid.training import run as training
    from cxr_covid.training import seeds as seed_training

    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    config = training.TrainConfig(
        epochs=2, image_size=16, batch_size=8, seed=3, name="g2", dataset="blobs"
    )
    seen: list[tuple[int, str, str]] = []

    def stop_in_second_seed(report: training.EpochReport) -> None:
        if report.run_id == "g2-s4" and report.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted):
        seed_training.train_group(config, 3, on_epoch=stop_in_second_seed)
    assert (cxr_home / "models" / "g2-s3").is_dir()
    assert not (cxr_home / "models" / "g2-s4").exists()

    result = seed_training.train_group(config, 3, on_model=lambda *told: seen.append(told))
    assert [action for _, _, action in seen] == ["reuse", "resume", "train"]
    assert [m.seed for m in result.models] == [3, 4, 5]
    record = json.loads((cxr_home / "models" / "g2-s4" / "model.json").read_text())
    assert record["training"]["resumed"] == 1 and len(record["history"]["loss"]) == 2
    assert record["training"]["group"] == "g2" and record["training"]["seed"] == 4


def test_recipe_differences_cover_every_training_option_but_naming_and_placement() -> None:
    from cxr_covid.training.run import TrainConfig
    from cxr_covid.training.seeds import recipe_differences

    plain = TrainConfig(dataset="d", epochs=3)
    stored = plain.to_dict()
    assert recipe_differences(stored, plain) == []
    # Naming, seed and where or how exactly it ran do not make another recipe ...
    assert recipe_differences(stored, replace(plain, seed=9, name="x", strategy="default")) == []
    # ... every option that changes what the model learns does.
    changed = replace(plain, balance_sources=True, augment_acquisition=True, input="lungs")
    assert recipe_differences(stored, changed) == [
        "balance_sources",
        "augment_acquisition",
        "input",
    ]
    # A record written before an option existed counts as that option's default.
    older = {k: v for k, v in stored.items() if k not in ("balance_sources", "input")}
    assert recipe_differences(older, plain) == []
    assert recipe_differences(older, changed) == [
        "balance_sources",
        "augment_acquisition",
        "input",
    ]


def test_an_interrupted_seed_of_another_recipe_is_not_resumed(cxr_home: Path) -> None:
    from cxr_covid.errors import UsageError
    from cxr_covid.training import run as training
    from cxr_covid.training import run_folder
    from cxr_covid.training.seeds import train_group

    build_dataset(cxr_home, "blobs", per_class=10, size=16)
    plain = training.TrainConfig(dataset="blobs", epochs=3, image_size=16, batch_size=8)
    plain = replace(plain, name="grp")

    def ctrl_c(_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted):
        train_group(plain, 1, on_epoch=ctrl_c)
    assert (run_folder.run_dir("grp-s42") / run_folder.STATE_FILE).is_file()
    with pytest.raises(UsageError, match="differs in: augment_acquisition"):
        train_group(replace(plain, augment_acquisition=True), 1)
    assert (run_folder.run_dir("grp-s42") / run_folder.STATE_FILE).is_file()  # left as it was


def test_the_recipe_options_are_every_training_option_but_naming_and_placement() -> None:
    from dataclasses import fields

    from cxr_covid.models.records import RECIPE_DEFAULTS
    from cxr_covid.training.run import TrainConfig

    placement = {"seed", "name", "group", "deterministic", "strategy", "precision", "calibrate"}
    defaults = {f.name: f.default for f in fields(TrainConfig) if f.name not in placement}
    assert defaults == RECIPE_DEFAULTS


def test_eval_group_keeps_recipes_that_differ_only_in_a_recipe_option_apart() -> None:
    from cxr_covid.evaluation.seed_groups import recipe_of
    from cxr_covid.models import store

    def record(**training: object) -> store.ModelRecord:
        return store.ModelRecord(
            id="m", architecture="baseline", classes=["covid", "normal"],
            preprocessing={"image_size": 16}, last_conv_layer="c",
            training={"arch": "baseline", "dataset": "d", "seed": 1, **training},
        )  # fmt: skip

    plain, balanced = recipe_of(record()), recipe_of(record(balance_sources=True))
    assert plain[0] != balanced[0]
    # A record written before the option existed is the plain recipe.
    assert recipe_of(record(balance_sources=False)) == plain
