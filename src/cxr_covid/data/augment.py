"""Offline augmentation of the training split, as the study did for its COVID-19 images.

Each new image is a training image, flipped left-right with probability 0.7 and rotated by an
angle drawn uniformly from [-15, +15] degrees with probability 0.7 (bilinear, edges extended
like Keras' ImageDataGenerator's default fill_mode="nearest"). Only training images are ever
sources, and new rows always have split=train: validation and test stay untouched originals.

How many: with `factor` F a class's training images become F times as many (originals plus
(F - 1) x n new ones; the study: 5 x 191 COVID-19 training images = 955, its data table's
number); with `balance` a class is raised to the largest class's training count.

Deterministic: every new image's random draws come from (seed, its source image's sha256,
copy number), so the same dataset and seed give byte-identical images. Idempotent: the
settings are recorded in dataset.json; running again with the same settings changes nothing,
`force` redoes. The manifest is the commit point: new images are written to a folder first,
the manifest is then replaced atomically, and only then are superseded images deleted.
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import shutil
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from cxr_covid import atomic
from cxr_covid import classes as cls
from cxr_covid.data.catalog import natural_key, parse_classes
from cxr_covid.data.dataset import Dataset
from cxr_covid.data.images import read_image
from cxr_covid.data.manifest import AUGMENTED, ORIGINAL, ManifestRow, manifest_hash
from cxr_covid.errors import DataError, UsageError
from cxr_covid.progress import NULL, Reporter

FLIP_PROBABILITY = 0.7
ROTATE_PROBABILITY = 0.7
MAX_ANGLE = 15.0
STUDY_FACTOR = 5
AUGMENTING = "Augmenting"  # the progress task (cxr_covid.progress)


@dataclass
class AugmentResult:
    dataset: Dataset
    before: dict[str, int]  # class -> original training images
    after: dict[str, int]  # class -> training images including augmented ones
    created: int
    skipped: list[str] = field(default_factory=list)  # already augmented with these settings
    targets: dict[str, int] = field(default_factory=dict)  # augmented class -> target count

    def to_dict(self) -> dict[str, object]:
        """`augment --json`'s document."""
        return {
            "dataset": self.dataset.name,
            "before": self.before,
            "after": self.after,
            "created": self.created,
            "already_done": self.skipped,
            "targets": self.targets,
            "warnings": self.warnings,
        }

    @property
    def warnings(self) -> list[str]:
        return imbalance_warnings(self.before, self.after)


def imbalance_warnings(before: dict[str, int], after: dict[str, int]) -> list[str]:
    """A line for a class that augmentation grew past every other class. The study's factor
    of 5 balances its 219 COVID-19 images against about 1,340 of each other class; on a
    dataset with more of them it makes COVID-19 the majority, which a model learns to favour."""
    warnings = []
    for label, count in after.items():
        others = {other: n for other, n in after.items() if other != label}
        if not others or count <= before.get(label, 0):
            continue
        runner_up = max(others, key=lambda other: others[other])
        if count > others[runner_up]:
            warnings.append(
                f"augmentation makes {label} the largest training class ({before.get(label, 0)} "
                f"-> {count}, against {others[runner_up]} {runner_up}): a model trained on "
                "it may favour it; --balance raises classes to the largest one instead"
            )
    return warnings


