"""Training benchmark: pipeline vs in-memory throughput, memory vs data-set size, GFLOP/s.

    PYTHONPATH=src python benchmarks/bench_train.py            # defaults below, a few minutes
    PYTHONPATH=src python benchmarks/bench_train.py --write    # also update docs/performance.md

Measured side by side in one run (ratios are what count on a shared machine):

(a) images/s of `cxr_covid.training.run.train` fed from disk by the project's pipeline (uint8
    cache, pread, tf.data prefetch) vs the same model and recipe fed from in-memory float32
    tensors (`model.fit(x, y)`, the study's way). Both time only the training phase of each
    epoch after the first (which includes graph tracing), interleaved over `--rounds`
    rounds; the median is reported. Goal: ratio >= 0.95.
(b) peak resident memory (VmHWM) of a whole `train` run (cache build + epochs) on
    `--rss-small` vs `--rss-large` generated images, each run in a fresh subprocess.
    Goal: large/small <= 1.25 and < 3 GiB.
(c) images/s and achieved GFLOP/s (training = 3x forward FLOPs) of both architectures fed by
    the pipeline, against an estimate of the machine's FP32 peak.

`--precision` measures only issue 18's comparison instead: images/s of `train --precision
float32` against `--precision bfloat16` (Keras mixed_bfloat16), for each of `--archs`,
interleaved over `--rounds` rounds (median). Goal: >= 2.5x on a CPU with AMX. It prints the
CPU's bfloat16 flags and skips, saying why, where there are none (`--force` measures anyway):

    PYTHONPATH=src python benchmarks/bench_train.py --precision [--force] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.helpers: the same generated images the tests use
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SECTION = "## Training"
PRECISION_SECTION = "## Training precision: float32 vs bfloat16"


def _vm_hwm_bytes() -> int:
    text = Path("/proc/self/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", text)
    return int(match.group(1)) * 1024 if match else 0


def _make_dataset(home: Path, per_class: int, size: int, name: str = "bench") -> None:
    from tests.helpers import build_dataset

    build_dataset(home, name, per_class=per_class, size=size)


def _set_home(home: Path) -> None:
    os.environ["CXR_COVID_HOME"] = str(home)


# --- (a) and (c): throughput ---------------------------------------------------------------


def _pipeline_run(
    arch: str, size: int, batch: int, epochs: int, seed: int, precision: str = "float32"
) -> float:
    from cxr_covid.models import store
    from cxr_covid.training import run as training

    result = training.train(
        training.TrainConfig(
            arch=arch,
            dataset="bench",
            epochs=epochs,
            batch_size=batch,
            image_size=size,
            seed=seed,
            precision=precision,
            calibrate=False,
        )
    )
    store.remove(result.model)
    return result.images_per_second


def _memory_run(arch: str, size: int, batch: int, epochs: int, seed: int) -> float:
    """The study's recipe: every image in one float32 tensor, `model.fit(x, y)`."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cxr_covid import models
    from cxr_covid.data import pipeline
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.images import Preprocessing
    from cxr_covid.training import fit

    dataset = resolve_dataset("bench")
    prep = Preprocessing(image_size=size)
    arrays = []
    for split in ("train", "val"):
        cached = pipeline.cache_split(dataset, split, prep)
        with cached.reader() as reader:
            pixels, labels = reader.read(np.arange(cached.count))
        arrays.append((tf.constant(pixels.astype(np.float32)), tf.constant(labels)))
    (x, y), (xv, yv) = arrays
    keras.utils.set_random_seed(seed)
    model = models.build(arch, size, 3)
    fit.compile_model(model, 1e-3)
    timer = _PhaseTimer()
    model.fit(
        x,
        y,
        batch_size=batch,
        epochs=epochs,
        validation_data=(xv, yv),
        callbacks=[timer.callback()],
        shuffle=True,
        verbose=0,
    )
    seconds = sum(timer.train_seconds[1:]) or timer.train_seconds[0]
    counted = len(timer.train_seconds[1:]) or 1
    return counted * int(x.shape[0]) / seconds


class _PhaseTimer:
    """Times the training phase of each epoch (not validation), like training.tracker's callback."""

    def __init__(self) -> None:
        self.train_seconds: list[float] = []

    def callback(self) -> Any:
        import keras

        timer = self

        class _Callback(keras.callbacks.Callback):  # type: ignore[misc]
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                self.start = time.perf_counter()
                self.end = 0.0

            def on_test_begin(self, logs: Any = None) -> None:
                self.end = time.perf_counter()

            def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
                timer.train_seconds.append((self.end or time.perf_counter()) - self.start)

        return _Callback()


