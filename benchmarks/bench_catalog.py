"""Catalogue speed: threaded decode-check vs one thread, and the near-duplicate search.

    PYTHONPATH=src python benchmarks/bench_catalog.py             # 600 images, writes docs
    PYTHONPATH=src python benchmarks/bench_catalog.py --images 200 --no-write

`download` decodes every image once (data.images.read_image), hashes it (sha256 and the
perceptual hash) and records its size. This measures that pass over generated 299 px
grayscale PNGs shaped like the current Kaggle release's, with the default thread pool and
with a single worker, side by side in one run (interleaved rounds, best round counts: the
machine may be shared). It also times the exhaustive near-duplicate search over as many
random 256-bit hashes as the current release has images (21,165), to say what `download`
costs on the full database.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"
SECTION = "## Data: catalogue"
KAGGLE_CURRENT_IMAGES = 3616 + 10192 + 6012 + 1345


def make_images(root: Path, count: int, size: int = 299, seed: int = 0) -> None:
    """Smooth chest-like shading plus sensor noise, in three class folders."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(count):
        folder = root / ("COVID", "Normal", "Viral Pneumonia")[i % 3] / "images"
        folder.mkdir(parents=True, exist_ok=True)
        cx, cy = rng.uniform(0.35, 0.65, 2)
        body = 150 * np.exp(-(((xx - cx) / 0.35) ** 2 + ((yy - cy) / 0.45) ** 2))
        pixels = 30 + body + rng.normal(0, 6, (size, size))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L").save(
            folder / f"image-{i:05d}.png"
        )


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, load average {load:.2f} at start"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update the docs")
    args = parser.parse_args()

    from cxr_covid.data import dedupe
    from cxr_covid.data.catalog import build_catalog

    where = machine()
    print(where, file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="bench-catalog-") as tmp:
        root = Path(tmp)
        make_images(root, args.images)
        rates: dict[str, list[float]] = {"threads": [], "single": []}
        for _ in range(args.rounds):
            for name, workers in (("threads", None), ("single", 1)):
                start = time.perf_counter()
                catalog = build_catalog(root, workers=workers)
                rate = len(catalog.items) / (time.perf_counter() - start)
                rates[name].append(rate)
                print(f"{name}: {rate:.0f} images/s", file=sys.stderr)
    rng = np.random.default_rng(0)
    hashes = [rng.bytes(32) for _ in range(KAGGLE_CURRENT_IMAGES)]
    start = time.perf_counter()
    dedupe.near_pairs(hashes)
    search = time.perf_counter() - start

    best = {name: max(values) for name, values in rates.items()}
    spread = {name: f"{min(v):.0f}-{max(v):.0f}" for name, v in rates.items()}
    ratio = best["threads"] / best["single"]
    full = KAGGLE_CURRENT_IMAGES / best["threads"] + search
    text = (
        f"{SECTION}\n\n"
        f"`python benchmarks/bench_catalog.py --images {args.images} --rounds {args.rounds}` "
        f"on {where}.\n\n"
        "| measure | result |\n| --- | --- |\n"
        f"| decode-check, thread pool (default) | {best['threads']:.0f} images/s "
        f"(rounds: {spread['threads']}) |\n"
        f"| decode-check, one thread | {best['single']:.0f} images/s "
        f"(rounds: {spread['single']}) |\n"
        f"| **thread pool / one thread** | **{ratio:.2f}x** |\n"
        f"| near-duplicate search, {KAGGLE_CURRENT_IMAGES:,} hashes | {search:.1f} s |\n"
        f"| estimated decode-check + search for the current release | {full / 60:.1f} min |\n"
        "\n299 px grayscale PNGs generated to look like the Kaggle release's; best of "
        f"{args.rounds} interleaved rounds. The thread pool helps because Pillow releases "
        "the GIL while decoding; the ratio is bounded by the cores the machine has free.\n"
    )
    print(text)
    if not args.no_write:
        current = DOC.read_text(encoding="utf-8")
        pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.M | re.S)
        if pattern.search(current):
            updated = pattern.sub(lambda _m: text + "\n", current)
        else:
            updated = current.rstrip("\n") + "\n\n" + text
        DOC.write_text(updated.rstrip("\n") + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