def transform(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random augmentation of an (H, W, 3) uint8 image (the same draws in every case, so
    the stream of random numbers never depends on the outcome)."""
    flip = rng.random() < FLIP_PROBABILITY
    rotate = rng.random() < ROTATE_PROBABILITY
    angle = float(rng.uniform(-MAX_ANGLE, MAX_ANGLE))
    out = pixels[:, ::-1] if flip else pixels
    if rotate:
        from scipy import ndimage

        gray = bool(np.all(out[:, :, 0] == out[:, :, 1]) and np.all(out[:, :, 1] == out[:, :, 2]))
        plane = out[:, :, 0] if gray else out
        turned = ndimage.rotate(
            plane.astype(np.float32), angle, axes=(1, 0), reshape=False, order=1, mode="nearest"
        )
        turned = np.clip(np.rint(turned), 0, 255).astype(np.uint8)
        out = np.repeat(turned[:, :, None], 3, axis=2) if gray else turned
    return np.ascontiguousarray(out)


def _png_bytes(pixels: np.ndarray) -> bytes:
    gray = bool(
        np.all(pixels[:, :, 0] == pixels[:, :, 1]) and np.all(pixels[:, :, 1] == pixels[:, :, 2])
    )
    img = Image.fromarray(pixels[:, :, 0] if gray else pixels, mode="L" if gray else "RGB")
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


_FOLDER_NAME = re.compile(r"(?P<label>[a-z_]+)-s\d+-n\d+")


def _rng(seed: int, source_sha256: str, copy: int) -> np.random.Generator:
    return np.random.default_rng([seed, int(source_sha256[:16], 16), copy])


_Plans = dict[str, tuple[int, list[ManifestRow]]]  # class -> (target count, source rows)


def augment_dataset(
    dataset: Dataset,
    *,
    factor: int | None = STUDY_FACTOR,
    balance: bool = False,
    classes: Sequence[str] = (cls.COVID,),
    seed: int = 42,
    force: bool = False,
    reporter: Reporter = NULL,
    workers: int = 2,
) -> AugmentResult:
    """Augment the training images of `classes` (see module doc)."""
    if not balance and (factor is None or factor < 1):
        raise UsageError("--factor must be a whole number of at least 1 (the study: 5)")
    rows = dataset.rows()
    info = dataset.info()
    train, wanted, before = _training_counts(dataset, rows, classes)
    records: dict[str, Any] = dict(info.get("augmentation", {}))
    old_aug = [r for r in rows if r.origin == AUGMENTED]
    targets = {
        c: max(before[c], max(before.values())) if balance else before[c] * int(factor or 1)
        for c in wanted
    }
    plans, skipped = _plan(dataset, train, old_aug, records, targets, seed, force)
    new_rows, built = _make_copies(dataset, plans, seed, workers, reporter)
    final_rows = [r for r in rows if not (r.origin == AUGMENTED and r.label in plans)] + new_rows
    if plans:
        dataset.write_rows(final_rows)
        _drop_superseded(dataset, old_aug, set(plans), {final for _tmp, final in built})
        for c in plans:
            records[c] = {
                "target": targets[c],
                "seed": seed,
                "mode": "balance" if balance else f"factor {factor}",
                "created": targets[c] - before[c],
                "flip_probability": FLIP_PROBABILITY,
                "rotate_probability": ROTATE_PROBABILITY,
                "max_angle": MAX_ANGLE,
            }
        info["augmentation"] = records
        info["manifest_sha256"] = manifest_hash(final_rows)
        dataset.write_info(info)
    after = dict(before)
    for row in final_rows:
        if row.origin == AUGMENTED and row.split == "train":
            after[row.label] = after.get(row.label, 0) + 1
    return AugmentResult(
        dataset=dataset,
        before=before,
        after=after,
        created=len(new_rows),
        skipped=skipped,
        targets=targets,
    )


def _training_counts(
    dataset: Dataset, rows: list[ManifestRow], classes: Sequence[str]
) -> tuple[list[ManifestRow], tuple[str, ...], dict[str, int]]:
    """(original training rows, the classes asked for, training images per class present);
    DataError when there is nothing to augment."""
    train = [r for r in rows if r.origin == ORIGINAL and r.split == "train"]
    present = cls.label_order(sorted({r.label for r in rows if r.origin == ORIGINAL}))
    if not train:
        raise DataError(f"dataset {dataset.name!r} has no training images")
    wanted = parse_classes(classes)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise DataError(
            f"dataset {dataset.name!r} has no class {', '.join(missing)} "
            f"(it has {', '.join(present)})"
        )
    before = {c: sum(1 for r in train if r.label == c) for c in present}
    for c in wanted:
        if before[c] == 0:
            raise DataError(f"dataset {dataset.name!r} has no training images of class {c!r}")
    return train, tuple(wanted), before


def _plan(
    dataset: Dataset,
    train: list[ManifestRow],
    old_aug: list[ManifestRow],
    records: dict[str, Any],
    targets: dict[str, int],
    seed: int,
    force: bool,
) -> tuple[_Plans, list[str]]:
    """The classes to (re)make, and those already augmented exactly so (skipped); a class
    augmented otherwise is refused without --force."""
    plans: _Plans = {}
    skipped: list[str] = []
    for c, target in targets.items():
        n = sum(1 for r in train if r.label == c)
        setting = {"target": target, "seed": seed}
        record: dict[str, Any] = records.get(c) or {}
        existing = [r for r in old_aug if r.label == c]
        same = bool(record) and all(record.get(k) == v for k, v in setting.items())
        complete = len(existing) == target - n and all(dataset.file(r).is_file() for r in existing)
        if same and complete and not force:
            skipped.append(c)
            continue
        if existing and not same and not force:
            raise UsageError(
                f"class {c!r} was already augmented to {record.get('target', '?')} "
                f"images with seed {record.get('seed', '?')}; add --force to redo "
                f"it for {target} images with seed {seed}"
            )
        sources = sorted((r for r in train if r.label == c), key=lambda r: natural_key(r.path))
        plans[c] = (target, sources)
    return plans, skipped


def _make_copies(
    dataset: Dataset, plans: _Plans, seed: int, workers: int, reporter: Reporter
) -> tuple[list[ManifestRow], list[tuple[Path, Path]]]:
    """Write every planned copy into temporary folders, then move them into place; the new
    rows and (temporary, final) folders. A failure or Ctrl-C removes what was written."""
    total = sum(target - len(sources) for target, sources in plans.values())
    done = 0
    reporter.start(AUGMENTING, total=total, unit="images")
    new_rows: list[ManifestRow] = []
    built: list[tuple[Path, Path]] = []  # (temporary folder, final folder)
    try:
        for c, (target, sources) in plans.items():
            final = dataset.augmented_dir / f"{c}-s{seed}-n{target}"
            tmp = atomic.temp_dir_beside(final)
            built.append((tmp, final))
            want = target - len(sources)
            jobs = [
                (i, src, want // len(sources) + (1 if i < want % len(sources) else 0))
                for i, src in enumerate(sources)
            ]
            pool = ThreadPoolExecutor(max_workers=max(1, workers))
            try:
                make = functools.partial(_copies_of, dataset, tmp, final, c, seed)
                for made in pool.map(make, jobs):
                    new_rows.extend(made)
                    done += len(made)
                    if made:
                        reporter.advance(AUGMENTING, done)
            finally:
                pool.shutdown(wait=True, cancel_futures=True)  # Ctrl-C: skip queued work
        # Commit: folders into place; the caller then writes the manifest (the point of no
        # return), removes superseded images and records the settings.
        for tmp, final in built:
            atomic.commit_dir(tmp, final, replace=True)
    except BaseException:
        for tmp, _final in built:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        reporter.finish(AUGMENTING)
    return new_rows, built


def _copies_of(
    dataset: Dataset,
    tmp: Path,
    final: Path,
    label: str,
    seed: int,
    job: tuple[int, ManifestRow, int],
) -> list[ManifestRow]:
    """The augmented copies of one source image, written into `tmp`; their manifest rows
    (paths as they will be under `final`)."""
    index, src, copies = job
    if copies == 0:
        return []
    pixels = read_image(dataset.file(src))
    made = []
    for copy in range(1, copies + 1):
        data = _png_bytes(transform(pixels, _rng(seed, src.sha256, copy)))
        # The position keeps names unique even for two identical source files.
        file_name = f"{index + 1:05d}-{PurePosixPath(src.path).stem}-aug{copy}.png"
        (tmp / file_name).write_bytes(data)
        made.append(
            ManifestRow(
                path=(final / file_name).relative_to(dataset.root).as_posix(),
                label=label,
                sha256=hashlib.sha256(data).hexdigest(),
                width=int(pixels.shape[1]),
                height=int(pixels.shape[0]),
                split="train",
                origin=AUGMENTED,
                source=src.path,
                patient=src.patient,
                collection=src.collection,
                age_group=src.age_group,
            )
        )
    return made


def _drop_superseded(
    dataset: Dataset, old_aug: list[ManifestRow], redone: set[str], new_folders: set[Path]
) -> None:
    """Remove the augmented folders of redone classes that the new ones replace."""
    for row in old_aug:
        if row.label in redone:
            folder = dataset.file(row).parent
            if folder not in new_folders and folder.parent == dataset.augmented_dir:
                shutil.rmtree(folder, ignore_errors=True)
    # A superseded folder with no images (its target was the original count) has no
    # manifest row to find it by; find it by name.
    if dataset.augmented_dir.is_dir():
        for folder in dataset.augmented_dir.iterdir():
            match = _FOLDER_NAME.fullmatch(folder.name)
            if match and match["label"] in redone and folder not in new_folders:
                shutil.rmtree(folder, ignore_errors=True)
