"""Crop and overlay candidates of near dedup: window hashes in buckets, the evidence of a pair, the colour tests.

A crop moves the whole-image pHash by 10-30 bits, so ``transforms.near_dedup`` (with ``subwindow_max_distance`` set)
finds crop and overlay candidates another way: the ``subwindow`` hashes (``transforms.hashing``: pHashes of windows
anchored on difference-of-Gaussian blobs, which a crop keeps) are bucketed in ``WINDOW_BANDS`` (``window_entries``),
and within a bucket each entry pairs with its ``WINDOW_NEIGHBOURS`` nearest windows of other images (``window_pairs``).
A pair's ``Evidence`` is the windows it shares (``SharedWindows``) and whether its whole-image pHashes are within
``candidate_distance``; ``worth_verifying`` leaves open only the pairs that keypoints must decide, and
``colour_contained`` lets a pair of different geometry through only when one signature's colours are found in the
other's.

On ``benchmarks/bench_near_dedup.py`` at its default size: pair precision 0.994, crop recall 0.943, 17 of 293 true
groups in two splits (241 without the path), colour variants merged 1 of 168, near-dup CPU 3.7 times the stage
without the path (the reason it is off by default). How each threshold here and in ``transforms.hashing`` and
``transforms._keypoints`` was chosen, the cost profile and the 100,000-image scale run: ``docs/crops.md``."""

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np

from schemas.config.near_dedup import NearDedupConfig
from schemas.records.dedup import Fingerprint
from transforms._dedup_members import Member, field_values
from transforms._hash_match import BLOCK, HASH_BITS, HashArrays, Limits, band_values
from transforms._keypoints import MAX_PATCH, overlay_patch
from transforms.hashing import MAX_WINDOWS, PHASH, SUBWINDOW, colour_residuals, hash_int, popcount, window_values

WINDOW_BANDS = ((0, 16), (16, 16), (32, 16), (48, 16))
# A crop's cells must find their colour in the original within this multiple of max_colour_distance (the colour of a
# cell of a crop is an average over a smaller area than a cell of its original), for this share of cells (the rest:
# overlays, edges).
CONTAINED_SLACK = 1.25
CONTAINED_SHARE = 0.9
_LIGHTNESS = 0.5
# Window pairs per entry of a window bucket, and the weight of a whole-image pHash within candidate_distance when an
# image's candidates are ranked (transforms._verify_candidates.VerifyCandidates keeps the best few per image): as
# much as every window an image can have, so such a pair (one geometry, colour off in an edge patch only: a logo)
# ranks before the window pairs of other shots of one studio, which can share dozens of windows.
WINDOW_NEIGHBOURS = 8
LOOSE_WINDOWS = MAX_WINDOWS


def window_entries(
    fp: Fingerprint, config: NearDedupConfig
) -> Iterator[tuple[tuple[str, int, int], tuple[str, str, str]]]:
    """``((scope, band, band value), (source, window hash, pHash))`` for every 16-bit band of every window hash (hex:
    a 64-bit value does not fit Beam's signed integer coder)."""
    if PHASH not in fp.hashes or not fp.hashes.get(SUBWINDOW):
        return
    scope = field_values(config.scope, fp.domain, fp.metadata)
    for window in sorted(set(window_values(fp.hashes[SUBWINDOW]))):
        for band, value in enumerate(band_values(window, WINDOW_BANDS)):
            yield (scope, band, value), (fp.source, f"{window:016x}", fp.hashes[PHASH])


