"""`train --adversarial-source`: a second head that predicts each image's collection, trained
through a gradient-reversal layer so the shared features carry less of it (Ganin & Lempitsky
2015; for chest X-rays Janizek et al. 2020, Trivedi et al. 2022).

Within each class, so it removes source, not disease. Classes differ in collection in any
composite data set (here COVID-19 films are adults, viral pneumonia children), so a head
asked "which collection?" over all images would push the features to forget the disease as
well. The head here is one softmax per class over that class's own collections: its logits
are one block per (class, collection) pair of the classes that hold two or more recorded
collections, and an image's loss is the softmax cross-entropy over its own class's block
only (the other blocks are masked out), so the head never learns, and the reversal never
removes, anything that tells one class from another. Images of a class with a single
collection, or whose collection is not recorded (`unknown`), add nothing to the head's loss.

How it is trained without touching the data pipeline or the inference model:
- the targets travel in the ordinary int32 label as `class * (pairs + 1) + pair`, with
  `pair == pairs` meaning "no source target" (every validation image: val_loss stays the
  plain classification loss, comparable with any other model's);
- the training model wraps the inference model: it shares its layers and adds the reversal
  layer and the head on the classifier's input (`models.penultimate_features`), output
  `[class probabilities | source logits]`; the loss and the "accuracy" metric decode the
  label. Only the inference model is stored, so `predict`, `export`, Grad-CAM and the API
  never see the head.

The reversal layer passes features through unchanged and multiplies the gradient flowing
back by -weight; the head's own loss is unweighted, so the head learns at full rate while the
features are pushed, `weight` times as strongly, to make it fail. The head (a linear softmax)
reads the unit-normalised features, so the push cannot simply inflate the features' scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from cxr_covid import models
from cxr_covid.data.manifest import UNKNOWN
from cxr_covid.data.pipeline import CachedSplit
from cxr_covid.errors import NoSourceVariation

REVERSAL_LAYER = "source_reversal"
HEAD_LAYER = "source_head"
NORMALIZE_LAYER = "source_unit_features"
OUTPUT_LAYER = "class_and_source"
_MASKED = -1e9  # logit of a collection outside the image's class (exp underflows to 0)


@keras.saving.register_keras_serializable(package="cxr_covid")
class GradientReversal(keras.layers.Layer):  # type: ignore[misc]
    """Identity on the way forward; the gradient times -scale on the way back."""

    def __init__(self, scale: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, inputs: Any) -> Any:
        scale = self.scale

        @tf.custom_gradient  # type: ignore[untyped-decorator]
        def reverse(x: Any) -> Any:
            def grad(upstream: Any) -> Any:
                return -scale * upstream

            return tf.identity(x), grad

        return reverse(inputs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="cxr_covid")
class SourceAdversarialLoss(keras.losses.Loss):  # type: ignore[misc]
    """Class cross-entropy plus the within-class source cross-entropy (module docstring)."""

    def __init__(
        self,
        num_classes: int = 2,
        pair_classes: Sequence[int] = (),
        name: str = "source_adversarial_loss",
        **kwargs: Any,
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.pair_classes = [int(c) for c in pair_classes]
        # allowed[c, j]: pair j is a collection of class c.
        allowed = np.zeros((self.num_classes, max(1, len(self.pair_classes))), dtype=np.float32)
        for j, c in enumerate(self.pair_classes):
            allowed[c, j] = 1.0
        self._allowed = allowed

    def call(self, y_true: Any, y_pred: Any) -> Any:
        pairs = len(self.pair_classes)
        codes = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        label, pair = codes // (pairs + 1), codes % (pairs + 1)
        probs = y_pred[:, : self.num_classes]
        loss = keras.losses.sparse_categorical_crossentropy(label, probs)
        if not pairs:
            return loss
        allowed = ops.take(ops.convert_to_tensor(self._allowed), label, axis=0)
        logits = ops.where(allowed > 0, y_pred[:, self.num_classes :], _MASKED)
        has_target = pair < pairs
        source = keras.losses.sparse_categorical_crossentropy(
            ops.where(has_target, pair, 0), logits, from_logits=True
        )
        return loss + ops.where(has_target, source, ops.zeros_like(source))

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "pair_classes": self.pair_classes,
        }


@keras.saving.register_keras_serializable(package="cxr_covid")
class ClassAccuracy(keras.metrics.Mean):  # type: ignore[misc]
    """Accuracy of the class probabilities against the decoded class: logged as "accuracy"
    like any other run's, so history, best epoch and early stopping read it unchanged."""

    def __init__(
        self, num_classes: int = 2, code_width: int = 1, name: str = "accuracy", **kwargs: Any
    ) -> None:
        super().__init__(name=name, **kwargs)
        self.num_classes = int(num_classes)
        self.code_width = int(code_width)

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> Any:
        label = ops.cast(ops.reshape(y_true, (-1,)), "int32") // self.code_width
        guess = ops.cast(ops.argmax(y_pred[:, : self.num_classes], axis=-1), "int32")
        return super().update_state(ops.cast(label == guess, "float32"), sample_weight)

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "code_width": self.code_width,
        }


