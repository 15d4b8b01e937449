"""Keypoint verification of near dedup's crop and overlay candidates, in Beam: ``VerifyCandidates``.

Input: ``((source, source), evidence)`` candidate pairs (``transforms._near_windows``). Output: ``Edge`` records of
method ``keypoints`` with their evidence (``inliers``, ``colour_distance``, ``overlay_cells``), for the pairs that
``transforms._keypoints.match`` accepts.

Keypoints are computed once per image, and only for images in an open candidate pair: ``VerifyCandidates`` reads
those samples' bytes with ``read_image`` (never ``Sample.image``) and joins their features (about 22 KB: 500
descriptors, their positions, a JPEG thumbnail) to the pairs by source, so they never travel in the light
``Fingerprint``. An image too small or too flat to have ``min_inliers`` keypoints never matches this way: only the
hash tests can match it. Shipped samples of an earlier run have no sample here, so their candidates stay unverified
(counted).

Metrics: ``near_dedup/candidate_pairs``, ``near_dedup/keypoint_matches``, ``near_dedup/unverifiable_pairs``.
"""

from collections.abc import Iterable, Iterator

import apache_beam as beam
import cv2

from transforms._best_per_image import KeepBestPerImage
from transforms._components import ConnectedComponents
from transforms._dedup_members import Edge, Member
from transforms._duplicates import COMPONENT_ROUNDS
from transforms._keypoints import KeypointFeatures, extract, match
from transforms.image_store import read_image

KEYPOINTS = "keypoints"
ATTEMPTS = 2
PRE_FACTOR = 4


class VerifyCandidates(beam.PTransform):
    """Turn candidate source pairs into ``keypoints`` edges, reading only the images of pairs worth verifying.

    The candidates are bounded per image, so that what is joined, featured and matched grows with the number of
    images, not with the pairs that share structure (photos of one studio, shapes on smooth grounds): each image
    keeps its ``PRE_FACTOR * per_image`` strongest candidates (by ``score()`` of their evidence, then the nearest
    whole-image pHash ``distance``, then source) before the hash tests, and its ``per_image`` strongest open pairs
    after them; a pair stays when either of its images keeps it, so at most ``per_image`` times the images are
    verified in all. Only pairs that could join two groups the hashes did not join are verified: pairs inside one
    component of the ``known`` edges are dropped, and between two components at most ``ATTEMPTS`` pairs are tried
    (best-ranked members first), since one match joins them.

    Args:
        members: The ``Member`` of every fingerprint, to build edges from.
        samples: The ``Sample`` records whose images are read (this run's; shipped samples have none).
        worth: ``(members, member) -> bool array``: whether the hashes leave each pair of one of ``members`` and the
            member open (not already accepted, not a colour variant of the same geometry); only those pairs are
            featured and matched.
        known: The ``Edge`` records the hash test accepted.
        per_image: Open candidate pairs each image keeps (``None``: all).

    Input: ``((source, source), evidence)`` pairs, smaller source first, one per pair; ``evidence.score()`` ranks
    them, and ``evidence.loose`` marks a pair already found ``worth`` verifying.
    """

    def __init__(
        self,
        members,
        samples,
        worth,
        known,
        min_inliers: int,
        count: int,
        max_colour: float | None,
        per_image: int | None = None,
    ):
        super().__init__()
        self._members, self._samples, self._worth, self._known = members, samples, worth, known
        self._min_inliers, self._count, self._max_colour = min_inliers, count, max_colour
        self._per_image = per_image

    def expand(self, candidates: beam.PCollection) -> beam.PCollection:
        by_source = self._members | "MemberBySource" >> beam.Map(lambda member: (member.source, member))
        if self._per_image is not None:
            candidates = candidates | "FewCandidatesPerImage" >> KeepBestPerImage(
                PRE_FACTOR * self._per_image, _candidate_rank
            )
        halfway = (
            {"member": by_source, "pair": candidates | "ByFirstSource" >> beam.MapTuple(_keyed_by_first)}
            | "JoinFirstMember" >> beam.CoGroupByKey()
            | "TowardsSecondMember" >> beam.FlatMapTuple(_towards_second)
        )
        labels = (
            self._known
            | "KnownPairs" >> beam.Map(lambda edge: (edge.a.source, edge.b.source))
            | "KnownComponents" >> ConnectedComponents(rounds=COMPONENT_ROUNDS)
        )
        open_pairs = (
            {"member": by_source, "pair": halfway}
            | "JoinSecondMember" >> beam.CoGroupByKey()
            | "OpenPairs" >> beam.ParDo(_OpenPairsFn(self._worth))
        )
        if self._per_image is not None:
            open_pairs = (
                open_pairs
                | "OpenBySources"
                >> beam.Map(lambda open_pair: ((open_pair[0].source, open_pair[1].source), open_pair))
                | "FewOpenPairsPerImage" >> KeepBestPerImage(self._per_image, _open_rank)
                | "OpenPair" >> beam.Values()
            )
        open_pairs = open_pairs | "WithoutEvidence" >> beam.Map(lambda open_pair: open_pair[:2])
        first_labelled = (
            {"label": labels, "pair": open_pairs | "OpenByFirst" >> beam.Map(lambda pair: (pair[0].source, pair))}
            | "JoinFirstLabel" >> beam.CoGroupByKey()
            | "FirstLabel" >> beam.FlatMapTuple(_label_first)
        )
        open_pairs = (
            {"label": labels, "pair": first_labelled}
            | "JoinSecondLabel" >> beam.CoGroupByKey()
            | "ComponentPairs" >> beam.FlatMapTuple(_by_component_pair)
            | "GroupComponentPair" >> beam.GroupByKey()
            | "FirstAttempts" >> beam.FlatMapTuple(_first_attempts)
        )
        wanted = (
            open_pairs
            | "PairSources" >> beam.FlatMap(lambda pair: (pair[0].source, pair[1].source))
            | "DistinctSources" >> beam.Distinct()
            | "AsWanted" >> beam.Map(lambda source: (source, True))
        )
        features = (
            self._samples
            | "OnlyCandidates"
            >> beam.Filter(lambda sample, wanted: sample.source in wanted, wanted=beam.pvalue.AsDict(wanted))
            | "Extract" >> beam.ParDo(_ExtractFn(self._count))
        )
        first = (
            {"features": features, "pair": open_pairs | "ByFirst" >> beam.Map(lambda pair: (pair[0].source, pair))}
            | "JoinFirst" >> beam.CoGroupByKey()
            | "TowardsSecond" >> beam.FlatMapTuple(_features_towards_second)
        )
        return (
            {"features": features, "pair": first}
            | "JoinSecond" >> beam.CoGroupByKey()
            | "Match" >> beam.ParDo(_MatchFn(self._min_inliers, self._max_colour))
        )


