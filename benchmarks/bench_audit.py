"""Audit benchmark: `cxr-covid audit` of a baseline on the 360-image dev set, control included.

    PYTHONPATH=src python benchmarks/bench_audit.py [--image-size 224] [--train-epochs 2]

Goal (issue 9): under 3 minutes on 2 cores. Steps, in a fresh temporary home:
1. `download --from-zip ../shared/data/cxr-dev/covid19-radiography-dev.zip` (not timed);
2. `train` a baseline (not timed);
3. time `audit` with everything on (views, attention, panels, lung-blind control trained with
   the default --control-epochs), then a second `audit` that reuses the cached control.
Prints a Markdown block for docs/performance.md (the figures there come from this script).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEV_ZIP = REPO.parent / "shared" / "data" / "cxr-dev" / "covid19-radiography-dev.zip"


def _cli(home: Path, *args: str) -> float:
    env = {**os.environ, "CXR_COVID_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "cxr_covid", *args],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zip", type=Path, default=DEV_ZIP)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--train-epochs", type=int, default=2)
    args = parser.parse_args()
    if not args.zip.is_file():
        sys.exit(f"dev archive not found: {args.zip}")
    with tempfile.TemporaryDirectory(prefix="cxr-bench-audit-") as tmp:
        home = Path(tmp) / "home"
        _cli(home, "download", "--from-zip", str(args.zip), "--name", "dev")
        size = str(args.image_size)
        train_args = ["-d", "dev", "--image-size", size, "-e", str(args.train_epochs)]
        _cli(home, "train", *train_args, "--name", "bench")
        load = os.getloadavg()[0]
        first = _cli(home, "audit", "bench", "--out", str(Path(tmp) / "a1"))
        second = _cli(home, "audit", "bench", "--out", str(Path(tmp) / "a2"))
        end_load = os.getloadavg()[0]
    print("## Shortcut audit\n")
    print(
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"load average {load:.1f} at the start and {end_load:.1f} at the end (shared). "
        "Command: `PYTHONPATH=src python benchmarks/bench_audit.py`.\n"
    )
    print(
        f"`cxr-covid audit` of a baseline ({size} px) on the 360-image dev set (54 test "
        "images), whole process including TensorFlow's start:\n"
    )
    print("| run | seconds | goal |\n| --- | --- | --- |")
    print(f"| first audit: views, attention, panels, control trained | {first:.0f} | < 180 |")
    print(f"| second audit: control reused from the cache | {second:.0f} | |")


if __name__ == "__main__":
    main()
