"""Decontamination: reject samples that duplicate an evaluation or holdout image.

Input element type: ``Fingerprint``. The eval items come from ``decontaminate.exclude`` (folders, file patterns or
manifests, read exactly like ingest inputs) and are decoded, normalised and hashed with the run's own ``normalise``
section, so an eval image and its copy in the training pool hash alike. Outputs: ``survivors`` (fingerprints that
match no eval item) and ``rejected`` (ledger rows, reason ``eval_contamination``, detail naming ``eval_source``,
``eval_key``, the ``match`` kind (``exact`` bytes, ``pixel``-identical or ``near``), the pHash ``distance`` and the
``colour_distance``). Eval items are never ledger rows: they are not inputs of the run. Side files:
``dedup/decontaminate.parquet`` (one row per contaminated sample) and ``dedup/decontaminate.json`` (eval items read,
unreadable, matched). Config section: ``decontaminate``. Metrics: ``decontaminate/contaminated``.

Matching uses near dedup's banding (``transforms.near_dedup``): data and eval fingerprints share band buckets and only
data-eval pairs are verified, so the cost grows with the data, not data x eval. A sample matching several eval items
names the closest (exact before pixel before near, then fewest bits, then eval source). Without ``exclude`` the stage
passes fingerprints through untouched.
"""

import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from schemas import reasons
from schemas.config.decontaminate import DecontaminateConfig
from schemas.config.ingest import IngestConfig
from schemas.config.normalise import NormaliseConfig
from schemas.records.dedup import Fingerprint
from schemas.records.ledger import rejected
from schemas.records.samples import Sample
from transforms._common import REJECTED
from transforms._hash_match import (
    HashArrays,
    HashFeatures,
    Limits,
    band_layout,
    band_values,
    close_pairs,
    colour_bytes,
)
from transforms._io import join, write_atomic
from transforms._parts import parquet_bytes
from transforms.hashing import PHASH, hash_int
from transforms.ingest import ReadInputs
from transforms.normalise import Normalise

STAGE = "decontaminate"
FOUND = "found"
_MATCH_ORDER = {"exact": 0, "pixel": 1, "near": 2}

MATCH_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("key", pa.string()),
        ("eval_source", pa.string()),
        ("eval_key", pa.string()),
        ("match", pa.string()),
        ("distance", pa.int64()),
        ("colour_distance", pa.float64()),
    ]
)


class DecontaminateOutputs(NamedTuple):
    survivors: beam.PCollection
    rejected: beam.PCollection
    found: beam.PCollection  # ``Contaminated``: the typed fact behind each rejection, for the contamination audit


class Point(NamedTuple):
    """One data or eval image in a band bucket."""

    is_eval: bool
    source: str
    key: str
    sha256: str
    pixel_sha256: str
    features: HashFeatures


class Match(NamedTuple):
    """The eval item a sample duplicates."""

    eval_source: str
    eval_key: str
    match: str
    distance: int
    colour_distance: float | None

    def order(self) -> tuple:
        return (_MATCH_ORDER[self.match], self.distance, self.eval_source)


class Decontaminate(beam.PTransform):
    """Reject fingerprints that are exact or near duplicates of an eval item; pass the rest on."""

    def __init__(
        self, config: DecontaminateConfig, normalise: NormaliseConfig, hashes: list[str], output: str | None = None
    ):
        super().__init__()
        self._config = config
        self._normalise = normalise
        self._hashes = list(hashes)
        self._output = output

    def expand(self, fingerprints: beam.PCollection) -> DecontaminateOutputs:
        config = self._config
        if not config.exclude:
            empty = fingerprints.pipeline | "NoRejections" >> beam.Create([])
            return DecontaminateOutputs(survivors=fingerprints, rejected=empty, found=empty)
        excluded = fingerprints.pipeline | "ReadExcluded" >> ReadInputs(IngestConfig(inputs=config.exclude))
        decoded = excluded.items | "NormaliseExcluded" >> Normalise(self._normalise, self._hashes)
        limits = Limits(config.max_distance, colour=config.max_colour_distance)
        layout = band_layout(config.max_distance)
        points = (
            fingerprints | "DataPoints" >> beam.FlatMap(data_point),
            decoded.samples | "EvalPoints" >> beam.FlatMap(eval_point),
        ) | "AllPoints" >> beam.Flatten()
        best = (
            points
            | "Bands" >> beam.FlatMap(point_bands, layout)
            | "GroupBand" >> beam.GroupByKey()
            | "Match" >> beam.FlatMap(bucket_matches, limits)
            | "Closest" >> beam.CombinePerKey(lambda matches: min(matches, key=Match.order))
        )
        decided = (
            {"fingerprint": fingerprints | "BySource" >> beam.Map(lambda fp: (fp.source, fp)), "match": best}
            | "JoinMatches" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(_DecideFn()).with_outputs(REJECTED, FOUND, main="survivors")
        )
        if self._output is not None:
            eval_count = decoded.samples | "CountEval" >> beam.combiners.Count.Globally()
            unreadable = (
                (excluded.rejected, decoded.rejected)
                | "EvalDropped" >> beam.Flatten()
                | "CountUnreadable" >> beam.combiners.Count.Globally()
            )
            _ = (
                decided[FOUND]
                | "AllFound" >> beam.combiners.ToList()
                | "Write"
                >> beam.Map(
                    _write, self._output, beam.pvalue.AsSingleton(eval_count), beam.pvalue.AsSingleton(unreadable)
                )
            )
        return DecontaminateOutputs(survivors=decided.survivors, rejected=decided[REJECTED], found=decided[FOUND])


