"""`train --balance-sources`: within each class, every collection weighs the same.

The collection of an image is the manifest's `collection` column (written by `download` from
the release's workbooks or `--sources FILE.csv`); a manifest without it, or an empty cell,
counts as the one collection `unknown`, so balancing then changes nothing. Each training
image gets the weight n_class / (collections_in_class * n_class_collection): a class keeps
its total weight (the class balance is the dataset's, as in the study), and inside it a
collection of 20 images weighs as much as one of 2,000.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np


def source_weights(labels: Sequence[str], collections: Sequence[str]) -> np.ndarray:
    """One sampling weight per image (see the module docstring)."""
    if len(labels) != len(collections):
        raise ValueError("one collection per label needed")
    per_class = Counter(labels)
    per_pair = Counter(zip(labels, collections, strict=True))
    sources_in = Counter(label for label, _ in per_pair)
    return np.array(
        [
            per_class[label] / (sources_in[label] * per_pair[(label, source)])
            for label, source in zip(labels, collections, strict=True)
        ],
        dtype=np.float64,
    )


def composition(labels: Sequence[str], collections: Sequence[str]) -> dict[str, dict[str, int]]:
    """{class: {collection: images}}, for the model record."""
    table: dict[str, dict[str, int]] = {}
    for (label, source), n in sorted(Counter(zip(labels, collections, strict=True)).items()):
        table.setdefault(label, {})[source] = n
    return table
