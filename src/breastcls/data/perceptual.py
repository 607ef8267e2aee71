"""Near copies of an image: a difference hash of a small grayscale thumbnail, compared with a
tolerance.

An exact pixel hash misses a copy that was re-saved as JPEG, resized or cropped by a pixel. The
difference hash (dHash) keeps only whether each pixel of a 17x16 grayscale thumbnail is brighter
than its left neighbour: 256 bits that such edits barely change. Two images are near copies
when their hashes differ in at most :data:`NEAR_COPY_BITS` bits.

The tolerance was chosen by measurement on the 269 development images (see
docs/evaluation.md): a JPEG re-save at quality 75 changed at most 13 bits, a 1-pixel crop at
most 17 and a 2-pixel crop at most 33, while two distinct images were never closer than 83 bits
(88 between patients, 83 within one patient).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = ["HASH_BITS", "NEAR_COPY_BITS", "difference_hash", "near_copy_pairs"]

_SIDE = 16
#: Bits of a :func:`difference_hash`.
HASH_BITS = _SIDE * _SIDE
#: The largest Hamming distance between the hashes of two near copies.
NEAR_COPY_BITS = 40
# The largest grey-level step of a flat thumbnail.
_FLAT = 1
# Set bits of every byte value: the Hamming distance is a sum over the XOR's bytes.
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint16)


def difference_hash(image: Image.Image) -> str:
    """Return the 256-bit difference hash of ``image`` as 64 hexadecimal digits.

    A flat image (no two neighbouring thumbnail pixels more than one grey level apart: a blank
    field, a solid colour) has no hash (an empty string): its hash would be all zeros, the same
    as every other flat image's, so only exact pixels compare it.
    """
    # Lanczos averages the whole image into the thumbnail, so a pixel-level edit barely moves it.
    thumbnail = image.convert("L").resize((_SIDE + 1, _SIDE), Image.Resampling.LANCZOS)
    pixels = np.asarray(thumbnail, dtype=np.int16)
    steps = pixels[:, 1:] - pixels[:, :-1]
    if np.abs(steps).max() <= _FLAT:
        return ""
    return np.packbits(steps > 0).tobytes().hex()


def _packed(hashes: Sequence[str]) -> npt.NDArray[np.uint8]:
    if not hashes:
        return np.zeros((0, HASH_BITS // 8), dtype=np.uint8)
    return np.array([np.frombuffer(bytes.fromhex(h), dtype=np.uint8) for h in hashes])


def near_copy_pairs(
    hashes: Sequence[str],
    others: Sequence[str] | None = None,
    *,
    tolerance: int = NEAR_COPY_BITS,
) -> list[tuple[int, int, int]]:
    """Return ``(i, j, distance)`` for every pair of hashes at most ``tolerance`` bits apart.

    Args:
        hashes: Difference hashes (empty strings, hashes not recorded, match nothing).
        others: Hashes to compare ``hashes`` with (``j`` indexes them); ``None`` compares
            ``hashes`` with each other (``i < j``).
        tolerance: The largest distance reported.
    """
    within = others is None
    right = list(hashes if others is None else others)
    left_known = [i for i, h in enumerate(hashes) if len(h) == HASH_BITS // 4]
    right_known = [j for j, h in enumerate(right) if len(h) == HASH_BITS // 4]
    left = _packed([hashes[i] for i in left_known])
    table = _packed([right[j] for j in right_known])
    pairs: list[tuple[int, int, int]] = []
    for row, i in enumerate(left_known):
        first = row + 1 if within else 0  # within one list, each pair once
        distances = _POPCOUNT[np.bitwise_xor(table[first:], left[row])].sum(axis=1)
        for column in np.flatnonzero(distances <= tolerance):
            pairs.append((i, right_known[first + int(column)], int(distances[column])))
    return pairs
