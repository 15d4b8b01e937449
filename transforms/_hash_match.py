"""Whole-image hash comparison, vectorised: what near dedup and decontamination verify a pair with.

A member's ``HashFeatures`` (the pHash and optional second hash as integers, the colour signature's bytes) are
compared under ``Limits``: pHash Hamming distance within ``distance`` bits, the second hash within ``second``, the
colour signature within ``colour`` (see ``transforms.hashing``); ``None`` skips a check. ``close_pairs`` does it for
two lists of members at once, in blocks of ``BLOCK`` rows; ``identical_pairs`` is the linear fallback of a bucket too
large to compare pairwise. ``band_layout`` and ``band_values`` cut the 64 pHash bits into ``k + 1`` bands, so that two
hashes within ``k`` bits agree on at least one (pigeonhole): the candidate buckets of ``transforms.near_dedup``.

Pure functions (NumPy, no Beam).
"""

from collections import Counter
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np

from transforms.hashing import COLOUR, colour_distance, decode_colours, popcount

HASH_BITS = 64
BLOCK = 1024


class HashFeatures(NamedTuple):
    """What near dedup compares: the pHash and optional second hash as integers, the colour signature's bytes."""

    phash: int
    second: int | None = None
    colour: bytes | str | None = None


class Limits(NamedTuple):
    """Verification thresholds; ``None`` skips a check."""

    distance: int
    second: int | None = None
    colour: float | None = None


def colour_bytes(hashes: dict, wanted: bool = True) -> bytes | None:
    """The raw colour signature of a hash mapping, if it has one and it is wanted."""
    return bytes.fromhex(hashes[COLOUR]) if wanted and hashes.get(COLOUR) else None


def band_layout(max_distance: int) -> list[tuple[int, int]]:
    """``(shift, width)`` of ``max_distance + 1`` bands covering the 64 bits as evenly as possible."""
    count = max_distance + 1
    widths = [HASH_BITS // count + (1 if index < HASH_BITS % count else 0) for index in range(count)]
    shifts = [sum(widths[:index]) for index in range(count)]
    return list(zip(shifts, widths, strict=True))


def band_values(value: int, layout: Sequence[tuple[int, int]]) -> list[int]:
    return [(value >> shift) & ((1 << width) - 1) for shift, width in layout]


class HashArrays(NamedTuple):
    """The features of a list of members as arrays, for vectorised verification."""

    phash: np.ndarray
    second: np.ndarray
    has_second: np.ndarray
    colour: np.ndarray
    has_colour: np.ndarray

    @classmethod
    def of(cls, features: Sequence[HashFeatures], size: int | None = None) -> "HashArrays":
        """Arrays of ``features``; a colour signature may be raw bytes or its hex text. ``size`` is the signature
        size compared (the most common one among ``features`` when not given)."""
        raws = [bytes.fromhex(f.colour) if isinstance(f.colour, str) else f.colour for f in features]
        # Signatures of another grid size (an earlier run's shipped samples) are not compared on colour.
        if size is None:
            size = Counter(len(raw) for raw in raws if raw).most_common(1)[0][0] if any(raws) else 3
        has_colour = np.array([bool(raw) and len(raw) == size for raw in raws], dtype=bool)
        blank = bytes(size)
        return cls(
            phash=np.array([f.phash for f in features], dtype=np.uint64),
            second=np.array([f.second or 0 for f in features], dtype=np.uint64),
            has_second=np.array([f.second is not None for f in features], dtype=bool),
            colour=decode_colours([raw if ok else blank for raw, ok in zip(raws, has_colour, strict=True)], size // 3),
            has_colour=has_colour,
        )


def close_pairs(
    rows: HashArrays, cols: HashArrays, limits: Limits, upper: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Verified pairs between ``rows`` and ``cols`` (only ``i < j`` when ``upper``, for a set against itself).

    Returns:
        Row indices, column indices, pHash distances and colour distances (NaN where not measured).
    """
    found_i, found_j, found_d = [], [], []
    for start in range(0, len(rows.phash), BLOCK):
        distances = popcount(rows.phash[start : start + BLOCK, None] ^ cols.phash[None, :])
        i, j = np.nonzero(distances <= limits.distance)
        d = distances[i, j]
        i = i + start
        if upper:
            keep = j > i
            i, j, d = i[keep], j[keep], d[keep]
        found_i.append(i)
        found_j.append(j)
        found_d.append(d)
    i = np.concatenate(found_i) if found_i else np.zeros(0, np.int64)
    j = np.concatenate(found_j) if found_j else np.zeros(0, np.int64)
    d = np.concatenate(found_d).astype(np.int64) if found_d else np.zeros(0, np.int64)
    if limits.second is not None and len(i):
        both = rows.has_second[i] & cols.has_second[j]
        keep = ~both | (popcount(rows.second[i] ^ cols.second[j]) <= limits.second)
        i, j, d = i[keep], j[keep], d[keep]
    colour = np.full(len(i), np.nan)
    if limits.colour is not None and len(i):
        both = rows.has_colour[i] & cols.has_colour[j]
        for start in range(0, len(i), BLOCK):
            part = slice(start, start + BLOCK)
            measured = both[part]
            if measured.any():
                values = colour_distance(rows.colour[i[part]][measured], cols.colour[j[part]][measured])
                colour[np.flatnonzero(measured) + start] = values
        keep = np.isnan(colour) | (colour <= limits.colour)
        i, j, d, colour = i[keep], j[keep], d[keep], colour[keep]
    return i, j, d, colour


def identical_pairs(rows: HashArrays, limits: Limits) -> Iterator[tuple[int, int]]:
    """The linear fallback for a capped bucket: each member against the first member with the same pHash."""
    first: dict[int, int] = {}
    for index, value in enumerate(rows.phash.tolist()):
        if value not in first:
            first[value] = index
            continue
        head = first[value]
        pair = HashArrays(*(array[[head, index]] for array in rows))
        i, _, _, _ = close_pairs(pair, pair, limits, upper=True)
        if len(i):
            yield head, index