def window_pairs(
    entries: Sequence[tuple[str, str, str]], max_distance: int, phash_distance: int, neighbours: int | None = None
) -> Iterator[tuple[tuple[str, str], tuple[str, int]]]:
    """Source pairs (smaller first) of a window bucket whose window hashes are within ``max_distance`` bits, each
    with the smaller source's window (so a pair can be counted once per window it shares, whatever the band) and
    the pair's whole-image pHash distance.

    Pairs whose whole-image pHashes are within ``phash_distance`` bits are left out: they share a pHash band, where
    the whole-image test and its candidates already decide them (most pairs of copies of one picture). With
    ``neighbours``, each entry pairs only with its ``neighbours`` nearest windows of other sources (nearest first,
    then by source), a pair being kept when either side picks it: a window that many images share by chance (the
    corner of a shape on a smooth ground) makes at most ``neighbours`` pairs per entry instead of a pair per two
    entries, so the pairs grow with the number of windows, not its square.
    """
    ordered = sorted(entries)
    values = np.array([hash_int(window) for _, window, _ in ordered], dtype=np.uint64)
    phashes = np.array([hash_int(phash) for _, _, phash in ordered], dtype=np.uint64)
    sources = np.array([source for source, _, _ in ordered])
    found: set[tuple[int, int]] = set()
    for start in range(0, len(values), BLOCK):
        distances = popcount(values[start : start + BLOCK, None] ^ values[None, :]).astype(np.int64)
        close = distances <= max_distance
        close &= popcount(phashes[start : start + BLOCK, None] ^ phashes[None, :]) > phash_distance
        close &= sources[start : start + BLOCK, None] != sources[None, :]
        if neighbours is not None and len(values) > neighbours:
            # Nearest first, ties by position (entries are sorted by source): a stable choice.
            order = np.argsort(np.where(close, distances, HASH_BITS + 1), axis=1, kind="stable")[:, :neighbours]
            picked = np.zeros_like(close)
            np.put_along_axis(picked, order, True, axis=1)
            close &= picked
        for i, j in zip(*np.nonzero(close), strict=True):
            found.add((min(start + i, j), max(start + i, j)))
    for i, j in sorted(found):
        a, b = ordered[i], ordered[j]
        distance = int(phashes[i] ^ phashes[j]).bit_count()
        yield ((a[0], b[0]), (a[1], distance)) if a[0] < b[0] else ((b[0], a[0]), (b[1], distance))


class Evidence(NamedTuple):
    """Why a pair is a crop or overlay candidate: the windows it shares, whether its whole-image pHashes are within
    ``candidate_distance`` (``loose``), and their distance in bits."""

    windows: int = 0
    loose: bool = False
    distance: int = HASH_BITS

    def score(self) -> int:
        """Strength as a candidate: windows shared, a pHash this close counting as ``LOOSE_WINDOWS`` of them."""
        return self.windows + (LOOSE_WINDOWS if self.loose else 0)


def merge_evidence(found: Iterable[Evidence]) -> Evidence:
    """One pair's evidence from both candidate sources."""
    found = list(found)
    return Evidence(
        max((e.windows for e in found), default=0),
        any(e.loose for e in found),
        min((e.distance for e in found), default=HASH_BITS),
    )


class SharedWindows(beam.CombineFn):
    """The ``Evidence`` of a window pair: how many distinct windows it shares (from ``(window, pHash distance)``)."""

    def create_accumulator(self) -> tuple[set, int]:
        return set(), HASH_BITS

    def add_input(self, accumulator: tuple[set, int], value: tuple[str, int]) -> tuple[set, int]:
        seen, distance = accumulator
        seen.add(value[0])
        return seen, min(distance, value[1])

    def merge_accumulators(self, accumulators: Iterable[tuple[set, int]]) -> tuple[set, int]:
        accumulators = list(accumulators)
        return set().union(*(seen for seen, _ in accumulators)), min(distance for _, distance in accumulators)

    def extract_output(self, accumulator: tuple[set, int]) -> Evidence:
        return Evidence(windows=len(accumulator[0]), distance=accumulator[1])


def worth_verifying(a: Member, b: Member, limits: Limits) -> bool:
    """Whether a candidate pair is left open by the whole-image test, so keypoints must decide it (``open_pairs``
    for one pair)."""
    return bool(worth_verifying_with([a], b, limits)[0])


def worth_verifying_with(firsts: Sequence[Member], second: Member, limits: Limits) -> np.ndarray:
    """``worth_verifying`` of each of ``firsts`` paired with ``second``, in one vectorised call."""
    arrays = HashArrays.of([member.features for member in (*firsts, second)])
    return open_pairs(arrays, np.arange(len(firsts)), np.full(len(firsts), len(firsts)), limits)


