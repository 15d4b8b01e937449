"""Near-duplicate deduplication on perceptual hashes, at cluster scale.

Input element type: ``Fingerprint`` (no image bytes); fingerprints without a ``phash`` are left alone; optionally
the run's ``Sample`` records, whose images are read (``read_image``) only for crop and overlay candidates. Outputs:
``rejected`` (ledger rows, reason ``near_duplicate``, detail naming ``survivor_key``, ``survivor_source``, the pHash
``distance`` in bits, the ``colour_distance``, the ``cluster_id``, the ``method`` that matched (``phash`` or
``keypoints``) with its evidence (``inliers``; ``matched_key`` when the match was with another member on the way to
the survivor)) and ``clusters`` (``DuplicateCluster`` with each member's method and evidence, for the split stage
and the report). Side files: ``dedup/near_dedup.parquet`` (columns ``method`` and ``evidence`` included) and
``dedup/near_dedup.json``. Config section: ``near_dedup``. Metrics: ``near_dedup/clusters``,
``near_dedup/duplicates``, ``near_dedup/capped_buckets``, and those of ``transforms._keypoints``.

How:

1. **Candidates by banding.** The 64 pHash bits are cut into ``k + 1`` bands (``k = max_distance``). Two hashes
   within ``k`` bits differ in at most ``k`` bands, so they agree exactly on at least one (pigeonhole): grouping by
   ``(scope, band, band value)`` with a Beam ``GroupByKey`` finds every pair within ``k`` and never compares
   fingerprints that share no band. The scope (``scope`` fields) is part of the key, so nothing crosses scopes.
   A bucket entry is 16 bytes of member id, the pHash and the colour signature's length (46 bytes, where a whole
   member was 784), and a bucket only finds its *open* members: those with a pHash within ``k`` (or
   ``candidate_distance``) of another's, identical ones in a giant bucket. Most buckets have none.
2. **Verification** of the open members of a bucket, joined with their members by id (``JoinMembers``) and grouped
   again (``GroupOpen``, once for all the buckets that hold the same open members, as copies share most bands),
   vectorised: pHash Hamming distance <= ``k``; the optional second hash within ``second_max_distance``; the colour
   signature within ``max_colour_distance`` (see ``transforms.hashing``), so a product in another colour is never
   merged. Members outside the open ones are in no pair, so the edges are those of the whole bucket, in the same
   order (``tests/transforms/test_near_dedup.py`` checks it on random buckets).
3. **Giant buckets** (a band value shared by more than ``max_bucket`` fingerprints: blank or uniform images) are not
   compared pairwise: only identical hashes merge there (linear), and the bucket is reported under
   ``capped_buckets`` in ``dedup/near_dedup.json``.
4. **Crops and overlays** (``subwindow_max_distance``, off by default: it costs several times the stage's CPU, see
   below; 8 is the benchmarked setting): a crop moves the whole-image pHash by 10-30 bits, so
   two more candidate sources are bucketed the same way: the ``subwindow`` hashes (``transforms.hashing``: pHashes of
   windows anchored on ORB keypoints, which a crop keeps) in 4 bands of 16 bits, a pair sharing at least
   ``subwindow_min_windows`` windows within ``subwindow_max_distance`` bits being a candidate; and pairs within
   ``candidate_distance`` bits of whole-image pHash that the test of step 2 rejects. The hashes close two kinds of
   candidate: pairs they accept, and pairs of one geometry whose colour differs beyond overlay patches (a colour
   variant); a pair of different geometry is verified only when the colours of one signature are found in the other
   (``colour_contained``: a crop's cells average parts of its original; a crop of the product in another colour has
   colours the original lacks). Between two groups the hashes already joined, only the best-ranked two open pairs are
   verified. A candidate is accepted only by ``transforms._keypoints``: ORB matches under one RANSAC similarity
   transform (at least ``min_inliers``, spread beyond one sixteenth of the frame) and the colour of the overlap, so a
   colour variant stays and two patches of one texture stay. Keypoints are computed only for the images of open
   candidate pairs. The candidates are bounded per image, so that pairs, joins and keypoint work grow with the image
   count even where many photos share structure (one studio's shots, shapes on a smooth ground, where the pairs had
   grown with its square): in a window bucket each entry pairs only with its ``WINDOW_NEIGHBOURS`` nearest windows;
   each image keeps its strongest candidates (most shared windows, a pHash within ``candidate_distance`` counting as
   ``LOOSE_WINDOWS`` of them, then the nearest pHash, then the source), 4 x ``subwindow_candidates`` before the colour
   tests and ``subwindow_candidates`` open pairs after them, a pair staying when either image keeps it
   (``transforms._keypoints.KeepBestPerImage``).
5. **Clusters and survivors** (``transforms._duplicates``): connected components of the verified pairs; within a
   component, members with equal ``keep_distinct`` labels form a removal group that keeps its best member by
   ``survivor_policy`` (resolution, file size, metadata richness, CLIP score, then key).

Defaults ``max_distance = 8`` and ``max_colour_distance = 8``, chosen with ``benchmarks/bench_near_dedup.py`` (2,691
images: 299 real bases, product photos in every colour, banners, NEU steel, magnetic tiles, skimage photos, each with
8 transformed copies). At k = 8: pair precision 0.991, recall over the non-crop transforms 0.989 (JPEG, resize,
format, blur 1.000; contrast 0.997; brightness 0.990; overlay 0.936); 1 of 168 same-view colour-variant pairs merged
(light blue and white trousers); imagededup's pHash at its default threshold: precision 0.423, recall 0.996, 132 of
168 colour variants merged. k = 10 gains 0.2 points of recall (overlays on textures) for 0.7 points of precision;
k = 6 loses 0.6 points of recall. Crops beyond a few percent move pHash by 10-30 bits: out of reach of a global
perceptual hash (recall 0.19).

Crops and overlays, on the same benchmark with 5-30% crops per side and a logo copy added (``python
benchmarks/bench_near_dedup.py --per-source 6 --distances 8 --scale ""``: 2,030 images, 203 bases, every colour
variant): without the geometric path crop recall 0, logo 0.015, overall 0.771; with it
(``subwindow_max_distance = 8``, ``subwindow_candidates = 8``) crop 0.877, logo 0.970, overlay 0.995, brightness
0.966, overall 0.979 (0.991 without crops), at unchanged pair precision (0.979: the two colour-variant pairs the pHash
test itself merges, light grey-blue and white trousers 5.2 apart in colour, and every copy of each) and no texture,
steel-class or other-view pair merged; without the per-image bound (``subwindow_candidates`` very large) crop 0.882,
logo 0.985, overall 0.981 at twice the keypoint matches. With splits on in ``report_only`` mode, 25 of 203 true groups
still straddle two splits (169 without the path, 22 without the bound): every leak is a copy no test matched (a crop
whose
windows share nothing with its group's, a brightened product on white whose clipped background the colour fit cannot
explain, a steel surface too flat for windows), since the split stage links every cluster member, keypoint ones
included. Thresholds from the same images: ``min_inliers = 15`` (crops of 5-30%: 10th percentile 30 inliers; 600 random
pairs of bases: 99th percentile 57, pairs of one product in two colours up to 440, which the colour check decides),
windows within 8 bits (179 of 203 crops share one with their original or are within ``candidate_distance``; 186 with 80
windows an image, at 1.7 times the shuffle), ``candidate_distance = 10``, colour containment within 1.25
``max_colour_distance`` for 90% of the cells (every crop, overlay and logo copy passes at 0.93 or more; it removes
about 60% of window candidates). Cost, process CPU per image on the 2-core machine shared with other work: the
``subwindow`` hash adds 6.7 ms to normalise (5.0 for pHash and colour), and the stage's pipeline goes from 7.2 to 30.9
ms on the DirectRunner: 42.6 ms against 12.2 in all (3.5 times; 71.6 against 14.3, 5.0 times, before the per-image
bound: 2,417 pairs matched on keypoints instead of 5,546, most between different products of one studio shoot or
sharing a caption, which only the colour check tells apart, and 1,217 images featured). The target of the issue, at
most twice the pre-crop cost, is not met, which is why the path is off by default. Scale (``--scale-only --scale
2000,10000`` and ``--scale 100000``: synthetic fingerprints with 45 window hashes each, so the window buckets and
candidate joins run but no image is matched): before the per-image bound, 10,000 fingerprints in 48 s at 835 MB peak
RSS, 100,000 in 594 s at 7.0 GB (x10 fingerprints: time x12.5, memory x8.4) on the DirectRunner, every planted copy
found; the 100,000 run shared the 2 cores with the quality run above. With it, 2,000 in 13 s at 329 MB and 10,000 in 35
s at 749 MB (100,000 not rerun). Real photos that share structure, in a whole run: ``docs/scaling.md`` (2,000 and 8,000
distinct photos, x1.42 memory).
"""

