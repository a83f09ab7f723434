"""Test helpers: tiny generated chest-X-ray stand-ins whose class is visible.

Each class puts a bright blob in its own place (covid: top-left, normal: centre, viral
pneumonia: bottom-right, lung opacity: top-right) on a noisy dark background, so a network
that learns anything learns it fast, and Grad-CAM has a known right answer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cxr_covid import atomic, classes
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.manifest import ManifestRow, sha256_file

BLOB_CENTRES = {  # (row, col) as fractions of the image size
    classes.COVID: (0.25, 0.25),
    classes.NORMAL: (0.5, 0.5),
    classes.VIRAL_PNEUMONIA: (0.75, 0.75),
    classes.LUNG_OPACITY: (0.25, 0.75),
}


def blob_image(label: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size) uint8 grayscale: noise plus a bright disc where `label` puts it."""
    cy, cx = BLOB_CENTRES[label]
    jitter = rng.uniform(-0.05, 0.05, size=2)
    yy, xx = np.mgrid[0:size, 0:size] / size
    radius = 0.12
    disc = ((yy - cy - jitter[0]) ** 2 + (xx - cx - jitter[1]) ** 2) < radius**2
    pixels = rng.normal(40, 12, size=(size, size))
    pixels[disc] = rng.normal(220, 10, size=int(disc.sum()))
    return np.clip(pixels, 0, 255).astype(np.uint8)


def write_blob_png(path: Path, label: str, size: int, rng: np.random.Generator) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(blob_image(label, size, rng), mode="L").save(path)
    return path


def write_class_folders(
    root: Path,
    per_class: int,
    size: int = 32,
    labels: tuple[str, ...] = classes.STUDY_CLASSES,
    folder_names: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """`root/<folder>/<folder>-N.png` for each class (folder names default to the classes)."""
    rng = np.random.default_rng(seed)
    for label in labels:
        folder = (folder_names or {}).get(label, label)
        for i in range(per_class):
            write_blob_png(root / folder / f"{folder}-{i + 1}.png", label, size, rng)
    return root


def build_dataset(
    home: Path,
    name: str = "blobs",
    per_class: int = 20,
    size: int = 32,
    labels: tuple[str, ...] = classes.STUDY_CLASSES,
    seed: int = 0,
) -> Dataset:
    """A complete dataset in the home without going through `download`: images, a manifest
    with a 60/20/20 split per class, and dataset.json. For tests of train/eval/predict."""
    root = home / "datasets" / name
    write_class_folders(root / "images", per_class, size, labels, seed=seed)
    rows = []
    for label in labels:
        files = sorted((root / "images" / label).glob("*.png"))
        n_train = round(0.6 * len(files))
        n_val = round(0.2 * len(files))
        for i, file in enumerate(files):
            split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
            rows.append(
                ManifestRow(
                    path=file.relative_to(root).as_posix(),
                    label=label,
                    sha256=sha256_file(file),
                    width=size,
                    height=size,
                    split=split,
                )
            )
    dataset = Dataset(root)
    dataset.write_rows(rows)
    atomic.write_json(
        dataset.info_path,
        {"name": name, "source": {"kind": "test"}, "classes": list(labels), "created": "test"},
    )
    return dataset