def open_pairs(arrays: HashArrays, i: np.ndarray, j: np.ndarray, limits: Limits) -> np.ndarray:
    """Which pairs ``(i[n], j[n])`` of ``arrays`` the whole-image test leaves open, so keypoints must decide them.

    Closed: pairs the test accepts, and pairs of the same geometry (pHash within ``limits.distance``) whose colour
    differs beyond overlay patches (``transforms._keypoints.overlay_patch``): a colour variant, which keypoints
    would only match to reject on colour again. A pair of different geometry stays open when it has no colour to
    test, or when one signature's colours are found in the other (``colour_contained``). Vectorised over the pairs
    in blocks of ``BLOCK`` (a bucket of one product in many colours holds thousands of pairs).
    """
    i, j = np.asarray(i, np.int64), np.asarray(j, np.int64)
    same = popcount(arrays.phash[i] ^ arrays.phash[j]) <= limits.distance
    coloured = arrays.has_colour[i] & arrays.has_colour[j] if limits.colour is not None else np.zeros(len(i), bool)
    result = ~same
    plain = same & ~coloured
    if limits.second is not None and plain.any():
        # Same geometry, no colour compared: open only when the second hash rejects it.
        both = arrays.has_second[i[plain]] & arrays.has_second[j[plain]]
        result[plain] = both & (popcount(arrays.second[i[plain]] ^ arrays.second[j[plain]]) > limits.second)
    for index in np.flatnonzero(~same & coloured):
        result[index] = colour_contained(
            arrays.colour[i[index]], arrays.colour[j[index]], CONTAINED_SLACK * limits.colour
        )
    variants = np.flatnonzero(same & coloured)
    for start in range(0, len(variants), BLOCK):
        block = variants[start : start + BLOCK]
        residuals = colour_residuals(arrays.colour[i[block]], arrays.colour[j[block]])
        # Colour within the limit is a pair the test accepts or, failing the second hash, one no overlay explains
        # either.
        result[block] = overlay_explained(residuals, limits.colour)
    return result


def overlay_explained(residuals: np.ndarray, limit: float) -> np.ndarray:
    """For each row of per-cell colour differences ``(n, cells)``, whether it differs beyond ``limit`` and only in
    overlay patches (``transforms._keypoints.overlay_patch``): only cells near the frame's edge can be one."""
    explained = (residuals.max(-1) > limit) & _near_edge(residuals, limit)
    grid = round(residuals.shape[-1] ** 0.5)
    square = grid * grid == residuals.shape[-1]
    for row in np.flatnonzero(explained):
        explained[row] = square and overlay_patch(residuals[row].reshape(grid, grid), limit)
    return explained


def _near_edge(residuals: np.ndarray, limit: float) -> np.ndarray:
    """Whether every cell beyond ``limit`` lies within ``MAX_PATCH`` cells of the frame's edge, which each cell of an
    overlay patch does (a necessary condition of ``overlay_patch``, tested for many pairs at once)."""
    grid = round(residuals.shape[-1] ** 0.5)
    if grid * grid != residuals.shape[-1]:
        return np.ones(len(residuals), bool)
    index = np.arange(grid)
    depth = np.minimum.outer(np.minimum(index, grid - 1 - index), np.minimum(index, grid - 1 - index)).reshape(-1)
    return ~((residuals > limit) & (depth >= MAX_PATCH)).any(-1)


def colour_contained(x: np.ndarray, y: np.ndarray, limit: float) -> bool:
    """Whether the colours of one signature are found in the other: at least ``CONTAINED_SHARE`` of the cells of
    ``x`` have a cell of ``y`` within ``limit`` (lightness at the signature's half weight), or the other way round.

    Every cell of a crop averages a part of its original, so its colour is one the original's cells have (give or
    take the blending at edges); an overlay changes the few cells it covers. A crop of a product in another colour
    has the product's cells in colours the original lacks, so it never reaches keypoint matching.
    """
    weight = np.array([_LIGHTNESS, 1.0, 1.0], np.float32)
    x, y = x * weight, y * weight
    squared = (x * x).sum(-1)[:, None] + (y * y).sum(-1)[None, :] - 2.0 * (x @ y.T)
    within = squared <= limit * limit
    return bool(max(within.any(1).mean(), within.any(0).mean()) >= CONTAINED_SHARE)
