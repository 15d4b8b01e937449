"""Near-duplicate deduplication on perceptual hashes, at cluster scale.

Input element type: ``Fingerprint`` (no image bytes); fingerprints without a ``phash`` are left alone; optionally
the run's ``Sample`` records, whose images are read (``read_image``) only for crop and overlay candidates. Outputs:
``rejected`` (ledger rows, reason ``near_duplicate``, detail naming ``survivor_key``, ``survivor_source``, the pHash
``distance`` in bits, the ``colour_distance``, the ``cluster_id``, the ``method`` that matched (``phash`` or
``keypoints``) with its evidence (``inliers``; ``matched_key`` when the match was with another member on the way to
the survivor)), ``clusters`` (``DuplicateCluster`` with each member's method and evidence, for the split stage
and the report) and ``related`` (key pairs of one picture that the colour test keeps apart, both kept: for the split
stage, which puts them in one group). Side files: ``dedup/near_dedup.parquet`` (columns ``method`` and ``evidence``
included) and ``dedup/near_dedup.json``. Config section: ``near_dedup``. Metrics: ``near_dedup/clusters``,
``near_dedup/duplicates``, ``near_dedup/capped_buckets``, ``near_dedup/related_pairs``, and those of
``transforms._verify_candidates``.

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
   merged; such a pair within ``related_max_distance`` bits is ``related`` instead
   (``transforms._near_buckets.related_pairs``), so that the split keeps the two colourways, or a saturated product
   and its brightened copy, on one side. Members outside the open ones
   are in no pair, so the edges are those of the whole bucket, in the same order
   (``tests/transforms/test_near_buckets.py`` checks it on random buckets).
3. **Giant buckets** (a band value shared by more than ``max_bucket`` fingerprints: blank or uniform images) are not
   compared pairwise: only identical hashes merge there (linear), and the bucket is reported under
   ``capped_buckets`` in ``dedup/near_dedup.json``.
4. **Crops and overlays** (``subwindow_max_distance``, off by default: it costs several times the stage's CPU, see
   below; 8 is the benchmarked setting): a crop moves the whole-image pHash by 10-30 bits, so two more candidate
   sources are bucketed the same way: the ``subwindow`` hashes (``transforms.hashing``: pHashes of windows anchored on
   difference-of-Gaussian blobs, which a crop keeps) in 4 bands of 16 bits, a pair sharing at least
   ``subwindow_min_windows`` windows within ``subwindow_max_distance`` bits being a candidate; and pairs within
   ``candidate_distance`` bits of whole-image pHash that the test of step 2 rejects. The hashes close two kinds of
   candidate: pairs they accept, and pairs of one geometry whose colour differs beyond overlay patches (a colour
   variant; such pairs are left out of the pHash candidates where the bucket is verified, so that a product shot in
   many colours does not fill an image's bound below with them); a pair of different geometry is verified only when the
   colours of one signature are found in the other (``colour_contained``: a crop's cells average parts of its original;
   a crop of the product in another colour has colours the original lacks). Between two groups the hashes already
   joined, only the best-ranked two open pairs are verified. A candidate is accepted only by ``transforms._keypoints``:
   ORB matches under one RANSAC similarity transform (at least ``min_inliers``, spread beyond one sixteenth of the
   frame) and the colour of the overlap, so a colour variant stays and two patches of one texture stay. Keypoints are
   computed only for the images of open candidate pairs. The candidates are bounded per image, so that pairs, joins and
   keypoint work grow with the image count even where many photos share structure (one studio's shots, shapes on a
   smooth ground, where the pairs had grown with its square): in a window bucket each entry pairs only with its
   ``WINDOW_NEIGHBOURS`` nearest windows; each image keeps its strongest candidates (most shared windows, a pHash
   within ``candidate_distance`` counting as ``LOOSE_WINDOWS`` of them, as many as an image can have, so that a logo
   copy ranks before the window pairs of other shots of one studio; then the nearest pHash, then the source), 4 x
   ``subwindow_candidates`` before the colour tests and ``subwindow_candidates`` open pairs after them, a pair staying
   when either image keeps it (``transforms._best_per_image.KeepBestPerImage``).
5. **Clusters and survivors** (``transforms._duplicates``): connected components of the verified pairs; within a
   component, members with equal ``keep_distinct`` labels form a removal group that keeps its best member by
   ``survivor_policy`` (resolution, file size, metadata richness, CLIP score, then key), and every member that is a
   colour variant of each survivor before it (``transforms._near_buckets.colour_variant``): a chain of copies, each
   within the colour limit of the next, does not remove one colourway for another.

Defaults ``max_distance = 8`` and ``max_colour_distance = 8``, chosen with ``benchmarks/bench_near_dedup.py`` (2,691
images: 299 real bases, product photos in every colour, banners, NEU steel, magnetic tiles, skimage photos, each with
8 transformed copies). At k = 8: pair precision 0.991, recall over the non-crop transforms 0.989 (JPEG, resize,
format, blur 1.000; contrast 0.997; brightness 0.990; overlay 0.936); 1 of 168 same-view colour-variant pairs merged
(light blue and white trousers); imagededup's pHash at its default threshold: precision 0.423, recall 0.996, 132 of
168 colour variants merged. k = 10 gains 0.2 points of recall (overlays on textures) for 0.7 points of precision;
k = 6 loses 0.6 points of recall. Crops beyond a few percent move pHash by 10-30 bits: out of reach of a global
perceptual hash (recall 0.19).

Crops and overlays on the same benchmark (recall per transform, thresholds, cost, scale): ``docs/crops.md``.
"""

