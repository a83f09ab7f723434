"""An ensemble as one Keras model: the members nested as sub-models, their probabilities averaged.

    image -> member_0 (a whole stored network) -\\
          -> member_1 ...                        -> Average ("ensemble_mean") -> probabilities
          -> member_N-1 ------------------------/

Saved as an ordinary `model.keras` (no Lambda layer: safe_mode loads it), so every path that
runs a model (eval, predict, export, packs, the API) runs an ensemble unchanged. Only what
looks *inside* a network needs the members: Grad-CAM (each member's last convolution), the
penultimate features (the OOD guard, the audit's source probe) and the softmax head
(calibration). Those ask this module, which answers with one element for a plain model:

    members(model)        -> [model] or the nested member networks
    feature_model(model)  -> Keras model: image -> penultimate features (concatenated over
                             the members of an ensemble)

Importing this module does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cxr_covid.errors import ModelError

ARCHITECTURE = "ensemble"  # record.architecture of an ensemble
MEMBER_PREFIX = "member_"  # nested sub-model names: member_0, member_1, ...
MEAN_LAYER = "ensemble_mean"  # the averaging layer, the graph's output
INPUT_LAYER = "image"


def member_name(index: int) -> str:
    return f"{MEMBER_PREFIX}{index}"


def is_ensemble(model: Any) -> bool:
    """True for a graph built by `build_graph` (its output layer is the named Average)."""
    import keras

    last = model.layers[-1] if getattr(model, "layers", None) else None
    return isinstance(last, keras.layers.Average) and last.name == MEAN_LAYER


def members(model: Any) -> list[Any]:
    """The networks whose outputs the model is made of: the nested members of an ensemble
    (in order), or `[model]` for a plain network."""
    if not is_ensemble(model):
        return [model]
    found = [layer for layer in model.layers if layer.name.startswith(MEMBER_PREFIX)]
    found.sort(key=lambda layer: int(layer.name[len(MEMBER_PREFIX) :]))
    if len(found) < 2:
        raise ModelError(f"ensemble {model.name!r} holds {len(found)} member network(s)")
    return found


def _renamed(network: Any, name: str) -> Any:
    """A copy of a functional network under another name, sharing no state with it: nested
    models need distinct names, and every stored network is called after its architecture."""
    import keras

    config = network.get_config()
    config["name"] = name
    copy = keras.Model.from_config(config)
    copy.set_weights(network.get_weights())
    return copy


def build_graph(networks: Sequence[Any], image_size: int) -> Any:
    """One Keras model averaging the probabilities of `networks` (each takes the same
    uint8-valued (S, S, 3) input and ends in a softmax over the same classes)."""
    import keras

    if len(networks) < 2:
        raise ModelError("an ensemble needs at least two member networks")
    inputs = keras.Input(shape=(image_size, image_size, 3), name=INPUT_LAYER)
    outputs = [_renamed(n, member_name(i))(inputs) for i, n in enumerate(networks)]
    mean = keras.layers.Average(name=MEAN_LAYER, dtype="float32")(outputs)
    return keras.Model(inputs, mean, name=ARCHITECTURE)


def penultimate_of(network: Any) -> Any:
    """The symbolic features a plain network's softmax layer reads (its last layer's input)."""
    return network.layers[-1].input


def feature_model(model: Any) -> Any:
    """image -> penultimate features, as one Keras model. For an ensemble the members'
    features are concatenated in member order (what the OOD guard is fitted on, and what
    `scoring.Head` splits again to compute each member's logits)."""
    import keras

    nets = members(model)
    if len(nets) == 1:
        return keras.Model(model.input, penultimate_of(model))
    inputs = keras.Input(shape=tuple(model.inputs[0].shape[1:]), name=INPUT_LAYER)
    parts = [keras.Model(n.input, penultimate_of(n))(inputs) for n in nets]
    joined = keras.layers.Concatenate(name="member_features")(parts)
    return keras.Model(inputs, joined)
