"""Crop and overlay candidates of near dedup: window hashes in buckets, the evidence of a pair, the colour tests.

A crop moves the whole-image pHash by 10-30 bits, so ``transforms.near_dedup`` (with ``subwindow_max_distance`` set)
finds crop and overlay candidates another way: the ``subwindow`` hashes (``transforms.hashing``: pHashes of windows
anchored on difference-of-Gaussian blobs, which a crop keeps) are bucketed in ``WINDOW_BANDS`` (``window_entries``),
and within a bucket each entry pairs with its ``WINDOW_NEIGHBOURS`` nearest windows of other images (``window_pairs``).
A pair's ``Evidence`` is the windows it shares (``SharedWindows``) and whether its whole-image pHashes are within
``candidate_distance``; ``worth_verifying`` leaves open only the pairs that keypoints must decide, and
``colour_contained`` lets a pair of different geometry through only when one signature's colours are found in the
other's.

Windows anchored on difference-of-Gaussian blobs instead of ORB corners (``transforms.hashing``), on the benchmark at
its default size (``python benchmarks/bench_near_dedup.py --distances 8 --scale ""``: 2,990 images, 299 bases; the
magnetic tiles shot at several exposures and the overlapping NEU windows counted as one object each, see
``SAME_OBJECT`` there), ORB then blobs, one run each: crop recall 0.826 -> 0.910, recall 0.974 -> 0.983 (0.992 without
crops both times), pair precision 0.995 -> 0.994 (the crops of the black and the orange wsh10 shorts matched each
other, 20 inliers: in both the liner, the only part in which the pairs differ, runs along the top edge, where the
colour test allows 4 overlay cells), true groups in two splits 36 -> 21 of 294, CPU per image 43.8 -> 42.2 ms against
13.5 and 13.6 without the path (3.25 -> 3.11 times: the hash 8.2 -> 8.8 ms, the stage's pipeline 30.2 -> 28.0 ms, fewer
and more distinctive windows making fewer candidates; the second run shared the machine with a CI run, which process
CPU time mostly ignores). ``min_inliers`` 15 -> 10 on the same benchmark (its ``--cache``, one pipeline run per
value): crop recall 0.910 -> 0.933, true groups in two splits 21 -> 17 of 294, pair precision 0.9939 and the hard
negatives (colour variants 1 of 168, other views 0 of 122, steel classes 0 of 130, texture crops 0 of 3) unchanged,
stage CPU unchanged within noise (12: 0.926 and 18 leaks; 8: 0.946 and 14; 6: 0.946 and 13). 10 and not 8: with
``min_inliers = 4``, the only pair of distinct images that keypoints accepted beyond the colour variants of a product
was two patches of scikit-image's brick wall at 750 keypoints, with 8 inliers (their groups merged: precision 0.987);
none at 500 or 1000. ``keypoints = 1000`` (with 8) would add 2 crops and remove 4 more leaks for a third more stage
CPU. A shorter side of at least 64 pixels for the window hashes (``transforms.hashing``; a 1280x200 banner had been
hashed at 128x20, too thin for any window), the benchmark's cache built again: crop recall 0.933 -> 0.943, true groups
in two splits 17 of 293, pair precision 0.9939 and the hard negatives unchanged, once the two "performance" banners
are counted as one object (the crop path then matched them: they are windows of one photo, see ``SAME_OBJECT``); the
hash's time unchanged (10.2 against 10.5 ms an image, interleaved in one process). The figures below were measured
with ORB anchors.

Crops and overlays, on the benchmark of ``transforms.near_dedup`` with 5-30% crops per side and a logo copy added
(``python benchmarks/bench_near_dedup.py --per-source 6 --distances 8 --scale ""``: 2,030 images, 203 bases, every
colour variant): without the geometric path crop recall 0, logo 0.015, overall 0.771; with it (``subwindow_max_distance
= 8``, ``subwindow_candidates = 8``) crop 0.882, logo 0.985, overlay 0.995, brightness 0.966, overall 0.981 (0.993
without crops), at pair precision 0.9899 (8,914 pairs; 0.979 before removal groups kept colour variants apart,
``transforms._near_buckets.colour_variant``: royal-blue and purple jackets 8.7 apart were joined through copies of
each; the 90 false pairs left are the one colour-variant pair the pHash test itself merges, light grey-blue and white
trousers 5.4 apart, and every copy of each) and no texture, steel-class or other-view pair merged. The per-image bound
once cost recall (crop 0.877, logo 0.970, 25 leaks below): a logo copy's pHash pairs ranked below the window pairs of
other shots of one studio, and the colour variants of its product filled the rest; pHash pairs now rank first and
colour variants are no candidates (``transforms._near_buckets.loose_pairs``), which gives the recall measured without
the bound. With splits on in ``report_only`` mode, 22 of 203 true groups still straddle two splits (169 without the
path): every leak is a copy no test matched (a crop whose windows share nothing with its group's: 24 of 203 crops, 17
of which keypoints would match if they were a candidate; a brightened product on white whose clipped background the
colour fit cannot explain; a steel surface too flat for keypoints), since the split stage links every cluster member,
keypoint ones included. Thresholds then, from the same images: ``min_inliers = 15`` (crops of 5-30%: 10th percentile 30
inliers; 600 random pairs of bases: 99th percentile 57, pairs of one product in two colours up to 440, which the colour
check decides), windows within 8 bits (179 of 203 crops share one with their original or are within
``candidate_distance``; 186 with 80 windows an image, at 1.7 times the shuffle), ``candidate_distance = 10``, colour
containment within 1.25 ``max_colour_distance`` for 90% of the cells (every crop, overlay and logo copy passes at 0.93
or more; it removes about 60% of window candidates). Cost, process CPU per image on the 2-core machine shared with
other work: the ``subwindow`` hash adds 6.7 ms to normalise (5.0 for pHash and colour), and the stage's pipeline goes
from 7.2 to 30.9 ms on the DirectRunner: 42.6 ms against 12.2 in all (3.5 times; 71.6 against 14.3, 5.0 times, before
the per-image bound: 2,417 pairs matched on keypoints instead of 5,546, most between different products of one studio
shoot or sharing a caption, which only the colour check tells apart, and 1,217 images featured). On another machine
(AVX-512), quiet, the same benchmark measured 9.9 + 13.2 ms of hashes and 13.5 against 84.9 ms of pipeline: 23.4
against 108.0 ms, 4.6 times. A profile showed the colour tests of loose pHash pairs (one ``colour_residuals`` call per
pair, in buckets holding one product in many colours) and the compressed pickling of the same members again and again
as the largest shares; with the tests vectorised per group (``open_pairs``), each member packed once and unpacked once
while in use, and a group's edges emitted once: 11.2 against 51.4 ms of pipeline, 21.1 against 74.4 ms in all, 3.5
times, with the same pairs. What is left, per image in a profile (cProfile, which inflates every share): keypoint
features 11 ms, matching 10, the hash tests of buckets and candidates 12 (some of them the pre-crop path's own), window
pairing 4, and Beam's handling of about 185 window entries and 150 window pairs. Later, on a 2-vCPU AMD EPYC: 11.5
against 37.6 ms in all; with the colour residuals fitted channel-first, both directions sharing their sums
(``transforms.hashing``), 8.6 against 34.8 (pipeline 4.1 and 23.7), 4.0 times, since the pre-crop path gained most. The
target of the issue, at most twice the pre-crop cost, is not met, which is why the path is off by default. Scale
(``--scale-only --scale 2000,10000`` and ``--scale 100000``: synthetic fingerprints with 45 window hashes each, so the
window buckets and candidate joins run but no image is matched): before the per-image bound, 10,000 fingerprints in 48
s at 835 MB peak RSS, 100,000 in 594 s at 7.0 GB (x10 fingerprints: time x12.5, memory x8.4) on the DirectRunner, every
planted copy found; the 100,000 run shared the 2 cores with a quality benchmark run. With it, 2,000 in 13 s at 329 MB
and 10,000 in 35 s at 749 MB; 100,000 in 324 s at 4,309 MB (280 s at 4,322 MB on a quieter machine), every planted copy
removed (10,000; ``--scale-only --scale 100000 --json F``). Real photos that share structure, in a whole run:
``docs/scaling.md`` (2,000 and 8,000 distinct photos, x1.42 memory)."""

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