import functools
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam import pvalue

from schemas import reasons
from schemas.config.near_dedup import NearDedupConfig
from schemas.records.dedup import Fingerprint
from transforms._duplicates import (
    CAPPED,
    ClusterDuplicates,
    Edge,
    Member,
    WriteClusters,
    field_values,
    forest_edges,
    survivor_rank,
)
from transforms._keypoints import VerifyCandidates, overlay_patch
from transforms.hashing import (
    COLOUR,
    PHASH,
    SUBWINDOW,
    colour_distance,
    colour_residuals,
    decode_colour,
    decode_colours,
    hash_int,
    popcount,
    window_values,
)

STAGE = "near_dedup"
METRIC = "phash_hamming"
HASH_BITS = 64
PHASH_METHOD = "phash"
CANDIDATES = "candidates"
WINDOW_BANDS = ((0, 16), (16, 16), (32, 16), (48, 16))
_BLOCK = 1024
# A crop's cells must find their colour in the original within this multiple of max_colour_distance (the colour of a
# cell of a crop is an average over a smaller area than a cell of its original), for this share of cells (the rest:
# overlays, edges).
CONTAINED_SLACK = 1.25
CONTAINED_SHARE = 0.9
_LIGHTNESS = 0.5
# Window pairs per entry of a window bucket, and the weight of a whole-image pHash within candidate_distance when an
# image's candidates are ranked (transforms._keypoints.VerifyCandidates keeps the best few per image).
WINDOW_NEIGHBOURS = 8
LOOSE_WINDOWS = 4


