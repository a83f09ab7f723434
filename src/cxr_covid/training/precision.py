"""Which numeric precision a training run computes in, chosen from the hardware, never a timing.

    auto      mixed_float16 on a GPU with tensor cores (compute capability 7.0 or later);
              mixed_bfloat16 on a CPU with AMX-BF16 (`amx_bf16` in /proc/cpuinfo);
              float32 everywhere else. Not bfloat16 on AVX512-BF16 alone: measured slower
              than float32 there (docs/performance.md). With --deterministic: never bfloat16.
    float32   plain float32
    bfloat16  Keras' mixed_bfloat16: bfloat16 compute, float32 variables
    float16   Keras' mixed_float16: float16 compute, float32 variables, loss scaling
    mixed     the best mixed policy for the device: float16 on a GPU, bfloat16 on a CPU

Under both mixed policies the variables stay float32 and the softmax layer computes in float32
(the architectures pin its dtype). The stored model is always rebuilt in float32, so inference,
calibration and export never see the training precision.

This module imports no TensorFlow: the choice is a pure function of the request, the GPUs'
compute capabilities and the CPU flags, so tests inject both. `CXR_COVID_CPU_FLAGS` (flags
separated by spaces or commas) replaces /proc/cpuinfo's flags, for tests and for trying out
what `auto` would do on another CPU.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from cxr_covid.errors import UsageError

PRECISIONS: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16", "mixed")
FLAGS_ENV = "CXR_COVID_CPU_FLAGS"
CPUINFO = Path("/proc/cpuinfo")
# The CPU flags that say something about bfloat16 speed (shown by `info` and the benchmark).
BF16_FLAGS: tuple[str, ...] = ("amx_bf16", "amx_tile", "avx512_bf16")
TENSOR_CORES = (7, 0)  # float16 tensor cores (Volta and later)
BF16_GPU = (8, 0)  # bfloat16 tensor cores (Ampere and later)

FLOAT32, MIXED_BF16, MIXED_F16 = "float32", "mixed_bfloat16", "mixed_float16"


@dataclass(frozen=True)
class Choice:
    requested: str  # what was asked: one of PRECISIONS
    policy: str  # the Keras policy used: float32, mixed_bfloat16 or mixed_float16
    reason: str  # one line: why this policy
    note: str | None = None  # a warning worth showing (a policy that is likely slower here)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags: $CXR_COVID_CPU_FLAGS when set, else /proc/cpuinfo's first
    `flags` line (empty where there is none, e.g. on macOS)."""
    override = os.environ.get(FLAGS_ENV)
    if override is not None:
        return frozenset(override.replace(",", " ").split())
    try:
        with cpuinfo.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def bf16_flags(flags: Iterable[str]) -> list[str]:
    """The bfloat16-related flags among `flags`, in BF16_FLAGS' order."""
    present = set(flags)
    return [flag for flag in BF16_FLAGS if flag in present]


