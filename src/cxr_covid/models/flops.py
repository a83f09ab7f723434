"""Network summaries: layers, output shapes, parameters and forward FLOPs per image.

FLOPs are counted analytically, a multiply-add as 2 FLOPs, for the layers that do the
arithmetic (convolutions and dense layers: over 99 % of these networks' work). Bias adds,
activations and pooling are counted as one FLOP per output element so nothing is hidden,
even though they are noise next to the convolutions. Training costs about 3x the forward
pass (forward, gradient with respect to the activations, gradient with respect to the
weights); `TRAIN_FLOPS_FACTOR` is that convention, used for achieved GFLOP/s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

TRAIN_FLOPS_FACTOR = 3


@dataclass(frozen=True)
class LayerSummary:
    name: str
    type: str
    output_shape: tuple[int | None, ...]
    params: int
    flops: int  # forward, per image
    config: dict[str, Any] = field(default_factory=dict)  # filters, kernel size, units...


@dataclass(frozen=True)
class ArchSummary:
    architecture: str
    image_size: int
    num_classes: int
    layers: list[LayerSummary]
    params: int
    trainable_params: int
    forward_gflops: float  # per image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _shape(tensor: Any) -> tuple[int | None, ...]:
    return tuple(None if d is None else int(d) for d in tensor.shape)


def layer_flops(layer: Any) -> int:
    """Forward FLOPs of one layer for one image (see the module docstring)."""
    kind = type(layer).__name__
    out = _shape(layer.output)[1:]
    out_elems = math.prod(d or 1 for d in out)
    if kind == "Conv2D":
        kh, kw = (int(k) for k in layer.kernel_size)
        cin = int(layer.input.shape[-1])
        macs = out_elems * kh * kw * cin
        return 2 * macs + (out_elems if bool(layer.use_bias) else 0) + out_elems
    if kind == "Dense":
        cin = int(layer.input.shape[-1])
        units = int(layer.units)
        return 2 * cin * units + units + units
    if kind == "MaxPooling2D":
        ph, pw = (int(p) for p in layer.pool_size)
        return out_elems * ph * pw
    if kind in ("Rescaling",):
        return out_elems
    return 0


def _config(layer: Any) -> dict[str, Any]:
    kind = type(layer).__name__
    if kind == "Conv2D":
        return {
            "filters": int(layer.filters),
            "kernel_size": list(layer.kernel_size),
            "padding": layer.padding,
            "activation": layer.activation.__name__,
        }
    if kind == "Dense":
        return {"units": int(layer.units), "activation": layer.activation.__name__}
    if kind == "MaxPooling2D":
        return {"pool_size": list(layer.pool_size)}
    if kind == "Dropout":
        return {"rate": float(layer.rate)}
    return {}


def summarize_model(model: Any, architecture: str, image_size: int) -> ArchSummary:
    layers = []
    for layer in model.layers:
        layers.append(
            LayerSummary(
                name=layer.name,
                type=type(layer).__name__,
                output_shape=_shape(layer.output),
                params=int(layer.count_params()),
                flops=layer_flops(layer),
                config=_config(layer),
            )
        )
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    return ArchSummary(
        architecture=architecture,
        image_size=image_size,
        num_classes=int(model.output.shape[-1]),
        layers=layers,
        params=int(model.count_params()),
        trainable_params=int(trainable),
        forward_gflops=sum(layer.flops for layer in layers) / 1e9,
    )


def summarize(arch: str, image_size: int, num_classes: int = 3) -> ArchSummary:
    """Build `arch` at `image_size` (untrained) and describe it."""
    from cxr_covid import models

    return summarize_model(models.build(arch, image_size, num_classes), arch, image_size)
