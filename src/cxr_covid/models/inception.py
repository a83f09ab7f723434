"""The study's inception-style CNN, and the variant its notebook actually ran.

Design of record (text and final_arch.png): three parallel convolutions of the input,
1x1 x 64, 3x3 x 32, 5x5 x 16 (same padding, relu), concatenated (112 channels) -> MaxPool ->
Conv2D(128, 3x3) -> MaxPool -> Flatten -> Dense(64, relu) -> Dropout(0.3) -> softmax.

Notebook variant (`inception-nb`): all three branches 1x1, a 7x7 last conv, Dense(128).
"""

from __future__ import annotations

from typing import Any

LAST_CONV = "last_conv"
CLASSIFIER_LAYER = "probabilities"  # models.CLASSIFIER_LAYER (read by the source head)


def _build(
    image_size: int,
    num_classes: int,
    *,
    branch_kernels: tuple[int, int, int],
    last_kernel: int,
    dense_units: int,
    name: str,
) -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    branches = [
        layers.Conv2D(filters, kernel, padding="same", activation="relu", name=f"branch_{i}")(x)
        for i, (filters, kernel) in enumerate(zip((64, 32, 16), branch_kernels, strict=True), 1)
    ]
    x = layers.Concatenate(name="concat")(branches)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(128, last_kernel, padding="same", activation="relu", name=LAST_CONV)(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(dense_units, activation="relu", name="fc")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", name=CLASSIFIER_LAYER, dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name=name)


def build(image_size: int, num_classes: int) -> Any:
    return _build(
        image_size,
        num_classes,
        branch_kernels=(1, 3, 5),
        last_kernel=3,
        dense_units=64,
        name="inception",
    )


def build_notebook_variant(image_size: int, num_classes: int) -> Any:
    return _build(
        image_size,
        num_classes,
        branch_kernels=(1, 1, 1),
        last_kernel=7,
        dense_units=128,
        name="inception_nb",
    )
