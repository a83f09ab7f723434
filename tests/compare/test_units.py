"""compare's pieces on known numbers: recipes and their parsing, the seed-paired test, the
ensemble and its McNemar, and decisions that never read an external set's labels."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid import stats, study
from cxr_covid.cli import app
from cxr_covid.compare import judging
from cxr_covid.compare.recipes import RECIPE_FLAGS, RECIPES, parse_recipe, parse_recipes
from cxr_covid.errors import UsageError
from tests.json_docs import assert_documented

runner = CliRunner()
CLASSES = ["covid", "normal", "viral_pneumonia"]


def test_named_recipes_and_robust_is_the_presets() -> None:
    assert {"plain", "robust", "adversarial", "equalize", "clahe", "markers", "lungs"} <= set(
        RECIPES
    )
    assert RECIPES["robust"].options == study.PRESETS["robust"].recipe
    acquisition = {"balance_sources": True, "augment_acquisition": True}
    assert RECIPES["acquisition"].options == acquisition
    assert RECIPES["acquisition-markers"].options == {**acquisition, "augment_markers": True}
    # Round 5 (docs/shortcut-audit.md): the preset is acquisition plus markers.
    assert RECIPES["robust"].options == RECIPES["acquisition-markers"].options


def test_every_recipe_flag_is_its_field_with_hyphens() -> None:
    """`training.flags.options_to_flags` writes a recipe back as flags by that rule alone."""
    from cxr_covid.training.flags import options_to_flags

    for flag, (field_name, _kind, _choices) in RECIPE_FLAGS.items():
        assert flag == "--" + field_name.replace("_", "-")
    options = {"balance_sources": True, "normalize": "clahe", "adversarial_weight": 0.5}
    assert (
        options_to_flags(options) == "--balance-sources --normalize clahe --adversarial-weight 0.5"
    )
    for r in RECIPES.values():  # and each reads back into the same options
        assert r.name == "plain" or parse_recipe(f"x={r.flags()}").options == r.options


def test_recipe_flags_are_trains_own() -> None:
    """A custom recipe is written with `train`'s own flags and choices."""
    import typer.main

    from cxr_covid.cli.app import app as root

    train = typer.main.get_command(root).commands["train"]  # type: ignore[attr-defined]
    params = {opt: p for p in train.params for opt in getattr(p, "opts", [])}
    assert set(RECIPE_FLAGS) <= set(params)
    from typing import get_args

    from cxr_covid.cli import choices as cli_choices

    trains = {"--normalize": "Normalize", "--input": "InputView", "--arch": "Arch"}
    for flag, (_name, kind, choices) in RECIPE_FLAGS.items():
        if kind == "choice":
            assert set(choices) <= set(get_args(getattr(cli_choices, trains[flag]))), flag


def test_custom_recipe_parsing_and_refusal() -> None:
    mine = parse_recipe("mine=--normalize clahe --augment-markers --adversarial-weight=0.5")
    assert mine.name == "mine"
    assert mine.options == {
        "normalize": "clahe",
        "augment_markers": True,
        "adversarial_weight": 0.5,
    }
    for bad, words in [
        ("mine=--epochs 3", "unknown option '--epochs'"),
        ("mine=--normalize sharpen", "not one of"),
        ("mine=--normalize", "needs a value"),
        ("plain=--augment", "built-in"),
        ("Bad Name=--augment", "recipe name"),
        ("nosuch", "unknown recipe 'nosuch'"),
    ]:
        with pytest.raises(UsageError, match=words):
            parse_recipe(bad)
    with pytest.raises(UsageError, match="given twice"):
        parse_recipes(["plain", "plain"])


def test_compare_list_and_a_bad_recipe_on_the_command_line() -> None:
    listed = runner.invoke(app, ["compare", "--list"])
    assert listed.exit_code == 0, listed.output
    assert "acquisition-markers" in listed.output and "--balance-sources" in listed.output
    listed_json = runner.invoke(app, ["compare", "--list", "--json"])
    assert_documented("compare-list", json.loads(listed_json.stdout))
    names = [r["name"] for r in json.loads(listed_json.stdout)["recipes"]]
    assert names == list(RECIPES)
    bad = runner.invoke(app, ["compare", "--recipe", "mine=--frobnicate"])
    assert bad.exit_code == 2
    assert "unknown option '--frobnicate'" in bad.output
    assert len(bad.output.strip().splitlines()) == 1


