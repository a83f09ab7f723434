"""Near-duplicate images, found with a perceptual hash.

The same radiograph often appears twice in public collections (re-exported, resized, or
re-compressed), sometimes under two labels. A copy in the training set and another in the
test set inflates test accuracy, so the catalogue reports such pairs and `--dedupe` drops them.

The hash is a 256-bit difference hash (dHash): the image is reduced to 17x16 grey levels and
each bit says whether a pixel is brighter than its right-hand neighbour. Re-encoding, resizing
and small brightness changes leave it (almost) unchanged; different radiographs differ in
dozens of bits. Two images are near-duplicates when their hashes differ in at most
`max_distance` bits (default 10 of 256, about 4 %).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

HASH_SIDE = 16
DEFAULT_MAX_DISTANCE = 10
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint16)


def dhash(pixels: np.ndarray, side: int = HASH_SIDE) -> bytes:
    """The difference hash of an (H, W[, 3]) uint8 image: side*side bits as bytes."""
    gray = Image.fromarray(pixels).convert("L")
    small = np.asarray(gray.resize((side + 1, side), Image.Resampling.BOX), dtype=np.int16)
    bits = small[:, 1:] > small[:, :-1]
    return np.packbits(bits.reshape(-1)).tobytes()


def distance(a: bytes, b: bytes) -> int:
    x = np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))
    return int(_POPCOUNT[x].sum())


@dataclass(frozen=True)
class NearPair:
    a: int  # indices into the hashed sequence
    b: int
    distance: int


def near_pairs(
    hashes: Sequence[bytes], max_distance: int = DEFAULT_MAX_DISTANCE, block: int = 64
) -> list[NearPair]:
    """All pairs (a < b) whose hashes differ in at most `max_distance` bits.

    Exhaustive but vectorised: for 21,000 images that is ~220 million comparisons, a few
    seconds in blocks of `block` rows (memory stays at a few times block * n * 32 bytes).
    """
    n = len(hashes)
    if n < 2:
        return []
    raw = b"".join(hashes)
    # 64-bit words and numpy's popcount (numpy >= 2) where possible, else a byte lookup table.
    fast = hasattr(np, "bitwise_count") and len(raw) % (8 * n) == 0
    table = np.frombuffer(raw, dtype=np.uint64 if fast else np.uint8).reshape(n, -1)
    pairs: list[NearPair] = []
    for start in range(0, n, block):
        rows = table[start : start + block]
        # Only compare with later images: each pair once.
        xor = np.bitwise_xor(rows[:, None, :], table[None, start:, :])
        if fast:
            dist = np.bitwise_count(xor).sum(axis=2, dtype=np.int32)
        else:
            dist = _POPCOUNT[xor].sum(axis=2)
        for i, j in zip(*np.nonzero(dist <= max_distance), strict=True):
            a, b = start + int(i), start + int(j)
            if a < b:
                pairs.append(NearPair(a, b, int(dist[i, j])))
    return pairs


def clusters(n: int, pairs: Sequence[NearPair]) -> list[list[int]]:
    """Connected groups of near-duplicates (union-find), each sorted, groups of two or more."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pair in pairs:
        ra, rb = find(pair.a), find(pair.b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(find(i), []).append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def to_drop(groups: Sequence[Sequence[int]], labels: Sequence[str]) -> set[int]:
    """What `--dedupe` removes: in each group all but the first image; a group whose images
    carry different labels is removed entirely, because its true label is in doubt."""
    drop: set[int] = set()
    for group in groups:
        if len({labels[i] for i in group}) > 1:
            drop.update(group)
        else:
            drop.update(group[1:])
    return drop
