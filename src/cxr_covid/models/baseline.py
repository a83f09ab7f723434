"""The study's baseline CNN (baseline.png):

Conv2D(32) -> MaxPool -> Conv2D(64) -> MaxPool -> Conv2D(128) -> MaxPool -> Flatten ->
Dense(64, relu) -> Dropout(0.3) -> Dense(classes, softmax); 3x3 kernels, same padding, relu.
"""

from __future__ import annotations

from typing import Any

LAST_CONV = "last_conv"
CLASSIFIER_LAYER = "probabilities"  # models.CLASSIFIER_LAYER (read by the source head)


def build(image_size: int, num_classes: int) -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(shape=(image_size, image_size, 3), name="image")
    # Inputs are uint8-valued pixels; scaling lives in the model so that every caller
    # (train, eval, predict, heatmap) feeds the same thing.
    x = layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    x = layers.Conv2D(32, 3, padding="same", activation="relu", name="conv1")(x)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.Conv2D(64, 3, padding="same", activation="relu", name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.Conv2D(128, 3, padding="same", activation="relu", name=LAST_CONV)(x)
    x = layers.MaxPooling2D(2, name="pool3")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(64, activation="relu", name="fc")(x)
    x = layers.Dropout(0.3, name="dropout")(x)
    outputs = layers.Dense(
        num_classes, activation="softmax", name=CLASSIFIER_LAYER, dtype="float32"
    )(x)
    return keras.Model(inputs, outputs, name="baseline")
