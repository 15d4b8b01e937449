"""Exact deduplication: identical bytes (SHA-256) and identical normalised pixels.

Input element type: ``Fingerprint`` (no image bytes). Outputs: ``survivors`` (fingerprints), ``rejected`` (ledger
rows). Identical bytes always have identical pixels, so one grouping by pixel hash finds both kinds; the reason
says which: ``exact_duplicate`` (same bytes) or ``pixel_duplicate`` (a lossless re-encode of the same pixels).
The survivor is the member with the most original pixels, then the richest metadata, then the smallest source;
every loser's ledger row names the survivor. In incremental runs, samples shipped by earlier runs take part
(``Fingerprint.shipped``): they always survive and are never emitted again, so a new copy of a shipped image is
rejected naming it.
With ``exact_dedup.enabled = false`` only copies of one file (same bytes, so the same sample key) are merged:
a shard can hold a key once. Config section: ``exact_dedup``. Metrics: ``exact_dedup/duplicates``.
"""

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue

from schemas import reasons
from schemas.config.exact_dedup import ExactDedupConfig
from schemas.records.dedup import Fingerprint
from schemas.records.ledger import rejected
from transforms._common import REJECTED

STAGE = "exact_dedup"


class DedupOutputs(NamedTuple):
    survivors: beam.PCollection
    rejected: beam.PCollection


class DeduplicateExact(beam.PTransform):
    """Keep one fingerprint per distinct picture; reject the rest naming their survivor."""

    def __init__(self, config: ExactDedupConfig):
        super().__init__()
        self._config = config

    def expand(self, fingerprints: beam.PCollection):
        # A sample's key is its file's SHA-256, and a shard holds a key once: with the stage off, copies of one
        # file are still one sample (the others exact_duplicate, naming it), and only re-encodes are all kept.
        by_pixels = self._config.enabled
        decided = (
            fingerprints
            | ("ByPixels" if by_pixels else "ByFile")
            >> beam.Map(lambda fp: (fp.pixel_sha256 if by_pixels else fp.key, fp))
            | "Group" >> beam.GroupByKey()
            | "Decide" >> beam.ParDo(_DecideFn(by_pixels)).with_outputs(REJECTED, main="survivors")
        )
        return DedupOutputs(survivors=decided.survivors, rejected=decided[REJECTED])


def survivor_order(fp: Fingerprint) -> tuple:
    """Sort key putting the preferred survivor first: already shipped, most pixels, richest metadata, smallest source.

    Metadata richness matters because a bare copy (no document, no title) must not win over the catalogued original.
    """
    return (not fp.shipped, -fp.pixels, -fp.richness, fp.source, fp.key)


def decide(members: Iterable[Fingerprint]) -> tuple[Fingerprint, list[tuple[Fingerprint, str]]]:
    """Return the survivor of one group of identical pictures and each loser with its reason code."""
    ordered = sorted(members, key=survivor_order)
    survivor = ordered[0]
    losers = [
        (fp, reasons.EXACT_DUPLICATE if fp.sha256 == survivor.sha256 else reasons.PIXEL_DUPLICATE)
        for fp in ordered[1:]
    ]
    return survivor, losers


class _DecideFn(beam.DoFn):
    def __init__(self, by_pixels: bool = True):
        self._by_pixels = by_pixels
        self._duplicates = beam.metrics.Metrics.counter(STAGE, "duplicates")

    def process(self, element: tuple[str, Iterable[Fingerprint]]) -> Iterator:
        survivor, losers = decide(element[1])
        if not survivor.shipped:
            yield survivor
        for fp, reason in losers:
            if fp.shipped:
                continue
            self._duplicates.inc()
            yield pvalue.TaggedOutput(
                REJECTED,
                rejected(
                    STAGE,
                    reason,
                    fp.source,
                    fp.key,
                    fp.domain,
                    survivor_key=survivor.key,
                    survivor_source=survivor.source,
                    **({} if self._by_pixels else {"message": _SAME_FILE}),
                ),
            )


_SAME_FILE = (
    "the same file bytes as the survivor: a sample's key is its file's SHA-256, so one copy of a file is shipped "
    "even with exact_dedup.enabled = false (which keeps re-encodes of one picture)"
)
