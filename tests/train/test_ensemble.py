"""`cxr-covid models ensemble`: members averaged as one stored model that works everywhere.

Members are tiny untrained 24 px baselines built and stored directly (no training), except in
the one test that makes a real `train --seeds` group."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import cxr_covid
from cxr_covid import classes, models
from cxr_covid.cli import app
from cxr_covid.data.images import Preprocessing
from cxr_covid.data.manifest import manifest_hash
from cxr_covid.errors import ModelError, UsageError
from cxr_covid.inference.gradcam import GradCamExplainer, make_explainer
from cxr_covid.inference.scoring import Scorer
from cxr_covid.models import ensemble, store
from cxr_covid.training.ensemble import make_ensemble
from tests.helpers import blob_image, build_dataset
from tests.json_docs import assert_documented

runner = CliRunner()
SIZE = 24
CLASSES = list(classes.STUDY_CLASSES)


def member(
    model_id: str,
    seed: int,
    *,
    group: str | None = "g",
    size: int = SIZE,
    same_as: str | None = None,
    dataset: dict[str, object] | None = None,
    labels: list[str] | None = None,
    architecture: str = "baseline",
) -> store.StoredModel:
    """An untrained baseline stored as seed `seed` of `group` (weights copied from the model
    `same_as` when given)."""
    import keras

    keras.utils.set_random_seed(seed)
    network = models.build(architecture, size, len(labels or CLASSES))
    if same_as is not None:
        network.set_weights(store.resolve(same_as).load().get_weights())
    training: dict[str, object] = {"arch": architecture, "image_size": size, "seed": seed}
    if group is not None:
        training["group"] = group
    record = store.ModelRecord(
        id=model_id,
        architecture=architecture,
        classes=list(labels or CLASSES),
        preprocessing=Preprocessing(image_size=size).to_dict(),
        last_conv_layer=models.get(architecture).last_conv,
        dataset=dict(dataset or {}),
        training=training,
        metrics={"best_epoch": 1, "best_val_accuracy": 0.5},
    )
    return store.save(network, record)


def pixels(n: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    films = [blob_image(CLASSES[i % len(CLASSES)], SIZE, rng) for i in range(n)]
    return np.repeat(np.stack(films)[..., None], 3, axis=-1)


def blobs_dataset(home: Path) -> dict[str, object]:
    """A small blob dataset in the home; returns the dataset record members carry."""
    dataset = build_dataset(home, per_class=8, size=SIZE)
    return {"name": "blobs", "manifest_sha256": manifest_hash(dataset.rows())}


def test_two_identical_members_predict_exactly_as_one(cxr_home: Path) -> None:
    member("a", 1)
    member("b", 2, same_as="a")
    make_ensemble(member_ids=["a", "b"], name="aa", calibrate=False)
    x = pixels()
    one = cxr_covid.load_model("a").predict(list(x)).probabilities
    both = cxr_covid.load_model("aa").predict(list(x)).probabilities
    np.testing.assert_allclose(both, one, atol=1e-6)
    assert not np.allclose(one, 1 / len(CLASSES), atol=1e-3)  # a real output, not uniform


def test_two_different_members_predict_the_mean(cxr_home: Path) -> None:
    a, b = member("a", 1), member("b", 2)
    made = make_ensemble(member_ids=["a", "b"], name="ab", calibrate=False)
    assert made.model == "ab" and [m["id"] for m in made.members] == ["a", "b"]
    x = pixels()
    first, second = (Scorer(m.load(), m.record())(x).raw for m in (a, b))
    assert np.abs(first - second).max() > 1e-3  # two members that disagree
    stored = store.resolve("ab")
    network = stored.load()
    assert ensemble.is_ensemble(network) and len(ensemble.members(network)) == 2
    keras_out = np.asarray(network(x.astype(np.float32), training=False))
    np.testing.assert_allclose(keras_out, (first + second) / 2, atol=1e-6)
    # The scoring path (features -> log of the averaged probabilities -> softmax) agrees.
    scores = Scorer(network, stored.record())(x)
    np.testing.assert_allclose(scores.raw, (first + second) / 2, atol=1e-6)
    np.testing.assert_allclose(scores.probabilities, scores.raw, atol=1e-12)  # uncalibrated


def test_heatmap_is_the_mean_of_the_members_maps(cxr_home: Path, tmp_path: Path) -> None:
    a, b = member("a", 1), member("b", 2)
    make_ensemble(member_ids=["a", "b"], name="ab", calibrate=False)
    stored = store.resolve("ab")
    explainer = make_explainer(stored.load(), None, stored.record().last_conv_layer)
    assert explainer.layer == "last_conv"
    image = pixels(1, seed=5)[0]
    cam = explainer(image)
    singles = [GradCamExplainer(m.load(), "last_conv")(image, cam.class_index) for m in (a, b)]
    np.testing.assert_allclose(cam.cam, (singles[0].cam + singles[1].cam) / 2, atol=1e-5)
    np.testing.assert_allclose(
        cam.probabilities, (singles[0].probabilities + singles[1].probabilities) / 2, atol=1e-6
    )
    assert cam.features is not None and cam.features.shape == (1, 128)  # 64 per member
    # The command and the API draw it.
    film = tmp_path / "film.png"
    from PIL import Image

    Image.fromarray(image).save(film)
    result = runner.invoke(app, ["heatmap", str(film), "-m", "ab", "--out", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "h" / "film.heatmap.png").is_file()
    heat = cxr_covid.load_model("ab").gradcam(film)
    assert heat.shape == (SIZE, SIZE) and float(heat.max()) > 0


def test_a_group_becomes_a_calibrated_model_that_every_command_takes(
    cxr_home: Path, tmp_path: Path
) -> None:
    data = blobs_dataset(cxr_home)
    member("g-s1", 1, dataset=data)
    member("g-s2", 2, dataset=data)
    member("other-s1", 3, group="other", dataset=data)
    result = runner.invoke(app, ["models", "ensemble", "g", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert_documented("models-ensemble", report)
    assert report["model"] == "g-ensemble"
    assert [(m["id"], m["seed"]) for m in report["members"]] == [("g-s1", 1), ("g-s2", 2)]
    record = store.resolve("g-ensemble").record()
    assert record.architecture == "ensemble" and record.dataset["name"] == "blobs"
    assert "temperature" in record.calibration and record.ood["features"]["dims"] == 128
    assert "group" not in record.training  # `eval --group g` must not count it as a seed
    assert record.training["arch"] == "baseline" and record.training["image_size"] == SIZE

    listed = runner.invoke(app, ["models", "list", "--json"])
    rows = {m["id"]: m for m in json.loads(listed.stdout)["models"]}
    assert rows["g-ensemble"]["architecture"] == "ensemble (2 members)"
    shown = runner.invoke(app, ["models", "show", "g-ensemble"])
    assert "g-s1" in shown.stdout and "g-s2" in shown.stdout
    card = runner.invoke(app, ["models", "card", "g-ensemble", "--out", str(tmp_path / "c.md")])
    assert card.exit_code == 0, card.output
    text = (tmp_path / "c.md").read_text()
    assert "Ensemble" in text and "`g-s1`" in text and "`g-s2`" in text

    evaluated = runner.invoke(app, ["eval", "g-ensemble", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["models"][0]["model"] == "g-ensemble"
    beside = runner.invoke(app, ["eval", "g-s1", "g-ensemble", "--json"])  # McNemar between
    assert beside.exit_code == 0, beside.output
    assert json.loads(beside.stdout)["mcnemar"], beside.stdout
    recalibrated = runner.invoke(app, ["calibrate", "g-ensemble"])
    assert recalibrated.exit_code == 0, recalibrated.output

    images = sorted((cxr_home / "datasets" / "blobs" / "images").rglob("*.png"))[:4]
    headers = []
    for model_id in ("g-s1", "g-ensemble"):
        out = tmp_path / f"{model_id}.csv"
        done = runner.invoke(app, ["predict", *map(str, images), "-m", model_id, "-o", str(out)])
        assert done.exit_code == 0, done.output
        headers.append(next(csv.reader(io.StringIO(out.read_text()))))
    assert headers[0] == headers[1]
    # The calibrated, guarded ensemble explains itself: captions come from its scorer.
    maps = tmp_path / "maps"
    drawn = runner.invoke(app, ["heatmap", str(images[0]), "-m", "g-ensemble", "-o", str(maps)])
    assert drawn.exit_code == 0, drawn.output
    assert (tmp_path / "maps" / f"{images[0].stem}.heatmap.png").is_file()


def test_export_pack_and_import_keep_the_ensemble(cxr_home: Path, tmp_path: Path) -> None:
    from cxr_covid.sharing.export import TOLERANCE, export_model
    from cxr_covid.sharing.packs import import_model, pack_model

    member("a", 1)
    member("b", 2)
    make_ensemble(member_ids=["a", "b"], name="ab", calibrate=False)
    stored = store.resolve("ab")
    for fmt in ("savedmodel", "onnx"):  # one graph; each export checks itself against Keras
        exported = export_model(stored, fmt, tmp_path / fmt)
        assert exported.max_difference <= TOLERANCE
    packed = pack_model(stored, tmp_path / "ab.cxr-model.zip")
    imported = import_model(str(packed.path), sha256=packed.sha256, name="ab-copy")
    copy = imported.model
    assert [m["id"] for m in copy.record().members] == ["a", "b"]
    x = list(pixels())
    np.testing.assert_allclose(
        cxr_covid.load_model("ab-copy").predict(x).probabilities,
        cxr_covid.load_model("ab").predict(x).probabilities,
        atol=1e-7,
    )
    from_pack = cxr_covid.load_model(packed.path)  # the API opens a pack directly
    assert from_pack.record.architecture == "ensemble"


def test_the_record_round_trips_and_plain_records_are_unchanged(cxr_home: Path) -> None:
    member("a", 1)
    member("b", 2)
    make_ensemble(member_ids=["a", "b"], name="ab", calibrate=False)
    record = store.resolve("ab").record()
    data = json.loads(json.dumps(record.to_dict()))
    again = store.ModelRecord.from_dict(data)
    assert again.to_dict() == record.to_dict() and again.members == record.members
    assert [m["seed"] for m in record.members] == [1, 2]
    assert "members" not in store.resolve("a").record().to_dict()
    with pytest.raises(ModelError, match="members"):
        store.ModelRecord.from_dict({**data, "members": ["a", "b"]})


def one_line_error(argv: list[str], code: int, words: str) -> None:
    result = runner.invoke(app, argv)
    assert result.exit_code == code, result.output
    assert words in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 2


def test_members_that_cannot_be_averaged_are_refused(cxr_home: Path) -> None:
    member("a", 1)
    member("big", 2, size=32)
    member("two-class", 3, labels=CLASSES[:2])
    member("solo-s1", 4, group="solo")
    base = ["models", "ensemble"]
    one_line_error(
        [*base, "--member", "a", "--member", "big", "--name", "x"], 6, "preprocessing (image_size)"
    )
    one_line_error(
        [*base, "--member", "a", "--member", "two-class", "--name", "x"], 6, "differ in classes"
    )
    for key, value in (("normalize", "equalize"), ("input", "lungs"), ("resize", "bilinear")):
        other = member(f"other-{key}", 7)
        record = other.record()
        record.preprocessing[key] = value
        other.write_record(record)
        argv = [*base, "--member", "a", "--member", other.id, "--name", "x"]
        one_line_error(argv, 6, f"preprocessing ({key})")
    one_line_error([*base, "solo"], 2, "at least two members")
    one_line_error([*base, "nowhere"], 6, "no stored models in group 'nowhere'")
    # Calibration needs one recorded dataset, present in the home.
    one_line_error([*base, "--member", "a", "--member", "solo-s1", "--name", "y"], 3, "--no-cal")
    member("gone-s1", 5, group="gone", dataset={"name": "gone"})
    member("gone-s2", 6, group="gone", dataset={"name": "gone"})
    one_line_error([*base, "gone"], 3, "calibrated on it: pass --no-calibrate")
    one_line_error([*base, "--member", "a", "--member", "ghost", "--name", "x"], 6, "ghost")
    one_line_error([*base, "--member", "a", "--member", "a", "--name", "x"], 2, "more than once")
    one_line_error([*base, "--member", "a", "--member", "big"], 2, "--name is required")
    one_line_error([*base, "g", "--member", "a"], 2, "not both")
    one_line_error([*base, "--member", "a", "--member", "solo-s1", "--name", "a"], 6, "exists")
    assert not (cxr_home / "models" / "x").exists()
    make_ensemble(member_ids=["a", "solo-s1"], name="pair", calibrate=False)
    with pytest.raises(ModelError, match="itself an ensemble"):
        make_ensemble(member_ids=["pair", "a"], name="nested", calibrate=False)
    with pytest.raises(UsageError):
        make_ensemble(member_ids=["a"], name="alone", calibrate=False)


def test_source_probe_features_cover_every_member(cxr_home: Path) -> None:
    from cxr_covid.audit.source_probe import penultimate

    member("a", 1)
    member("b", 2)
    make_ensemble(member_ids=["a", "b"], name="ab", calibrate=False)
    features = penultimate(store.resolve("ab").load(), pixels(), batch_size=4)
    alone = penultimate(store.resolve("a").load(), pixels(), batch_size=4)
    assert features.shape == (6, 128)
    np.testing.assert_allclose(features[:, :64], alone, atol=1e-5)


def test_a_trained_seed_group_is_evaluated_as_one_model_on_its_dataset(cxr_home: Path) -> None:
    build_dataset(cxr_home, per_class=8, size=SIZE)
    train = ["train", "-d", "blobs", "--seeds", "2", "--epochs", "1", "--image-size", "16"]
    trained = runner.invoke(app, [*train, "--batch-size", "8", "--name", "grp"])
    assert trained.exit_code == 0, trained.output
    made = runner.invoke(app, ["models", "ensemble", "grp", "--name", "grp-mean"])
    assert made.exit_code == 0, made.output
    assert "grp-s42, grp-s43" in made.stdout
    evaluated = runner.invoke(app, ["eval", "grp-mean", "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    result = json.loads(evaluated.stdout)["models"][0]
    assert result["dataset"] == "blobs" and result["split"] == "test"
    group = runner.invoke(app, ["eval", "--group", "grp", "--json"])
    assert group.exit_code == 0, group.output
    assert "grp-mean" not in group.stdout  # the ensemble is no seed of its group


def test_audit_and_operating_point_take_an_ensemble(cxr_home: Path, tmp_path: Path) -> None:
    """The audit's every part (views, attention, source probe, lung-blind control retraining
    the members' shared recipe) and a saved operating point that predict then applies."""
    from cxr_covid.audit.results import AuditOptions
    from cxr_covid.audit.run import run_audit
    from tests.audit.test_audit import SIZE as FILM
    from tests.audit.test_audit import build

    build(cxr_home, "corners", shortcut=True, per_class=10)
    data = {"name": "corners"}
    for seed in (1, 2):
        member(f"c-s{seed}", seed, group="c", size=FILM, dataset=data)
    make_ensemble("c", name="c-mean", calibrate=False)
    result = run_audit(AuditOptions(model="c-mean", control_epochs=1, panels=1))
    assert result.control is not None and result.attention is not None
    assert result.attention.layer == "last_conv"
    chosen = runner.invoke(
        app,
        ["eval", "c-mean", "--operating-point", "covid:threshold=0.3", "--save-operating-point"],
    )
    assert chosen.exit_code == 0, chosen.output
    assert store.resolve("c-mean").record().operating_point["threshold"] == 0.3
    images = sorted((cxr_home / "datasets" / "corners" / "images").rglob("*.png"))[:3]
    out = tmp_path / "p.csv"
    done = runner.invoke(app, ["predict", *map(str, images), "-m", "c-mean", "-o", str(out)])
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 3
    assert all(r["decision_rule"] == "covid>=0.3" for r in rows), rows  # the saved point


def test_members_of_different_architectures_are_averaged_and_explained(cxr_home: Path) -> None:
    member("base", 1)
    member("incep", 2, architecture="inception-nb")
    make_ensemble(member_ids=["base", "incep"], name="mixed", calibrate=False)
    stored = store.resolve("mixed")
    record = stored.record()
    assert "arch" in record.training["ensemble"]["differing_options"]
    assert [m["architecture"] for m in record.members] == ["baseline", "inception-nb"]
    image = pixels(1, seed=2)[0]
    cam = make_explainer(stored.load(), None, record.last_conv_layer)(image)
    assert cam.cam.ndim == 2 and 0.0 <= float(cam.cam.min()) <= float(cam.cam.max()) <= 1.0
    x = pixels()
    mean = sum(Scorer(m.load(), m.record())(x).raw for m in map(store.resolve, ("base", "incep")))
    np.testing.assert_allclose(Scorer(stored.load(), record)(x).raw, mean / 2, atol=1e-6)
