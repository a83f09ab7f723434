"""The random state a training checkpoint must carry for a resume to be bit-identical.

A `.keras` file keeps the weights and the optimizer's slots, but not the state of the
layers' random seed generators (Keras rebuilds each `SeedGenerator` from its config, with a
fresh seed and a zero counter). Dropout draws its masks from that state, so a resumed run
would drop other units than the uninterrupted run and drift apart from the first step on.
Here that state is written beside the checkpoint and put back after loading it. The image
order needs nothing: `cxr_covid.data.pipeline.epoch_order` is a function of (seed, epoch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from cxr_covid.errors import ModelError


def _seed_generators(model: Any) -> dict[str, Any]:
    """Every layer's seed generators, keyed by a name stable across save and load."""
    found: dict[str, Any] = {}
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for i, generator in enumerate(getattr(layer, "_seed_generators", [])):
            found[f"{layer.name}:{i}"] = generator
    return found


def save_rng_state(model: Any, target: Path) -> None:
    """Write the model's seed-generator states to `target` (an .npz file)."""
    states = {key: np.asarray(g.state.numpy()) for key, g in _seed_generators(model).items()}
    with target.open("wb") as handle:
        np.savez(handle, **states)  # type: ignore[arg-type]  # numpy's stub types **kwds badly


def restore_rng_state(model: Any, source: Path) -> None:
    """Put back the states `save_rng_state` wrote; the layers must match exactly."""
    generators = _seed_generators(model)
    try:
        with np.load(source, allow_pickle=False) as stored:
            states = {key: stored[key] for key in stored.files}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{source}: unreadable random state ({exc})") from exc
    if set(states) != set(generators):
        raise ModelError(
            f"{source}: random state does not match the checkpoint's layers "
            f"({sorted(states)} vs {sorted(generators)})"
        )
    for key, generator in generators.items():
        generator.state.assign(states[key].astype(generator.state.dtype))
