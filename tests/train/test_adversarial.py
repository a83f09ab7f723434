"""`train --adversarial-source`: the gradient-reversal head against the collection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cxr_covid.cli import app
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.manifest import ManifestRow
from cxr_covid.errors import EXIT_DATA, EXIT_USAGE
from cxr_covid.training import run as training
from tests.helpers import build_dataset

runner = CliRunner()


def _with_collections(dataset: Dataset, collection_of: dict[str, list[str]]) -> None:
    """Give the manifest a collection column: class -> collections, cycled over its rows."""
    from dataclasses import replace

    rows = dataset.rows()
    seen: dict[str, int] = {}
    out = []
    for row in rows:
        choices = collection_of.get(row.label, [])
        i = seen.get(row.label, 0)
        seen[row.label] = i + 1
        out.append(replace(row, collection=choices[i % len(choices)]) if choices else row)
    dataset.write_rows(out)


def test_gradient_reversal_is_the_identity_forward_and_flips_the_gradient_times_the_weight() -> (
    None
):
    import tensorflow as tf

    from cxr_covid.training.adversarial import GradientReversal

    x = tf.constant([[1.0, -2.0, 3.0]])
    coefficients = tf.constant([[0.5, 2.0, -1.0]])
    for scale in (1.0, 0.25):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = GradientReversal(scale)(x)
            loss = tf.reduce_sum(y * coefficients)
        np.testing.assert_array_equal(y.numpy(), x.numpy())
        # d(sum(c * x))/dx = c; reversed and scaled: -scale * c.
        np.testing.assert_allclose(tape.gradient(loss, x).numpy(), -scale * coefficients.numpy())


def _row(label: str, collection: str) -> ManifestRow:
    return ManifestRow(
        f"{label}/{collection}.png", label, "0" * 64, 16, 16, split="train", collection=collection
    )


def test_the_source_loss_is_a_softmax_over_the_images_own_class_collections_only() -> None:
    from cxr_covid.training import adversarial

    classes = ["covid", "normal", "viral_pneumonia"]
    rows = [
        _row("covid", "kaggle-covid"),
        _row("normal", "kermany"),
        _row("normal", "rsna"),
        _row("viral_pneumonia", "kermany"),
        _row("viral_pneumonia", "other"),
    ]
    plan = adversarial.plan(classes, rows, 0.5, "d")
    assert plan.to_record() == {
        "normal": ["kermany", "rsna"],
        "viral_pneumonia": ["kermany", "other"],
    }
    pair_classes = [classes.index(label) for label, _ in plan.pairs]
    loss = adversarial.SourceAdversarialLoss(len(classes), pair_classes)
    probs = np.array([[0.2, 0.7, 0.1], [0.6, 0.3, 0.1]], dtype=np.float32)
    logits = np.array([[1.0, -1.0, 5.0, 2.0], [0.5, 0.5, 0.5, 0.5]], dtype=np.float32)
    # An adult normal (rsna), then a covid film (single collection: no source target).
    codes = np.array([plan.code("normal", "rsna"), plan.code("covid", "kaggle-covid")])
    per_image = np.asarray(loss.call(codes, np.concatenate([probs, logits], axis=1)))
    # The normal's block is logits 0..1 only: the pneumonia block (5.0, 2.0) does not count.
    within = -np.log(np.exp(-1.0) / (np.exp(1.0) + np.exp(-1.0)))
    np.testing.assert_allclose(per_image[0], -np.log(0.7) + within, rtol=1e-5)
    np.testing.assert_allclose(per_image[1], -np.log(0.6), rtol=1e-5)


def test_no_collections_or_one_per_class_is_refused() -> None:
    from cxr_covid.training import adversarial

    classes = ["covid", "normal"]
    with pytest.raises(adversarial.NoSourceVariation, match="records no collections"):
        adversarial.plan(classes, [_row("covid", "unknown"), _row("normal", "unknown")], 1, "d")
    with pytest.raises(adversarial.NoSourceVariation, match="single collection"):
        adversarial.plan(classes, [_row("covid", "a"), _row("normal", "b")], 1, "d")
    assert adversarial.NoSourceVariation("x").exit_code == EXIT_DATA


def _train(*extra: str) -> object:
    argv = ["train", "-d", "blobs", "-e", "1", "-b", "8", "--image-size", "16", "--json"]
    return runner.invoke(app, [*argv, *extra])


def test_the_cli_refuses_a_dataset_without_collections_in_one_line(cxr_home: Path) -> None:
    build_dataset(cxr_home, "blobs", per_class=5, size=16)
    result = _train("--adversarial-source")
    assert result.exit_code == EXIT_DATA, result.output
    assert "records no collections" in result.stderr and "Traceback" not in result.output
    assert training.list_runs() == []
    bad = _train("--adversarial-source", "--adversarial-weight", "0")
    assert bad.exit_code == EXIT_USAGE and "--adversarial-weight" in bad.stderr


def test_adversarial_training_stores_a_plain_model_and_records_the_head(
    cxr_home: Path,
) -> None:
    import keras

    from cxr_covid import models
    from cxr_covid.models import store
    from cxr_covid.training import adversarial

    dataset = build_dataset(cxr_home, "blobs", per_class=8, size=16)
    _with_collections(dataset, {"normal": ["kermany", "rsna"], "covid": ["kaggle-covid"]})
    result = _train("--adversarial-source", "--adversarial-weight", "0.5", "--name", "adv")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)["record"]
    assert record["training"]["adversarial_source"] is True
    assert record["training"]["adversarial_weight"] == 0.5
    assert record["training"]["adversarial_collections"] == {"normal": ["kermany", "rsna"]}

    stored = store.resolve("adv").load()
    names = {layer.name for layer in stored.layers}
    assert not names & {
        adversarial.HEAD_LAYER,
        adversarial.REVERSAL_LAYER,
        adversarial.NORMALIZE_LAYER,
        adversarial.OUTPUT_LAYER,
    }
    plain = models.build("baseline", 16, 3)
    assert [w.shape for w in plain.get_weights()] == [w.shape for w in stored.get_weights()]
    plain.set_weights(stored.get_weights())
    pixels = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_array_equal(
        plain.predict(pixels, verbose=0), stored.predict(pixels, verbose=0)
    )
    # The stored file loads without the head's classes: a fresh Keras knows nothing of them.
    assert isinstance(stored, keras.Model) and stored.output_shape == (None, 3)


def test_an_interrupted_adversarial_run_resumes_with_its_head(cxr_home: Path) -> None:
    import keras

    from cxr_covid.training import adversarial

    dataset = build_dataset(cxr_home, "blobs", per_class=6, size=16)
    _with_collections(dataset, {"normal": ["kermany", "rsna"]})
    config = training.TrainConfig(
        dataset="blobs", epochs=2, batch_size=4, image_size=16, name="cut", adversarial_source=True
    )

    def stop(report: training.EpochReport) -> None:
        if report.epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(training.TrainingInterrupted):
        training.train(config, on_epoch=stop)
    checkpoint = keras.saving.load_model(cxr_home / "runs" / "cut" / training.CHECKPOINT_FILE)
    assert adversarial.HEAD_LAYER in {layer.name for layer in checkpoint.layers}
    result = training.resume("cut")
    assert result.record.training["epochs_run"] == 2
    assert result.record.training["resumed"] == 1
    assert adversarial.HEAD_LAYER not in {layer.name for layer in result.model.load().layers}


def test_seeds_train_each_member_with_the_head(cxr_home: Path) -> None:
    dataset = build_dataset(cxr_home, "blobs", per_class=6, size=16)
    _with_collections(dataset, {"normal": ["kermany", "rsna"]})
    result = _train("--adversarial-source", "--seeds", "2", "--name", "grp")
    assert result.exit_code == 0, result.output
    from cxr_covid.models import store

    for member in ("grp-s42", "grp-s43"):
        training_record = store.resolve(member).record().training
        assert training_record["adversarial_source"] is True
        assert training_record["adversarial_collections"] == {"normal": ["kermany", "rsna"]}


@pytest.mark.parametrize("arch", ["baseline", "inception", "inception-nb"])
def test_every_architecture_exposes_the_features_the_head_reads(arch: str) -> None:
    from cxr_covid import models
    from cxr_covid.training import adversarial

    rows = [_row("normal", "kermany"), _row("normal", "rsna"), _row("covid", "x")]
    plan = adversarial.plan(["covid", "normal"], rows, 1.0, "d")
    inference = models.build(arch, 16, 2)
    wrapped = plan.wrap(inference)
    assert wrapped.output_shape == (None, 2 + 2)
    # The wrapper shares the inference model's layers: one set of weights, plus the head's.
    assert len(wrapped.get_weights()) == len(inference.get_weights()) + 2


def test_the_head_stays_finite_under_mixed_float16() -> None:
    """`auto` picks mixed_float16 on a tensor-core GPU: the head's unit normalisation must
    not overflow float16 (a zero or large feature vector gave NaN source logits)."""
    import keras

    from cxr_covid import models
    from cxr_covid.training import adversarial

    rows = [_row("normal", "kermany"), _row("normal", "rsna"), _row("covid", "kaggle-covid")]
    plan = adversarial.plan(["covid", "normal", "viral_pneumonia"], rows, 0.3, "d")
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        wrapped = plan.wrap(models.build("baseline", 16, 3))
        head = keras.Model(
            wrapped.get_layer(adversarial.REVERSAL_LAYER).input, wrapped.output[:, 3:]
        )
        width = int(head.input.shape[-1])
        features = np.stack([np.zeros(width), np.full(width, 40.0)]).astype(np.float32)
        assert np.isfinite(np.asarray(head(features))).all()
    finally:
        keras.mixed_precision.set_global_policy(previous)