def test_sign_flip_test_on_known_numbers() -> None:
    # 3 positive differences: only all-+ and all-- reach |mean| -> 2/8.
    assert stats.sign_flip_p([0.1, 0.2, 0.3]) == pytest.approx(0.25)
    # Sums over the 8 sign flips of (0.1, -0.05, 0.2): |0.35| twice, |0.25| twice (the
    # observed), |0.15| twice, |0.05| twice -> 4 of 8 at least as far from 0.
    assert stats.sign_flip_p([0.1, -0.05, 0.2]) == pytest.approx(4 / 8)
    assert stats.sign_flip_p([0.1] * 6) == pytest.approx(2 / 64)
    assert stats.sign_flip_p([]) == 1.0


def test_ensemble_is_the_mean_and_its_mcnemar_on_known_numbers() -> None:
    a = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1]])
    b = np.array([[0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    assert np.allclose(judging.ensemble_probabilities([a, b]), [[0.6, 0.35, 0.05], [0.2, 0.7, 0.1]])
    y = np.array([0, 0, 0, 0, 1, 1])
    # Recipe's ensemble right on images 0,1,2 (covid) ; plain's right on image 3 only.
    recipe = np.eye(3)[[0, 0, 0, 1, 1, 1]]
    plain = np.eye(3)[[1, 1, 1, 0, 1, 1]]
    ours, theirs = judging.judge(recipe, y, CLASSES), judging.judge(plain, y, CLASSES)
    assert ours.recall["covid"].successes == 3 and theirs.recall["covid"].successes == 1
    result = judging.against_plain("x", "set", "covid", ([ours], [theirs]), (ours, theirs), y == 0)
    assert (result.mcnemar.a_only, result.mcnemar.b_only) == (3, 1)
    assert result.mcnemar.p_exact == pytest.approx(stats.mcnemar_p(3, 1)[0])
    assert result.differences == pytest.approx((0.5,))
    assert result.seed_p == pytest.approx(1.0)  # one pair: both signs give the same |mean|


def test_auroc_only_where_covid_and_others_are_present() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.4, 0.6, 0.0], [0.2, 0.3, 0.5], [0.6, 0.2, 0.2]])
    assert judging.covid_auroc(probs, np.array([0, 0, 1, 2]), CLASSES) == pytest.approx(0.75)
    assert judging.covid_auroc(probs, np.array([0, 0, 0, 0]), CLASSES) is None
    assert judging.covid_auroc(probs, np.array([1, 1, 2, 2]), CLASSES) is None


def test_decisions_never_read_external_labels() -> None:
    """The decision rule sees probabilities only: relabelling an external set changes the
    figures, never which class each image is called."""
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=40)
    y = rng.integers(0, 3, size=40)
    first = judging.judge(probs, y, CLASSES)
    second = judging.judge(probs, rng.permutation(y), CLASSES)
    called = judging.decide(probs)
    assert np.array_equal(first.correct, called == y)
    assert not np.array_equal(first.correct, second.correct)  # the labels did change
    assert np.array_equal(judging.decide(probs), np.argmax(probs, axis=1))


def _verdict(right: dict[str, tuple[int, int]]) -> judging.Verdict:
    """A verdict with `right[class] = (correct, total)` images per class (argmax decisions)."""
    probabilities, truth = [], []
    for index, name in enumerate(CLASSES):
        correct, total = right.get(name, (0, 0))
        for i in range(total):
            called = index if i < correct else (index + 1) % len(CLASSES)
            probabilities.append(np.eye(len(CLASSES))[called] * 0.8 + 0.2 / len(CLASSES))
            truth.append(index)
    return judging.judge(np.array(probabilities), np.array(truth), CLASSES)