def check_request(precision: str, deterministic: bool) -> None:
    """Refuse an unknown precision, and bfloat16 with --deterministic, before anything runs."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r} (choose from: {', '.join(PRECISIONS)})")
    if deterministic and precision == "bfloat16":
        raise UsageError(
            "--deterministic needs --precision float32 (or auto): bfloat16 kernels (oneDNN/AMX, "
            "cuDNN) are not checked to give bit-identical reruns and resumes"
        )


def choose(
    requested: str,
    *,
    gpu_capabilities: list[tuple[int, int] | None],
    flags: Iterable[str],
    deterministic: bool = False,
) -> Choice:
    """The policy for `requested` on a machine with these GPUs (compute capability, None when
    unknown) and CPU flags. Training runs on the GPUs when there are any."""
    check_request(requested, deterministic)
    flag_set = frozenset(flags)
    amx = "amx_bf16" in flag_set
    if requested == "float32":
        return Choice(requested, FLOAT32, "asked for float32")
    if gpu_capabilities:
        return _choose_on_gpu(requested, gpu_capabilities, deterministic)
    if requested == "float16":
        return Choice(
            requested,
            MIXED_F16,
            "asked for float16",
            "float16 on a CPU has no fast kernels: expect it slower than float32",
        )
    if requested == "auto":
        if amx and deterministic:
            return Choice(
                requested,
                FLOAT32,
                "--deterministic: float32, whose reruns are bit-identical (bfloat16: not checked)",
            )
        if amx:
            return Choice(requested, MIXED_BF16, "no GPU; the CPU has AMX-BF16 (amx_bf16)")
        if "avx512_bf16" in flag_set:
            return Choice(
                requested,
                FLOAT32,
                "no GPU; the CPU has AVX512-BF16 but no AMX, where bfloat16 trains slower",
            )
        return Choice(requested, FLOAT32, "no GPU; the CPU has neither AMX-BF16 nor AVX512-BF16")
    # bfloat16, or mixed (the best mixed policy on a CPU is bfloat16)
    if deterministic:  # "mixed" resolving to bfloat16; "bfloat16" was refused above
        check_request("bfloat16", deterministic)
    how = "asked for bfloat16" if requested == "bfloat16" else "mixed on a CPU is bfloat16"
    if amx:
        return Choice(requested, MIXED_BF16, f"{how}; the CPU has AMX-BF16 (amx_bf16)")
    return Choice(
        requested,
        MIXED_BF16,
        f"{how}; the CPU has no AMX-BF16",
        "this CPU has no AMX-BF16: bfloat16 likely trains slower than float32 here",
    )


def _choose_on_gpu(
    requested: str, capabilities: list[tuple[int, int] | None], deterministic: bool
) -> Choice:
    known = [c for c in capabilities if c is not None]
    lowest = min(known) if known else None
    shown = f"{lowest[0]}.{lowest[1]}" if lowest else "unknown"
    tensor_cores = lowest is not None and lowest >= TENSOR_CORES
    if requested == "bfloat16":
        fast = lowest is not None and lowest >= BF16_GPU
        note = None if fast else f"GPU compute capability {shown} < 8.0: bfloat16 is not faster"
        return Choice(requested, MIXED_BF16, "asked for bfloat16", note)
    if requested in ("float16", "mixed"):
        note = None if tensor_cores else f"GPU compute capability {shown} < 7.0: no tensor cores"
        how = "asked for float16" if requested == "float16" else "mixed on a GPU is float16"
        return Choice(requested, MIXED_F16, how, note)
    # auto
    if tensor_cores:
        return Choice(requested, MIXED_F16, f"GPU with tensor cores (compute capability {shown})")
    return Choice(
        requested, FLOAT32, f"GPU without tensor cores (compute capability {shown} < 7.0)"
    )


def check_resume(started: str, choice: Choice) -> None:
    """A run continues in the policy it started with: refuse when this machine would use
    another (an `auto` or `mixed` run moved to a machine with other hardware, or an edited
    config). `started` is empty for a run folder written before precisions were recorded."""
    if started and started != choice.policy:
        raise UsageError(
            f"this run started in {started} but --precision {choice.requested} gives "
            f"{choice.policy} here ({choice.reason}); resume it on a machine like the one it "
            "started on, or train again"
        )


def set_policy(policy: str) -> None:
    import keras

    keras.mixed_precision.set_global_policy(policy)


@contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Keras' global policy set to `policy` for the block, then back to what it was."""
    import keras

    before = keras.mixed_precision.global_policy().name
    set_policy(policy)
    try:
        yield
    finally:
        set_policy(before)


def choose_here(requested: str = "auto", deterministic: bool = False) -> Choice:
    """The choice on this machine (imports TensorFlow to see the GPUs)."""
    return choose(
        requested,
        gpu_capabilities=gpu_capabilities(),
        flags=cpu_flags(),
        deterministic=deterministic,
    )


def gpu_capabilities() -> list[tuple[int, int] | None]:
    import tensorflow as tf

    found: list[tuple[int, int] | None] = []
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        found.append(tuple(capability) if capability else None)  # type: ignore[arg-type]
    return found


F = TypeVar("F", bound=Callable[..., Any])


def in_auto_precision(function: F) -> F:
    """Run `function` under the policy `auto` picks here (e.g. to time training steps in the
    precision training will use), restoring the previous policy afterwards."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with policy_scope(choose_here("auto").policy):
            return function(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
