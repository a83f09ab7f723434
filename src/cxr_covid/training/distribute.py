"""Which tf.distribute strategy and precision a training run uses, and on what device.

    auto          several GPUs -> MirroredStrategy; TF_CONFIG naming several workers ->
                  MultiWorkerMirroredStrategy; otherwise the default (one device)
    one-device    the first GPU, else the CPU
    mirrored      MirroredStrategy over this machine's GPUs (one CPU replica without GPUs)
    multi-worker  MultiWorkerMirroredStrategy; the cluster comes from TF_CONFIG

`--batch-size` is the global batch: each of R replicas computes batch/R images per step.
Only the chief (task 0, or the `chief` task) writes checkpoints and the stored model.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass
from typing import Any

from cxr_covid.errors import UsageError
from cxr_covid.training import precision as precisions
from cxr_covid.training.precision import PRECISIONS as PRECISIONS  # re-exported

STRATEGIES: tuple[str, ...] = ("auto", "one-device", "mirrored", "multi-worker")


@dataclass
class Placement:
    strategy: Any  # tf.distribute.Strategy
    name: str  # the strategy actually used
    replicas: int
    workers: int
    worker_index: int
    is_chief: bool
    device: str  # human-readable description for the record
    precision: str  # the Keras policy actually used (float32, mixed_bfloat16, mixed_float16)
    notes: list[str]
    precision_reason: str = ""  # why that policy (training/precision.py)


def _tf_config() -> dict[str, Any]:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise UsageError(f"TF_CONFIG is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UsageError("TF_CONFIG must be a JSON object with 'cluster' and 'task'")
    return data


def _cluster_workers(config: dict[str, Any]) -> int:
    cluster = config.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def _task(config: dict[str, Any]) -> tuple[int, bool]:
    task = config.get("task", {})
    kind, index = task.get("type", "worker"), int(task.get("index", 0))
    has_chief = bool(config.get("cluster", {}).get("chief"))
    if kind == "chief":
        return 0, True
    return index + (1 if has_chief else 0), (not has_chief and index == 0)


def cpu_description() -> str:
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"CPU {name} ({os.cpu_count()} cores)"


def gpu_descriptions() -> list[str]:
    import tensorflow as tf

    names = []
    for gpu in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(gpu)
        names.append(str(details.get("device_name", gpu.name)))
    return names


LEGACY_RUN = "legacy"  # `started_with` of a run folder older than recorded precisions


def place(
    strategy: str = "auto",
    precision: str = "auto",
    *,
    deterministic: bool = False,
    started_with: str = "",
) -> Placement:
    """Create the strategy and set Keras' precision policy (call before building a model).

    `started_with`: the policy a resumed run's epochs used so far (refused if it differs);
    LEGACY_RUN for a run folder with epochs but no recorded policy."""
    import tensorflow as tf

    if strategy not in STRATEGIES:
        raise UsageError(f"unknown strategy {strategy!r} (choose from: {', '.join(STRATEGIES)})")
    precisions.check_request(precision, deterministic)
    config = _tf_config()
    gpus = gpu_descriptions()
    notes: list[str] = []
    workers, worker_index, is_chief = 1, 0, True
    chosen = strategy
    if strategy == "auto":
        if _cluster_workers(config) > 1:
            chosen = "multi-worker"
        elif len(gpus) > 1:
            chosen = "mirrored"
        else:
            chosen = "default"
    if chosen == "multi-worker":
        if _cluster_workers(config) < 1 or "task" not in config:
            raise UsageError(
                "--strategy multi-worker needs TF_CONFIG describing the cluster and this task "
                "(see docs/commands/train.md)"
            )
        strat: Any = tf.distribute.MultiWorkerMirroredStrategy()
        patch_keras_for_multi_worker()
        workers = _cluster_workers(config)
        worker_index, is_chief = _task(config)
    elif chosen == "mirrored":
        strat = tf.distribute.MirroredStrategy()
    elif chosen == "one-device":
        strat = tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
    else:
        strat = tf.distribute.get_strategy()

    if started_with == LEGACY_RUN:
        # A run folder from before precisions were recorded: `mixed` meant float16 on a GPU
        # and float32 on a CPU then, and the run goes on as it started (never bfloat16 halfway).
        if precision == "mixed":
            precision = "float16" if gpus else "float32"
        started_with = ""
    choice = precisions.choose(
        precision,
        gpu_capabilities=precisions.gpu_capabilities(),
        flags=precisions.cpu_flags(),
        deterministic=deterministic,
    )
    precisions.check_resume(started_with, choice)
    if choice.note:
        notes.append(f"--precision {precision}: {choice.note}")
    precisions.set_policy(choice.policy)

    device = ", ".join(f"GPU {g}" for g in gpus) if gpus else cpu_description()
    if workers > 1:
        device = f"{workers} workers x ({device})"
    return Placement(
        strategy=strat,
        name=chosen,
        replicas=int(strat.num_replicas_in_sync),
        workers=workers,
        worker_index=worker_index,
        is_chief=is_chief,
        device=device,
        precision=choice.policy,
        notes=notes,
        precision_reason=choice.reason,
    )


def patch_keras_for_multi_worker() -> None:
    """Work around Keras 3's per-step metric reduction under MultiWorkerMirroredStrategy.

    Keras reduces each step's logs with `strategy.reduce("MEAN", value, axis=0)`, and the
    logs (loss, accuracy) are scalars, so collective all-reduce fails with "Invalid
    reduction dimension 0 for input with 0 dimensions". Scalars are averaged over the
    replicas instead (axis=None); everything else keeps Keras' own path. Idempotent.
    """
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    original = tf_trainer.reduce_per_replica
    if getattr(original, "_cxr_covid_patch", False):
        return

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):

            def mean(value: Any) -> Any:
                local = getattr(value, "values", (value,))[0]
                scalar = local.shape.rank == 0
                return strategy.reduce("MEAN", value, axis=None if scalar else 0)

            return tree.map_structure(mean, values)
        return original(values, strategy, reduction)

    reduce_per_replica._cxr_covid_patch = True  # type: ignore[attr-defined]
    tf_trainer.reduce_per_replica = reduce_per_replica


def reset_precision() -> None:
    import keras

    keras.mixed_precision.set_global_policy("float32")