class _Result:
    def __init__(self, internal: list[int], kids: list[int], covid: list[int]) -> None:
        """Per seed: internal correct of 30 (10 a class), kids' normals correct of 10,
        outside COVID-19 correct of 10."""
        self.verdicts = {
            "internal test": [_verdict({c: (n // 3, 10) for c in CLASSES}) for n in internal],
            "kids": [_verdict({"normal": (n, 10)}) for n in kids],
            "site": [_verdict({"covid": (n, 10)}) for n in covid],
        }
        self.ensemble = {name: seeds[0] for name, seeds in self.verdicts.items()}


def test_ranking_rule_on_known_numbers() -> None:
    """External score = mean over (set, class) cells of the seed-mean recall; a recipe more
    than 3 points below plain inside its split is listed but never ranked first."""
    from cxr_covid.compare import ranking

    recipes = [
        ("plain", _Result(internal=[27, 27], kids=[5, 5], covid=[8, 8])),  # score 0.65
        ("better", _Result(internal=[27, 27], kids=[6, 8], covid=[9, 9])),  # 0.80, same inside
        ("dropped", _Result(internal=[27, 24], kids=[8, 8], covid=[10, 10])),  # 0.90, -5 pts
        ("broken", _Result(internal=[18, 18], kids=[10, 10], covid=[10, 10])),  # 1.00, -30 pts
    ]
    ranks = ranking.rank(recipes, "internal test", ["kids", "site"])
    assert [r.recipe for r in ranks] == ["better", "plain", "broken", "dropped"]
    best, plain, broken, dropped = ranks
    assert best.external_score == pytest.approx((0.7 + 0.9) / 2)
    assert best.worst == ("kids", "normal", pytest.approx(0.7))
    assert best.internal_drop == pytest.approx(0.0) and best.eligible and plain.eligible
    assert dropped.internal_drop == pytest.approx(0.05)  # 90 % against (90 + 80) / 2 %
    assert not dropped.eligible and not broken.eligible


def test_ranking_needs_external_sets_and_orders_eligible_first() -> None:
    from cxr_covid.compare import ranking

    recipes = [
        ("plain", _Result(internal=[27], kids=[5], covid=[8])),
        ("close", _Result(internal=[27], kids=[7], covid=[8])),
        ("far", _Result(internal=[21], kids=[10], covid=[10])),
    ]
    assert ranking.rank(recipes, "internal test", []) == []
    ranks = ranking.rank(recipes, "internal test", ["kids", "site"])
    assert [(r.recipe, r.eligible) for r in ranks] == [
        ("close", True),
        ("plain", True),
        ("far", False),
    ]
    assert ranks[0].to_dict()["worst_external"] == {"set": "kids", "class": "normal", "recall": 0.7}


def test_pooled_external_auroc_is_over_every_external_image() -> None:
    """A hospital's set of COVID-19 films alone has no AUROC; pooled with the other external
    sets it has one, per seed and for the ensemble, on the readable images only."""
    from pathlib import Path

    from cxr_covid.compare import run
    from cxr_covid.compare.report import SetInfo

    def a_set(name: str, y: list[int]) -> Any:
        paths = [Path(f"{name}-{i}.png") for i in range(len(y))]
        return run._Set(SetInfo(name, name, {}), paths, np.array(y))

    sets = [a_set("internal test", [0, 1]), a_set("site", [0, 0, 0]), a_set("kids", [1, 2])]
    readable = [np.array([True, True]), np.array([True, True, False]), np.array([True, True])]
    rng = np.random.default_rng(1)
    seeds = [[rng.dirichlet([1, 1, 1], len(s.paths)) for s in sets] for _ in range(2)]
    pooled = run._pooled_external(sets, readable, seeds, [0, 1], CLASSES)
    assert pooled is not None and pooled.images == 4
    positive = np.array([True, True, False, False])
    for member, auroc in zip(seeds, pooled.auroc_per_seed, strict=True):
        covid = np.concatenate([member[1][:2, 0], member[2][:, 0]])
        assert auroc == pytest.approx(stats.roc_auc(positive, covid))
    mean = [np.concatenate([m[1][:2], m[2]]) for m in seeds]
    expected = stats.roc_auc(positive, (mean[0][:, 0] + mean[1][:, 0]) / 2)
    assert pooled.auroc_ensemble == pytest.approx(expected)
    assert (
        run._pooled_external(sets[:1], readable[:1], [s[:1] for s in seeds], [0], CLASSES) is None
    )
