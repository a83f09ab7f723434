"""The study's networks, layer for layer, at 224 px (no training: building is quick)."""

from __future__ import annotations

import pytest

from cxr_covid import models
from cxr_covid.errors import UsageError
from cxr_covid.training.run import summarize


def _conv_params(k: int, cin: int, cout: int) -> int:
    return k * k * cin * cout + cout


def _dense_params(cin: int, cout: int) -> int:
    return cin * cout + cout


def _layers(arch: str) -> list[tuple[str, str, dict[str, object]]]:
    return [(layer.name, layer.type, layer.config) for layer in summarize(arch, 224).layers]


def test_baseline_layers_and_parameters_at_224() -> None:
    summary = summarize("baseline", 224)
    convs = [layer for layer in summary.layers if layer.type == "Conv2D"]
    assert [(c.config["filters"], c.config["kernel_size"]) for c in convs] == [
        (32, [3, 3]),
        (64, [3, 3]),
        (128, [3, 3]),
    ]
    assert all(c.config["padding"] == "same" and c.config["activation"] == "relu" for c in convs)
    types = [layer.type for layer in summary.layers]
    assert types == [
        "InputLayer",
        "Rescaling",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dropout",
        "Dense",
    ]
    dense = [layer for layer in summary.layers if layer.type == "Dense"]
    assert [d.config["units"] for d in dense] == [64, 3]
    assert dense[-1].config["activation"] == "softmax"
    dropout = next(layer for layer in summary.layers if layer.type == "Dropout")
    assert dropout.config["rate"] == pytest.approx(0.3)
    expected = (
        _conv_params(3, 3, 32)
        + _conv_params(3, 32, 64)
        + _conv_params(3, 64, 128)
        + _dense_params(28 * 28 * 128, 64)
        + _dense_params(64, 3)
    )
    assert summary.params == expected == 6_516_035
    assert convs[-1].name == models.get("baseline").last_conv == "last_conv"
    # 3 poolings of 224 -> 28
    assert next(lay for lay in summary.layers if lay.name == "pool3").output_shape[1:] == (
        28,
        28,
        128,
    )
    # Forward cost is dominated by conv2 and last_conv: about 1 GFLOP per image.
    assert 0.95 < summary.forward_gflops < 1.1


def test_inception_layers_and_parameters_at_224() -> None:
    summary = summarize("inception", 224)
    convs = {layer.name: layer for layer in summary.layers if layer.type == "Conv2D"}
    branches = [convs[f"branch_{i}"] for i in (1, 2, 3)]
    assert [(b.config["filters"], b.config["kernel_size"]) for b in branches] == [
        (64, [1, 1]),
        (32, [3, 3]),
        (16, [5, 5]),
    ]
    concat = next(layer for layer in summary.layers if layer.type == "Concatenate")
    assert concat.output_shape[-1] == 112
    assert convs["last_conv"].config["filters"] == 128
    assert convs["last_conv"].config["kernel_size"] == [3, 3]
    dense = [layer for layer in summary.layers if layer.type == "Dense"]
    assert [d.config["units"] for d in dense] == [64, 3]
    expected = (
        _conv_params(1, 3, 64)
        + _conv_params(3, 3, 32)
        + _conv_params(5, 3, 16)
        + _conv_params(3, 112, 128)
        + _dense_params(56 * 56 * 128, 64)
        + _dense_params(64, 3)
    )
    assert summary.params == expected


def test_notebook_variant_differs_as_documented() -> None:
    summary = summarize("inception-nb", 64)
    convs = {layer.name: layer for layer in summary.layers if layer.type == "Conv2D"}
    assert [convs[f"branch_{i}"].config["kernel_size"] for i in (1, 2, 3)] == [[1, 1]] * 3
    assert convs["last_conv"].config["kernel_size"] == [7, 7]
    assert next(lay.config["units"] for lay in summary.layers if lay.type == "Dense") == 128


def test_flops_scale_with_image_area() -> None:
    small, large = summarize("baseline", 64), summarize("baseline", 128)
    # Convolutions dominate and scale with pixel count (4x); dense layers do not quite.
    assert 3.8 < large.forward_gflops / small.forward_gflops < 4.05


def test_unknown_architecture_and_tiny_size_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="unknown architecture"):
        summarize("resnet", 64)
    with pytest.raises(UsageError, match="too small"):
        summarize("baseline", 8)