class NearDedupOutputs(NamedTuple):
    rejected: beam.PCollection
    clusters: beam.PCollection


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


class NearDeduplicate(beam.PTransform):
    """Cluster near-duplicate fingerprints and reject all but one survivor per removal group."""

    def __init__(
        self,
        config: NearDedupConfig,
        output: str | None = None,
        samples: beam.PCollection | None = None,
        earlier: str | None = None,
    ):
        super().__init__()
        self._config = config
        self._output = output
        self._samples = samples
        self._earlier = earlier

    def expand(self, fingerprints: beam.PCollection) -> NearDedupOutputs:
        config = self._config
        if not config.enabled:
            empty = fingerprints.pipeline | "NoRejections" >> beam.Create([])
            clusters = fingerprints.pipeline | "NoClusters" >> beam.Create([])
            return NearDedupOutputs(rejected=empty, clusters=clusters)
        limits = Limits(config.max_distance, config.second_max_distance if config.second_hash else None)
        limits = limits._replace(colour=config.max_colour_distance)
        geometric = config.subwindow_max_distance is not None
        loose = config.candidate_distance if geometric and self._samples is not None else None
        members = fingerprints | "Member" >> beam.FlatMap(near_member, config)
        opened = (
            members
            | "Bands" >> beam.FlatMap(band_entries, band_layout(config.max_distance))
            | "GroupBand" >> beam.GroupByKey()
            | "OpenBuckets"
            >> beam.ParDo(_OpenBucketFn(config.max_bucket, max(config.max_distance, loose or 0))).with_outputs(
                CAPPED, main="wanted"
            )
        )
        verified = (
            {"member": members | "MemberById" >> beam.Map(lambda m: (member_id(m.source), m)), "group": opened.wanted}
            | "JoinMembers" >> beam.CoGroupByKey()
            | "MembersByGroup" >> beam.FlatMapTuple(members_by_group)
            | "GroupOpen" >> beam.GroupByKey()
            | "Verify" >> beam.ParDo(_VerifyBucketFn(limits, loose)).with_outputs(CANDIDATES, main="edges")
        )
        edges, capped = verified.edges, opened[CAPPED]
        if geometric:
            windows = (
                fingerprints
                | "Windows" >> beam.FlatMap(window_entries, config)
                | "GroupWindow" >> beam.GroupByKey()
                | "PairWindows"
                >> beam.ParDo(
                    _PairWindowsFn(
                        config.subwindow_max_distance, config.max_bucket, config.max_distance, WINDOW_NEIGHBOURS
                    )
                ).with_outputs(CAPPED, main="pairs")
            )
            capped = (capped, windows[CAPPED]) | "AllCapped" >> beam.Flatten()
        if geometric and self._samples is not None:
            shared = (
                windows.pairs
                | "CountSharedWindows" >> beam.CombinePerKey(SharedWindows())
                | "EnoughWindows" >> beam.Filter(lambda counted: counted[1].windows >= config.subwindow_min_windows)
            )
            near_misses = verified[CANDIDATES] | "LooseEvidence" >> beam.MapTuple(
                lambda pair, distance: (pair, Evidence(loose=True, distance=distance))
            )
            matched = (
                (near_misses, shared)
                | "Candidates" >> beam.Flatten()
                | "CandidateEvidence" >> beam.CombinePerKey(merge_evidence)
                | "Keypoints"
                >> VerifyCandidates(
                    members,
                    self._samples,
                    functools.partial(worth_verifying, limits=limits),
                    verified.edges,
                    config.min_inliers,
                    config.keypoints,
                    config.max_colour_distance,
                    config.subwindow_candidates,
                )
            )
            edges = (edges, matched) | "AllEdges" >> beam.Flatten()
        decided = edges | "Cluster" >> ClusterDuplicates(
            STAGE, reasons.NEAR_DUPLICATE, METRIC, config.report_only, near_distance
        )
        if self._output is not None:
            _ = (decided.clusters, capped) | "WriteClusters" >> WriteClusters(self._output, STAGE, self._earlier)
        return NearDedupOutputs(rejected=decided.rejected, clusters=decided.clusters)