@dataclass(frozen=True)
class SourcePlan:
    """The head's targets: the (class, collection) pairs of the multi-collection classes."""

    classes: tuple[str, ...]
    pairs: tuple[tuple[str, str], ...]
    weight: float

    @property
    def code_width(self) -> int:
        return len(self.pairs) + 1

    def code(self, label: str, collection: str) -> int:
        pair = {p: j for j, p in enumerate(self.pairs)}.get((label, collection), len(self.pairs))
        return self.classes.index(label) * self.code_width + pair

    def encode_train(self, split: CachedSplit, rows: Sequence[Any]) -> CachedSplit:
        """The cached split with each label carrying its image's source target; `rows` are
        the split's manifest rows in the cache's order (pipeline.split_rows)."""
        if len(rows) != split.count:  # pragma: no cover - both come from split_rows
            raise ValueError("rows do not match the cached split")
        index = {p: j for j, p in enumerate(self.pairs)}
        pairs = np.array(
            [index.get((r.label, r.collection), len(self.pairs)) for r in rows], dtype=np.int32
        )
        return replace(split, labels=split.labels * self.code_width + pairs)

    def encode_val(self, split: CachedSplit) -> CachedSplit:
        """Validation labels with no source target: val_loss is the classification loss."""
        return replace(split, labels=split.labels * self.code_width + len(self.pairs))

    def wrap(self, inference: Any) -> Any:
        """The training model: `inference`'s layers (shared) plus the reversal and head."""
        features = models.penultimate_features(inference)
        reversed_ = GradientReversal(self.weight, name=REVERSAL_LAYER)(features)
        # The head reads the features' direction only. On raw ReLU features the cheapest way
        # to make the head fail is to blow their scale up, and training diverged (loss 8e3
        # after one epoch on cxr-mixed at 64 px); the gradient of a unit normalisation is
        # orthogonal to the features, so the reversal can change what they say, not their size.
        # float32 whatever the policy: under mixed_float16 (auto on a tensor-core GPU) the
        # norm of a zero or large feature vector overflows float16 and the head turns NaN.
        unit = keras.layers.UnitNormalization(name=NORMALIZE_LAYER, dtype="float32")(reversed_)
        logits = keras.layers.Dense(len(self.pairs), name=HEAD_LAYER, dtype="float32")(unit)
        joined = keras.layers.Concatenate(name=OUTPUT_LAYER, dtype="float32")(
            [inference.output, logits]
        )
        return keras.Model(inference.input, joined, name=f"{inference.name}_source_adversarial")

    def compile(self, model: Any, learning_rate: float) -> None:
        pair_classes = [self.classes.index(label) for label, _ in self.pairs]
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss=SourceAdversarialLoss(len(self.classes), pair_classes),
            metrics=[ClassAccuracy(len(self.classes), self.code_width)],
        )

    def to_record(self) -> dict[str, list[str]]:
        """{class: [collections]} the head told apart, for the model record."""
        table: dict[str, list[str]] = {}
        for label, collection in self.pairs:
            table.setdefault(label, []).append(collection)
        return table


def plan(
    classes: Sequence[str], train_rows: Sequence[Any], weight: float, dataset: str
) -> SourcePlan:
    """The head's pairs from the training rows; NoSourceVariation where there is nothing to
    remove (no collection recorded, or one collection per class)."""
    per_class: dict[str, set[str]] = {}
    for row in train_rows:
        if row.collection and row.collection != UNKNOWN:
            per_class.setdefault(row.label, set()).add(row.collection)
    if not per_class:
        raise NoSourceVariation(
            f"--adversarial-source: dataset {dataset!r} records no collections; download it "
            "with --sources FILE.csv (or from a release with its metadata workbooks)"
        )
    pairs = tuple(
        (label, collection)
        for label in classes
        if len(per_class.get(label, ())) > 1
        for collection in sorted(per_class[label])
    )
    if not pairs:
        raise NoSourceVariation(
            f"--adversarial-source: every class of dataset {dataset!r} comes from a single "
            "collection, so there is no source to remove within a class"
        )
    return SourcePlan(tuple(classes), pairs, float(weight))


__all__ = [
    "ClassAccuracy",
    "GradientReversal",
    "NoSourceVariation",
    "SourceAdversarialLoss",
    "SourcePlan",
    "plan",
]