def _candidate_rank(evidence) -> tuple:
    return -evidence.score(), evidence.distance


def _open_rank(open_pair: tuple[Member, Member, object]) -> tuple:
    return _candidate_rank(open_pair[2])


def _keyed_by_first(pair: tuple[str, str], evidence) -> tuple[str, tuple]:
    return pair[0], (pair[1], evidence)


def _towards_second(source: str, joined: dict) -> Iterator[tuple[str, tuple]]:
    members = list(joined["member"])
    if not members:
        return
    for other, evidence in sorted(joined["pair"], key=lambda pair: pair[0]):
        yield other, (members[0], evidence)


def _label_first(source: str, joined: dict) -> Iterator[tuple[str, tuple]]:
    label = min(joined["label"], default=source)
    for pair in joined["pair"]:
        yield pair[1].source, (pair, label)


def _by_component_pair(source: str, joined: dict) -> Iterator[tuple[tuple[str, str], tuple[Member, Member]]]:
    label = min(joined["label"], default=source)
    for pair, first_label in joined["pair"]:
        if first_label != label:
            yield (min(first_label, label), max(first_label, label)), pair


def _first_attempts(_: tuple[str, str], pairs: Iterable[tuple[Member, Member]]) -> list[tuple[Member, Member]]:
    """The ``ATTEMPTS`` pairs between two components whose members rank best as survivors."""
    ranked = sorted(pairs, key=lambda pair: sorted((pair[0].rank, pair[1].rank)))
    return ranked[:ATTEMPTS]


def _features_towards_second(source: str, joined: dict) -> Iterator[tuple[str, tuple]]:
    features = list(joined["features"])
    for pair in sorted(joined["pair"], key=lambda pair: pair[1].source):
        yield pair[1].source, (pair, features[0] if features else None)


class _OpenPairsFn(beam.DoFn):
    def __init__(self, worth):
        self._worth = worth
        self._candidates = beam.metrics.Metrics.counter("near_dedup", "candidate_pairs")

    def process(self, element: tuple[str, dict]) -> Iterator[tuple[Member, Member, object]]:
        _, joined = element
        members = list(joined["member"])
        if not members:
            return
        second = members[0]
        pairs = sorted(joined["pair"], key=lambda pair: pair[0].source)
        pairs = [(first, evidence) for first, evidence in pairs if first.scope == second.scope]
        # A pHash candidate (``evidence.loose``) was found worth verifying where its bucket was verified
        # (``transforms._near_buckets.loose_pairs``): only window pairs are tested here, all at once.
        windows = [first for first, evidence in pairs if not evidence.loose]
        worth = iter(self._worth(windows, second).tolist() if windows else [])
        for first, evidence in pairs:
            if evidence.loose or next(worth):
                self._candidates.inc()
                yield first, second, evidence


class _ExtractFn(beam.DoFn):
    def __init__(self, count: int):
        self._count = count

    def setup(self):
        cv2.setNumThreads(1)

    def process(self, sample) -> Iterator[tuple[str, KeypointFeatures]]:
        try:
            yield sample.source, extract(read_image(sample), self._count)
        except (OSError, ValueError, cv2.error):
            # An image that normalise wrote but cannot be featured here is left to the hash tests.
            return


class _MatchFn(beam.DoFn):
    def __init__(self, min_inliers: int, max_colour: float | None):
        self._min_inliers, self._max_colour = min_inliers, max_colour
        self._matches = beam.metrics.Metrics.counter("near_dedup", "keypoint_matches")
        self._unverifiable = beam.metrics.Metrics.counter("near_dedup", "unverifiable_pairs")

    def setup(self):
        cv2.setNumThreads(1)

    def process(self, element: tuple[str, dict]) -> Iterator[Edge]:
        _, joined = element
        features = list(joined["features"])
        second_features = features[0] if features else None
        for (a, b), first_features in sorted(joined["pair"], key=lambda item: item[0][0].source):
            if first_features is None or second_features is None:
                self._unverifiable.inc()
                continue
            found, _ = match(first_features, second_features, self._min_inliers, self._max_colour)
            if found is None:
                continue
            self._matches.inc()
            evidence = (
                ("colour_distance", found.colour_distance),
                ("inliers", found.inliers),
                ("overlay_cells", found.overlay_cells),
            )
            yield Edge(a, b, a.labels == b.labels, KEYPOINTS, evidence)