def _features(hashes: dict) -> HashFeatures:
    return HashFeatures(hash_int(hashes[PHASH]), None, colour_bytes(hashes))


def data_point(fp: Fingerprint) -> Iterator[Point]:
    if PHASH in fp.hashes:
        yield Point(False, fp.source, fp.key, fp.sha256, fp.pixel_sha256, _features(fp.hashes))


def eval_point(sample: Sample) -> Iterator[Point]:
    if PHASH in sample.hashes:
        yield Point(True, sample.source, sample.key, sample.sha256, sample.pixel_sha256, _features(sample.hashes))


def point_bands(point: Point, layout: list[tuple[int, int]]) -> Iterator[tuple[tuple[int, int], Point]]:
    for band, value in enumerate(band_values(point.features.phash, layout)):
        yield (band, value), point


def bucket_matches(element: tuple[tuple[int, int], Iterable[Point]], limits: Limits) -> Iterator[tuple[str, Match]]:
    """``(data source, match)`` for every verified data-eval pair of one band bucket."""
    _, points = element
    points = sorted(points, key=lambda p: (p.is_eval, p.source))
    data = [p for p in points if not p.is_eval]
    evals = [p for p in points if p.is_eval]
    if not data or not evals:
        return
    rows = HashArrays.of([p.features for p in data])
    cols = HashArrays.of([p.features for p in evals])
    i, j, bits, colour = close_pairs(rows, cols, limits, upper=False)
    for a, b, d, c in zip(i.tolist(), j.tolist(), bits.tolist(), colour.tolist(), strict=True):
        item, found = data[a], evals[b]
        kind = (
            "exact" if item.sha256 == found.sha256 else "pixel" if item.pixel_sha256 == found.pixel_sha256 else "near"
        )
        yield item.source, Match(found.source, found.key, kind, int(d), None if c != c else round(c, 2))


class Contaminated(NamedTuple):
    """A sample removed as a copy of an eval item: the fact its ledger row's detail tells a person, typed."""

    source: str
    key: str
    metadata: dict
    match: Match


class _DecideFn(beam.DoFn):
    def __init__(self):
        self._contaminated = beam.metrics.Metrics.counter(STAGE, "contaminated")

    def process(self, element: tuple[str, dict]) -> Iterator:
        _, joined = element
        matches = list(joined["match"])
        for fp in joined["fingerprint"]:
            if not matches:
                yield fp
                continue
            self._contaminated.inc()
            yield pvalue.TaggedOutput(
                REJECTED,
                rejected(STAGE, reasons.EVAL_CONTAMINATION, fp.source, fp.key, fp.domain, **matches[0]._asdict()),
            )
            yield pvalue.TaggedOutput(FOUND, Contaminated(fp.source, fp.key, dict(fp.metadata), matches[0]))


def _write(found: list["Contaminated"], output: str, eval_items: int, unreadable: int) -> str:
    matches = sorted(
        ({"source": item.source, "key": item.key, **item.match._asdict()} for item in found), key=lambda r: r["source"]
    )
    path = join(output, "dedup", f"{STAGE}.parquet")
    write_atomic(path, parquet_bytes(matches, MATCH_SCHEMA))
    summary = {
        "stage": STAGE,
        "eval_items": eval_items,
        "eval_items_unreadable": unreadable,
        "contaminated_samples": len(matches),
        "eval_items_matched": len({row["eval_source"] for row in matches}),
        "by_match": {kind: sum(1 for row in matches if row["match"] == kind) for kind in _MATCH_ORDER},
    }
    write_atomic(
        join(output, "dedup", f"{STAGE}.json"), json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n"
    )
    return path