def near_member(fp: Fingerprint, config: NearDedupConfig) -> Iterator[Member]:
    """The light member of a fingerprint that has a pHash (none otherwise)."""
    if PHASH not in fp.hashes:
        return
    second = fp.hashes.get(config.second_hash) if config.second_hash else None
    yield Member(
        source=fp.source,
        key=fp.key,
        domain=fp.domain,
        scope=field_values(config.scope, fp.domain, fp.metadata),
        labels=field_values(config.keep_distinct, fp.domain, fp.metadata),
        rank=survivor_rank(
            config.survivor_policy,
            key=fp.key,
            source=fp.source,
            pixels=fp.pixels,
            file_size=fp.file_size,
            richness=fp.richness,
            scores=fp.scores,
            shipped=fp.shipped,
        ),
        shipped=fp.shipped,
        features=HashFeatures(
            hash_int(fp.hashes[PHASH]),
            hash_int(second) if second else None,
            colour_bytes(fp.hashes, config.max_colour_distance is not None),
        ),
    )


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


def band_entries(
    member: Member, layout: Sequence[tuple[int, int]]
) -> Iterator[tuple[tuple[str, int, int], tuple[bytes, bytes, int]]]:
    """``((scope, band, band value), (member id, pHash, colour signature length))`` for every band: what a bucket
    needs to find its open pairs (the pHash as 8 bytes: a 64-bit value does not fit Beam's signed integer coder)."""
    entry = (member_id(member.source), member.features.phash.to_bytes(8, "big"), colour_length(member.features.colour))
    for band, value in enumerate(band_values(member.features.phash, layout)):
        yield (member.scope, band, value), entry