def throughput(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    from cxr_covid.models.flops import TRAIN_FLOPS_FACTOR, summarize

    _set_home(home)
    per_class = -(-args.images // 3 * 10 // 6)  # build_dataset keeps 60 % for training
    _make_dataset(home, per_class, args.size)
    results: dict[str, Any] = {"pipeline": [], "memory": []}
    for _ in range(args.rounds):  # interleaved so load from other processes hits both
        results["pipeline"].append(
            _pipeline_run("baseline", args.size, args.batch, args.epochs, args.seed)
        )
        results["memory"].append(
            _memory_run("baseline", args.size, args.batch, args.epochs, args.seed)
        )
    pipeline_ips = statistics.median(results["pipeline"])
    memory_ips = statistics.median(results["memory"])
    archs = {}
    for arch in args.archs:
        ips = pipeline_ips if arch == "baseline" else None
        if ips is None:
            ips = _pipeline_run(arch, args.size, args.batch, args.epochs, args.seed)
        gflops = summarize(arch, args.size).forward_gflops
        archs[arch] = {
            "images_per_second": ips,
            "forward_gflops_per_image": gflops,
            "achieved_gflops_per_second": ips * TRAIN_FLOPS_FACTOR * gflops,
        }
    from cxr_covid.data.dataset import resolve_dataset
    from cxr_covid.data.manifest import select

    train_images = len(select(resolve_dataset("bench").rows(), "train"))
    return {
        "train_images": train_images,
        "pipeline_runs": results["pipeline"],
        "memory_runs": results["memory"],
        "pipeline_images_per_second": pipeline_ips,
        "memory_images_per_second": memory_ips,
        "ratio": pipeline_ips / memory_ips,
        "architectures": archs,
    }


# --- (b): peak memory ----------------------------------------------------------------------


def rss_child(args: argparse.Namespace) -> None:
    """Runs in a fresh process: one whole `train` on the prepared home; prints VmHWM."""
    from cxr_covid.training import run as training

    started = time.perf_counter()
    result = training.train(
        training.TrainConfig(
            dataset="bench",
            epochs=args.rss_epochs,
            batch_size=args.batch,
            image_size=args.rss_size,
            seed=args.seed,
        )
    )
    print(
        json.dumps(
            {
                "vm_hwm": _vm_hwm_bytes(),
                "train_images": result.record.dataset["train_images"],
                "seconds": time.perf_counter() - started,
            }
        )
    )


def peak_memory(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    runs = {}
    for label, total in (("small", args.rss_small), ("large", args.rss_large)):
        home = root / f"rss-{label}"
        per_class = -(-total // 3)
        _make_dataset(home, per_class, args.rss_size)
        command = [sys.executable, __file__, "--rss-child", *sys.argv[1:]]
        env = dict(os.environ, CXR_COVID_HOME=str(home))
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SystemExit(f"memory run failed:\n{done.stderr[-3000:]}")
        runs[label] = json.loads(done.stdout.strip().splitlines()[-1])
        runs[label]["images"] = per_class * 3
    small, large = runs["small"]["vm_hwm"], runs["large"]["vm_hwm"]
    study_bytes = runs["large"]["images"] * 224 * 224 * 3 * 4
    return {**runs, "ratio": large / small, "study_recipe_bytes_at_224": study_bytes}


# --- report --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    name = platform.machine()
    mhz, flags = 0.0, set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and name == platform.machine():
                name = line.split(":", 1)[1].strip()
            elif line.startswith("cpu MHz") and not mhz:
                mhz = float(line.split(":", 1)[1])
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    cores = os.cpu_count() or 1
    # Nominal FP32 FLOPs per cycle per core: two FMA pipes x lanes x 2 (multiply + add).
    per_cycle = 64 if "avx512f" in flags else 32 if {"fma", "avx2"} <= flags else 8
    import tensorflow as tf

    return {
        "cpu": name,
        "cores": cores,
        "mhz": mhz,
        "flops_per_cycle": per_cycle,
        "peak_gflops": cores * mhz / 1000 * per_cycle,
        "tensorflow": tf.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }


def render(
    args: argparse.Namespace, info: dict[str, Any], a: dict[str, Any], b: dict[str, Any]
) -> str:
    gib = 1024**3
    mib = 1024**2
    lines = [
        SECTION,
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores at {info['mhz']:.0f} MHz, no GPU used "
        f"(TensorFlow {info['tensorflow']}); shared with other work while measuring (load "
        f"average {info['load_before']:.1f} at the start, {info['load_after']:.1f} at the end), "
        "so single figures are noisy and the side-by-side ratios are what count. Command: "
        f"`PYTHONPATH=src python benchmarks/bench_train.py {' '.join(args.argv)}`.",
        "",
        f"**(a) Pipeline vs in-memory tensors** (baseline, {args.size} px, batch {args.batch}, "
        f"{a['train_images']} training images, {args.epochs} epochs per run of which the first "
        f"is not timed, median of {args.rounds} interleaved runs):",
        "",
        "| input | images/s (runs) |",
        "| --- | --- |",
        "| `train`: uint8 disk cache + pread + tf.data prefetch | "
        f"{a['pipeline_images_per_second']:.1f} ("
        + ", ".join(f"{v:.1f}" for v in a["pipeline_runs"])
        + ") |",
        "| `model.fit` on in-memory float32 tensors (the study's recipe) | "
        f"{a['memory_images_per_second']:.1f} ("
        + ", ".join(f"{v:.1f}" for v in a["memory_runs"])
        + ") |",
        "",
        f"Ratio pipeline / in-memory: **{a['ratio']:.2f}x** (goal >= 0.95x).",
        "",
        f"**(b) Peak resident memory of a whole `train` run** (cache build + {args.rss_epochs} "
        f"epoch(s), baseline at {args.rss_size} px to keep the run short, batch {args.batch}; "
        "VmHWM of a fresh process each):",
        "",
        "| images | training images | peak RSS | run time |",
        "| --- | --- | --- | --- |",
    ]
    for label in ("small", "large"):
        run = b[label]
        lines.append(
            f"| {run['images']:,} | {run['train_images']:,} | {run['vm_hwm'] / mib:,.0f} MiB | "
            f"{run['seconds']:.0f} s |"
        )
    lines += [
        "",
        f"Ratio large / small: **{b['ratio']:.2f}x** (goal <= 1.25x), largest peak "
        f"{b['large']['vm_hwm'] / gib:.2f} GiB (goal < 3 GiB). The study's load-everything "
        f"recipe would hold {b['large']['images']:,} images at 224 px as float32: "
        f"{b['study_recipe_bytes_at_224'] / gib:.1f} GiB before training starts.",
        "",
        f"**(c) Both architectures fed by the pipeline** ({args.size} px, batch {args.batch}; "
        "training counted as 3x the forward FLOPs; peak = cores x clock x "
        f"{info['flops_per_cycle']} FP32 FLOPs/cycle = {info['peak_gflops']:.0f} GFLOP/s, a "
        "nominal estimate from the CPU flags):",
        "",
        "| architecture | forward GFLOPs/image | images/s | achieved GFLOP/s | of peak |",
        "| --- | --- | --- | --- | --- |",
    ]
    for arch, row in a["architectures"].items():
        lines.append(
            f"| {arch} | {row['forward_gflops_per_image']:.3f} | "
            f"{row['images_per_second']:.1f} | {row['achieved_gflops_per_second']:.0f} | "
            f"{100 * row['achieved_gflops_per_second'] / info['peak_gflops']:.0f} % |"
        )
    lines.append("")
    return "\n".join(lines)


def write_section(text: str, section: str = SECTION) -> None:
    path = REPO / "docs" / "performance.md"
    current = path.read_text(encoding="utf-8")
    pattern = re.compile(rf"^{re.escape(section)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    from cxr_covid import atomic

    atomic.write_text(path, updated.rstrip("\n") + "\n")


def guard_cost(args: argparse.Namespace) -> None:
    """Issue 11 (goal: under 5 %): one `train` run of the baseline, measuring side by side in
    that run the training time and the time `scoring.fit_for_training` takes afterwards
    (features of the train and val splits, temperature, guard). The fit costs about one
    forward pass over the data whatever the epoch count, so the ratio for the study's 30
    epochs is also given, scaled from the measured per-epoch time."""
    with tempfile.TemporaryDirectory(prefix="bench-guard-") as tmp:
        home = Path(tmp)
        _set_home(home)
        _make_dataset(home, per_class=args.images // 3 * 10 // 7, size=args.size)
        from cxr_covid.training import run as training

        result = training.train(
            training.TrainConfig(
                arch="baseline",
                dataset="bench",
                epochs=args.epochs,
                batch_size=args.batch,
                image_size=args.size,
                seed=args.seed,
            )
        )
    record = result.record
    train_s = float(record.training["seconds"])
    guard_s = float(record.training["calibration_seconds"])
    per_epoch = train_s / max(1, int(record.training["epochs_run"]))
    print(f"machine: {machine()}")
    print(
        f"baseline {args.size} px, {record.dataset['train_images']} train + "
        f"{record.dataset['val_images']} val images, batch {args.batch}, {args.epochs} epochs"
    )
    print(f"training {train_s:.1f} s; calibration + OOD guard {guard_s:.2f} s")
    print(f"guard / training, this run: {guard_s / train_s:.3%}")
    print(f"guard / training, scaled to 30 epochs: {guard_s / (per_epoch * 30):.3%}")


def precision_comparison(args: argparse.Namespace) -> str | None:
    """Issue 18: float32 vs bfloat16 training images/s, interleaved rounds, one process.
    None (after saying why) where the CPU has no bfloat16 flags and --force is not given."""
    from cxr_covid.training import precision

    flags = precision.bf16_flags(precision.cpu_flags())
    info = machine()
    shown = ", ".join(flags) or "none"
    print(f"CPU {info['cpu']} ({info['cores']} cores); bfloat16 flags: {shown}")
    if not flags and not args.force:
        print("skipped: this CPU has neither AMX-BF16 nor AVX512-BF16 (--force measures anyway)")
        return None
    runs: dict[str, dict[str, list[float]]] = {
        arch: {"float32": [], "bfloat16": []} for arch in args.archs
    }
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-precision-") as tmp:
        home = Path(tmp)
        _set_home(home)
        _make_dataset(home, -(-args.images // 3 * 10 // 6), args.size)
        for _ in range(args.rounds):  # interleaved so load from other processes hits both
            for arch in args.archs:
                for name in ("float32", "bfloat16"):
                    ips = _pipeline_run(arch, args.size, args.batch, args.epochs, args.seed, name)
                    runs[arch][name].append(ips)
                    print(f"  {arch} {name}: {ips:.2f} images/s", flush=True)
    lines = [
        PRECISION_SECTION,
        "",
        f"`{_command(args)}`: {info['cpu']}, {info['cores']} cores, TensorFlow "
        f"{info['tensorflow']}; CPU bfloat16 flags: {shown}; load average "
        f"{load_before:.1f} -> {os.getloadavg()[0]:.1f}. {args.size} px, batch {args.batch}, "
        f"{args.epochs} epochs per run (the first untimed), {args.rounds} interleaved round(s); "
        "median images/s of the training phase.",
        "",
        "| architecture | float32 images/s | bfloat16 images/s | bfloat16 / float32 |",
        "|---|---|---|---|",
    ]
    for arch, by_name in runs.items():
        f32, bf16 = (statistics.median(by_name[n]) for n in ("float32", "bfloat16"))
        lines.append(f"| {arch} | {f32:.2f} | {bf16:.2f} | {bf16 / f32:.2f}x |")
    return "\n".join(lines) + "\n"


def _command(args: argparse.Namespace) -> str:
    return "PYTHONPATH=src python benchmarks/bench_train.py " + " ".join(args.argv)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224, help="image size for (a) and (c)")
    parser.add_argument("--images", type=int, default=192, help="training images for (a)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per run (first untimed)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved runs for (a)")
    parser.add_argument("--archs", nargs="+", default=["baseline", "inception"])
    parser.add_argument("--rss-size", type=int, default=32, help="image size for (b)")
    parser.add_argument("--rss-small", type=int, default=3000)
    parser.add_argument("--rss-large", type=int, default=20000)
    parser.add_argument("--rss-epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--write", action="store_true", help="update docs/performance.md")
    parser.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--guard",
        action="store_true",
        help="only measure what calibration + the OOD guard add to a baseline run",
    )
    parser.add_argument(
        "--precision",
        action="store_true",
        help="only compare float32 and bfloat16 training images/s (issue 18)",
    )
    parser.add_argument(
        "--force", action="store_true", help="--precision: measure even without bfloat16 flags"
    )
    args = parser.parse_args()
    args.argv = [a for a in sys.argv[1:] if a != "--rss-child"]
    if args.precision:
        text = precision_comparison(args)
        if text is not None:
            print(text)
            if args.write:
                write_section(text, PRECISION_SECTION)
        return
    if args.guard:
        guard_cost(args)
        return
    if args.rss_child:
        rss_child(args)
        return
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        load_before = os.getloadavg()[0]
        b = peak_memory(args, root)  # first: its subprocesses need the cores to themselves
        a = throughput(args, root / "throughput")
        info = machine()
        info["load_before"], info["load_after"] = load_before, os.getloadavg()[0]
        text = render(args, info, a, b)
    print(text)
    print(f"(benchmark took {time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.write:
        write_section(text)


if __name__ == "__main__":
    main()