import functools
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue

from schemas import reasons
from schemas.config.near_dedup import NearDedupConfig
from transforms._cluster_files import CAPPED, WriteClusters
from transforms._dedup_members import Member
from transforms._duplicates import ClusterDuplicates
from transforms._hash_match import Limits, band_layout
from transforms._near_buckets import (
    band_entries,
    colour_variant,
    group_edges,
    member_id,
    members_by_group,
    near_distance,
    near_member,
    open_group,
)
from transforms._near_windows import (
    WINDOW_NEIGHBOURS,
    Evidence,
    SharedWindows,
    merge_evidence,
    window_entries,
    window_pairs,
    worth_verifying_with,
)
from transforms._verify_candidates import VerifyCandidates

STAGE = "near_dedup"
METRIC = "phash_hamming"
CANDIDATES = "candidates"
RELATED = "related"


class NearDedupOutputs(NamedTuple):
    rejected: beam.PCollection
    clusters: beam.PCollection
    related: beam.PCollection


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
            related = fingerprints.pipeline | "NoRelated" >> beam.Create([])
            return NearDedupOutputs(rejected=empty, clusters=clusters, related=related)
        limits = Limits(config.max_distance, config.second_max_distance if config.second_hash else None)
        limits = limits._replace(colour=config.max_colour_distance)
        geometric = config.subwindow_max_distance is not None
        loose = config.candidate_distance if geometric and self._samples is not None else None
        related = config.related_max_distance
        related = None if related is None else min(related, config.max_distance)
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
            | "Verify"
            >> beam.ParDo(_VerifyBucketFn(limits, loose, related)).with_outputs(CANDIDATES, RELATED, main="edges")
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
                    functools.partial(worth_verifying_with, limits=limits),
                    verified.edges,
                    config.min_inliers,
                    config.keypoints,
                    config.max_colour_distance,
                    config.subwindow_candidates,
                )
            )
            edges = (edges, matched) | "AllEdges" >> beam.Flatten()
        variant = None
        if config.max_colour_distance is not None:
            variant = functools.partial(
                colour_variant, max_distance=config.max_distance, max_colour_distance=config.max_colour_distance
            )
        decided = edges | "Cluster" >> ClusterDuplicates(
            STAGE, reasons.NEAR_DUPLICATE, METRIC, config.report_only, near_distance, variant
        )
        if self._output is not None:
            _ = (decided.clusters, capped) | "WriteClusters" >> WriteClusters(self._output, STAGE, self._earlier)
        related = verified[RELATED] | "DistinctRelated" >> beam.Distinct() | "CountRelated" >> beam.Map(_counted)
        return NearDedupOutputs(rejected=decided.rejected, clusters=decided.clusters, related=related)


_RELATED_PAIRS = beam.metrics.Metrics.counter(STAGE, "related_pairs")


def _counted(pair: tuple[str, str]) -> tuple[str, str]:
    _RELATED_PAIRS.inc()
    return pair


class _OpenBucketFn(beam.DoFn):
    """A band bucket to the groups of its open members: ``(member id, (group, capped, colour size))`` for each.

    A group is the set of open members (those that can be in a pair, ``open_members``) in source order: they alone
    make the bucket's verified pairs, in the same order as among all its members. Buckets holding the same group
    (a pair of copies shares most bands) are verified once and their edges emitted once.
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
    def __init__(self, limits: Limits, loose: int | None = None, related: int | None = None):
        self._limits = limits
        self._loose = loose
        self._related = related

    def process(self, element: tuple[tuple, Iterable[Member]]) -> Iterator:
        (_, capped, size), members = element
        found = group_edges(members, self._limits, capped, size, self._loose, self._related)
        yield from found.edges
        for pair in found.candidates:
            yield pvalue.TaggedOutput(CANDIDATES, pair)
        for pair in found.related:
            yield pvalue.TaggedOutput(RELATED, pair)


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
