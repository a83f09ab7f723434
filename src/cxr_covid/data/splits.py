"""The train/val/test split: the study's protocol, made deterministic and patient-aware.

The study's notebook split with scikit-learn:
`train_test_split(X, y, test_size=0.3, stratify=y, random_state=42)`, then halved the 30 %
the same way into validation and test. This module does exactly that (for other fractions the
two test sizes follow: 1 - train, then test / (val + test)), so with the study's images in the
same order it yields the study's split.

Where file names carry a patient id, the split is drawn over patients instead of images
(each patient's class is its most frequent image class), so one patient's images never sit
on both sides of the train/test line. Images without an id count as their own patient, so a
dataset without ids is split exactly as the study did.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from cxr_covid.errors import DataError, UsageError

STUDY_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
STUDY_SEED = 42


def parse_fractions(text: str) -> tuple[float, float, float]:
    """ "0.7,0.15,0.15" (or "70,15,15") -> (0.7, 0.15, 0.15); UsageError if it cannot work."""
    try:
        values = [float(v) for v in text.replace("/", ",").split(",")]
    except ValueError:
        raise UsageError(f"--split {text!r}: expected three numbers like 0.7,0.15,0.15") from None
    if len(values) != 3:
        raise UsageError(f"--split {text!r}: expected three numbers like 0.7,0.15,0.15")
    if sum(values) > 1.5:  # given as percentages
        values = [v / 100 for v in values]
    return check_dataset_fractions((values[0], values[1], values[2]))


def check_dataset_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """`check_fractions`, and every part positive: a dataset is split for `train` (which
    picks its best epoch on val) and `eval` (which scores test), so neither may be empty."""
    train, val, test = check_fractions(fractions)
    if val <= 0 or test <= 0:
        empty = "val" if val <= 0 else "test"
        raise UsageError(
            f"split {train:g}/{val:g}/{test:g} leaves no {empty} images: train needs "
            "validation images and eval needs test images (the study: 0.7,0.15,0.15)"
        )
    return train, val, test


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    if len(fractions) != 3:
        raise UsageError("a split needs three fractions: train, val, test")
    train, val, test = (float(f) for f in fractions)
    if not all(math.isfinite(f) for f in (train, val, test)):
        raise UsageError(f"split {train:g}/{val:g}/{test:g}: every fraction must be a number")
    if min(train, val, test) < 0 or train <= 0 or abs(train + val + test - 1.0) > 1e-6:
        raise UsageError(
            f"split {train:g}/{val:g}/{test:g} must be non-negative with a positive train part "
            "and sum to 1 (the study: 0.7,0.15,0.15; its text's 75/15/15 sums to 105 %)"
        )
    return train, val, test


def assign_splits(
    labels: Sequence[str],
    *,
    fractions: Sequence[float] = STUDY_FRACTIONS,
    seed: int = STUDY_SEED,
    groups: Sequence[str] | None = None,
) -> list[str]:
    """One of "train"/"val"/"test" per item, stratified by label, deterministic in `seed`.

    `groups` (e.g. patient ids, "" for none) keeps each group in one split.
    """
    from sklearn.model_selection import train_test_split

    train_f, val_f, test_f = check_fractions(fractions)
    n = len(labels)
    if n == 0:
        raise DataError("nothing to split: the dataset is empty")
    # Group keys in first-appearance order; an item without a group is a group of its own.
    keys = [(f"g:{groups[i]}" if groups is not None and groups[i] else f"i:{i}") for i in range(n)]
    order: dict[str, int] = {}
    for key in keys:
        order.setdefault(key, len(order))
    members: list[list[int]] = [[] for _ in order]
    for i, key in enumerate(keys):
        members[order[key]].append(i)
    group_labels = np.array(
        [Counter(labels[i] for i in m).most_common(1)[0][0] for m in members], dtype=object
    )
    index = np.arange(len(members))

    def cut(ids: np.ndarray, size: float, what: str) -> tuple[np.ndarray, np.ndarray]:
        """Split ids into (keep, taken) with `size` of them taken, stratified."""
        if size <= 0:
            return ids, ids[:0]
        if size >= 1:
            return ids[:0], ids
        strata = group_labels[ids]
        try:
            kept, taken = train_test_split(
                ids, test_size=size, stratify=strata, random_state=seed, shuffle=True
            )
        except ValueError as exc:
            counts = Counter(strata.tolist())
            smallest = min(counts, key=lambda k: counts[k])
            raise DataError(
                f"cannot split {what} stratified: class {smallest!r} has only "
                f"{counts[smallest]} {'patient(s)' if groups is not None else 'image(s)'} "
                f"there ({exc})"
            ) from None
        return np.asarray(kept), np.asarray(taken)

    # Rounded so that 1 - 0.7 is 0.3, not 0.30000000000000004 (sklearn takes ceil(n * size)).
    held_out = round(1.0 - train_f, 10)
    test_share = round(test_f / (val_f + test_f), 10) if val_f + test_f > 0 else 0.0
    train_ids, rest = cut(index, held_out, "off validation+test")
    val_ids, test_ids = cut(rest, test_share if rest.size else 0.0, "val/test")
    result = [""] * n
    for name, ids in (("train", train_ids), ("val", val_ids), ("test", test_ids)):
        for g in ids.tolist():
            for i in members[g]:
                result[i] = name
    return result
