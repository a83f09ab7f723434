"""The architecture registry: a name -> builder map that the CLI and training read.

Adding an architecture means adding a module with a builder and one `register` call below;
no command changes. Importing this package does not import TensorFlow: builders import
Keras when called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cxr_covid.errors import UsageError

# Smallest input the study's networks accept: three 2x poolings need at least 8 px, and
# Grad-CAM needs a last feature map larger than one pixel.
MIN_IMAGE_SIZE = 16
# Every architecture names its softmax layer so; its input is the penultimate features (the
# dense block after dropout) that the source-adversarial head and the audit's probe read.
CLASSIFIER_LAYER = "probabilities"


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    build: Callable[[int, int], Any]  # (image_size, num_classes) -> keras.Model
    last_conv: str  # layer Grad-CAM explains


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> None:
    _REGISTRY[arch.name] = arch


def names() -> list[str]:
    return list(_REGISTRY)


def get(name: str) -> Architecture:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UsageError(
            f"unknown architecture {name!r} (choose from: {', '.join(_REGISTRY)})"
        ) from None


def build(name: str, image_size: int, num_classes: int) -> Any:
    """Build a fresh, randomly initialised model (Keras)."""
    if image_size < MIN_IMAGE_SIZE:
        raise UsageError(f"image size {image_size} is too small (minimum {MIN_IMAGE_SIZE})")
    return get(name).build(image_size, num_classes)


def penultimate_features(model: Any) -> Any:
    """The symbolic tensor the classifier reads (Keras): the features before the softmax."""
    return model.get_layer(CLASSIFIER_LAYER).input


def _register_builtins() -> None:
    from cxr_covid.models import baseline, inception

    register(
        Architecture(
            "baseline",
            "the study's baseline: 3x (conv 3x3 + max-pool), dense 64, dropout 0.3",
            baseline.build,
            baseline.LAST_CONV,
        )
    )
    register(
        Architecture(
            "inception",
            "the study's inception net (text/figure): 1x1/3x3/5x5 branches, conv 128, dense 64",
            inception.build,
            inception.LAST_CONV,
        )
    )
    register(
        Architecture(
            "inception-nb",
            "the study notebook's variant: three 1x1 branches, 7x7 last conv, dense 128",
            inception.build_notebook_variant,
            inception.LAST_CONV,
        )
    )


_register_builtins()