def member_id(source: str) -> bytes:
    """A member's id in buckets: 16 bytes of a hash of its source (unique per item), shorter than most sources."""
    return hashlib.blake2b(source.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def colour_length(colour: bytes | str | None) -> int:
    """Bytes of a colour signature (raw or hex), 0 for none."""
    if not colour:
        return 0
    return len(colour) // 2 if isinstance(colour, str) else len(colour)


def colour_size(lengths: Sequence[int]) -> int | None:
    """The signature size a bucket compares on colour (``HashArrays.of``): the most common of its non-empty
    signatures, 3 when none; ``None`` when two sizes tie, as the first in source order wins then."""
    counts = Counter(length for length in lengths if length).most_common(2)
    if not counts:
        return 3
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def open_members(phashes: np.ndarray, capped: bool, reach: int) -> np.ndarray:
    """Which members of a bucket can be in a pair its verification accepts (or leaves to keypoints): a pHash
    within ``reach`` bits of another member's, or equal to one in a capped bucket."""
    if capped:
        _, inverse, counts = np.unique(phashes, return_inverse=True, return_counts=True)
        return counts[inverse] > 1
    found = np.zeros(len(phashes), dtype=bool)
    for start in range(0, len(phashes), _BLOCK):
        close = popcount(phashes[start : start + _BLOCK, None] ^ phashes[None, :]) <= reach
        close[np.arange(len(close)), np.arange(start, start + len(close))] = False
        found[start : start + _BLOCK] |= close.any(1)
    return found


def members_by_group(_: bytes, joined: dict) -> Iterator[tuple[tuple, tuple[int, Member]]]:
    """Each member joined to the open groups that want it, with how many buckets hold that same group."""
    wanted = Counter(joined["group"])
    for member in joined["member"]:
        for group, count in wanted.items():
            yield group, (count, member)


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
    for start in range(0, len(values), _BLOCK):
        distances = popcount(values[start : start + _BLOCK, None] ^ values[None, :]).astype(np.int64)
        close = distances <= max_distance
        close &= popcount(phashes[start : start + _BLOCK, None] ^ phashes[None, :]) > phash_distance
        close &= sources[start : start + _BLOCK, None] != sources[None, :]
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
    """Whether a candidate pair is left open by the whole-image test, so keypoints must decide it.

    Closed: pairs the test accepts, and pairs of the same geometry (pHash within ``limits.distance``) whose colour
    differs beyond overlay patches (``transforms._keypoints.overlay_patch``): a colour variant, which keypoints
    would only match to reject on colour again.
    """
    same_geometry = (a.features.phash ^ b.features.phash).bit_count() <= limits.distance
    if not same_geometry and (limits.colour is None or not (a.features.colour and b.features.colour)):
        return True
    pair = HashArrays.of([a.features, b.features])
    if not pair.has_colour.all():
        return not (same_geometry and len(close_pairs(pair, pair, limits, upper=True)[0]))
    if not same_geometry:
        return colour_contained(pair.colour[0], pair.colour[1], CONTAINED_SLACK * limits.colour)
    if limits.colour is None:
        return not len(close_pairs(pair, pair, limits, upper=True)[0])
    # Same geometry: colour within the limit is a pair the test accepts or, failing the second hash, one no overlay
    # explains either; the residuals are computed once for both questions.
    residuals = colour_residuals(pair.colour[0], pair.colour[1])
    if residuals.max() <= limits.colour:
        return False
    grid = round(len(residuals) ** 0.5)
    return grid * grid == len(residuals) and overlay_patch(residuals.reshape(grid, grid), limits.colour)


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
            colour=decode_colours([raw if ok else blank for raw, ok in zip(raws, has_colour, strict=True)]),
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
    for start in range(0, len(rows.phash), _BLOCK):
        distances = popcount(rows.phash[start : start + _BLOCK, None] ^ cols.phash[None, :])
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
        for start in range(0, len(i), _BLOCK):
            part = slice(start, start + _BLOCK)
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


def bucket_pairs(members: Sequence[Member], limits: Limits, max_bucket: int) -> Iterator[tuple[int, int]]:
    """Verified pairs of one bucket, as indices into ``members``."""
    return verified_pairs(members, limits, len(members) > max_bucket)


def verified_pairs(
    members: Sequence[Member], limits: Limits, capped: bool, size: int | None = None
) -> Iterator[tuple[int, int]]:
    """Verified pairs of the open members of a bucket (in source order), as indices into ``members``: pairwise, or
    only identical pHashes in a ``capped`` bucket. ``size``: the colour signature size of the whole bucket."""
    arrays = HashArrays.of([member.features for member in members], size)
    if capped:
        yield from identical_pairs(arrays, limits)
        return
    i, j, _, _ = close_pairs(arrays, arrays, limits, upper=True)
    yield from zip(i.tolist(), j.tolist(), strict=True)


def loose_pairs(
    members: Sequence[Member], limits: Limits, distance: int, size: int | None = None
) -> Iterator[tuple[tuple[str, str], int]]:
    """Source pairs within ``distance`` pHash bits that ``limits`` rejects (candidates for keypoint verification),
    with their distance."""
    arrays = HashArrays.of([member.features for member in members], size)
    accepted = set(zip(*close_pairs(arrays, arrays, limits, upper=True)[:2], strict=True))
    i, j, d, _ = close_pairs(arrays, arrays, Limits(distance), upper=True)
    for pair, bits in zip(zip(i.tolist(), j.tolist(), strict=True), d.tolist(), strict=True):
        if pair not in accepted:
            a, b = sorted((members[pair[0]].source, members[pair[1]].source))
            yield (a, b), bits


def open_group(
    entries: Sequence[tuple[bytes, bytes, int]], capped: bool, reach: int
) -> tuple[tuple[bytes, bool, int | None], list[bytes]] | None:
    """The open members of a band bucket (entries of ``band_entries``), or ``None`` when no pair can be open.

    Returns:
        The group ``(digest of the member ids, capped, colour size)`` and the sorted member ids. The colour size is
        the whole bucket's (``colour_size``); when two sizes tie, every member is open, so that the group knows the
        source order that decides the tie.
    """
    phashes = np.frombuffer(b"".join(entry[1] for entry in entries), dtype=">u8").astype(np.uint64)
    wanted = open_members(phashes, capped, reach)
    if not wanted.any():
        return None
    size = colour_size([entry[2] for entry in entries])
    if size is None:
        wanted[:] = True
    ids = sorted(entry[0] for entry, open_ in zip(entries, wanted.tolist(), strict=True) if open_)
    return (hashlib.blake2b(b"".join(ids), digest_size=16).digest(), capped, size), ids


def group_edges(
    members: Iterable[Member], limits: Limits, capped: bool, size: int | None, loose: int | None = None
) -> tuple[list[Edge], list[tuple[tuple[str, str], int]]]:
    """The forest edges of an open group and its keypoint candidates (``loose`` set, not ``capped``; each with its
    pHash distance): the same as those of the whole bucket it came from, as members outside it are in no pair."""
    members = sorted(members, key=lambda member: member.source)
    edges = list(forest_edges(members, verified_pairs(members, limits, capped, size), PHASH_METHOD))
    candidates = list(loose_pairs(members, limits, loose, size)) if loose is not None and not capped else []
    return edges, candidates


def near_distance(member: Member, survivor: Member) -> tuple[float, dict]:
    """pHash bits between a member and its survivor, with the colour distance for the ledger detail."""
    a, b = member.features, survivor.features
    bits = int(a.phash ^ b.phash).bit_count()
    colour = None
    if a.colour and b.colour:
        colour = round(float(colour_distance(decode_colour(a.colour), decode_colour(b.colour))), 2)
    return float(bits), {"distance": bits, "colour_distance": colour}


class _OpenBucketFn(beam.DoFn):
    """A band bucket to the groups of its open members: ``(member id, (group, capped, colour size))`` for each.

    A group is the set of open members (those that can be in a pair, ``open_members``) in source order: they alone
    make the bucket's verified pairs, in the same order as among all its members. Buckets holding the same group
    (a pair of copies shares most bands) are verified once, the group's edges emitted once for each of them.
    """

    def __init__(self, max_bucket: int, reach: int):
        self._max_bucket = max_bucket
        self._reach = reach
        self._capped = beam.metrics.Metrics.counter(STAGE, "capped_buckets")

    def process(self, element: tuple[tuple[str, int, int], Iterable[tuple[bytes, bytes, int]]]) -> Iterator:
        (scope, band, value), entries = element
        entries = list(entries)
        if len(entries) < 2:
            return
        capped = len(entries) > self._max_bucket
        if capped:
            self._capped.inc()
            yield pvalue.TaggedOutput(
                CAPPED, {"scope": scope, "band": band, "value": value, "size": len(entries), "compared": "identical"}
            )
        opened = open_group(entries, capped, self._reach)
        if opened is not None:
            group, ids = opened
            for member in ids:
                yield member, group


class _VerifyBucketFn(beam.DoFn):
    def __init__(self, limits: Limits, loose: int | None = None):
        self._limits = limits
        self._loose = loose

    def process(self, element: tuple[tuple, Iterable[tuple[int, Member]]]) -> Iterator:
        (_, capped, size), entries = element
        entries = list(entries)
        members, buckets = [member for _, member in entries], entries[0][0]
        edges, loose = group_edges(members, self._limits, capped, size, self._loose)
        for _ in range(buckets):
            yield from edges
            for pair in loose:
                yield pvalue.TaggedOutput(CANDIDATES, pair)


class _PairWindowsFn(beam.DoFn):
    def __init__(self, max_distance: int, max_bucket: int, phash_distance: int, neighbours: int | None = None):
        self._max_distance = max_distance
        self._max_bucket = max_bucket
        self._phash_distance = phash_distance
        self._neighbours = neighbours
        self._capped = beam.metrics.Metrics.counter(STAGE, "capped_buckets")

    def process(self, element: tuple[tuple[str, int, int], Iterable[tuple[str, str, str]]]) -> Iterator:
        (scope, band, value), entries = element
        entries = sorted(entries)
        if len({entry[0] for entry in entries}) < 2:
            return
        if len(entries) > self._max_bucket:
            self._capped.inc()
            report = {"scope": scope, "band": f"subwindow-{band}", "value": value, "size": len(entries)}
            yield pvalue.TaggedOutput(CAPPED, {**report, "compared": "none"})
            return
        yield from window_pairs(entries, self._max_distance, self._phash_distance, self._neighbours)
