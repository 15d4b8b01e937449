"""Semantic deduplication: samples whose CLIP image embeddings have cosine similarity >= a threshold.

Input element type: ``Sample`` after the embed stage (``Sample.embedding``: float16 bytes of an L2-normalised vector);
samples without an embedding are left alone, and so are embeddings of a smoke model (random weights put distinct images
at cosine 0.8-0.99) unless ``use_smoke_embeddings``; both are counted in the summary. Only a light ``Member`` (key,
rank, labels, the embedding) moves through the shuffles, never image bytes. Outputs: ``rejected`` (ledger rows, reason
``semantic_duplicate``, detail naming ``survivor_key``, ``survivor_source``, the ``cosine`` and the ``cluster_id``) and
``clusters`` (``DuplicateCluster`` with ``metric = "cosine_distance"``). Side files: ``dedup/semantic_dedup.parquet``
and ``dedup/semantic_dedup.json``. Config section: ``semantic_dedup``. Metrics: ``semantic_dedup/clusters``,
``semantic_dedup/duplicates``, ``semantic_dedup/capped_buckets``.

Candidates come from random-hyperplane LSH (Charikar's SimHash): ``tables`` tables, each hashing an embedding to
``bits`` signs of dot products with fixed random hyperplanes (seeded, so runs are deterministic). Two vectors at angle
``t`` share a table's bucket with probability ``(1 - t/pi)^bits``; grouping by ``(scope, table, signature)`` with a
``GroupByKey`` keeps the cost near-linear. Every candidate pair is verified on the exact cosine (a matrix product
per bucket). A bucket above ``max_bucket`` is not compared pairwise: only identical embeddings merge there, and it
is reported. Clusters, label rules, ``report_only`` and the survivor policy are shared with near dedup
(``transforms._duplicates``).
"""

from collections.abc import Iterable, Iterator, Sequence
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam import pvalue

from schemas import reasons
from schemas.config.semantic_dedup import SemanticDedupConfig
from schemas.records.samples import Sample
from schemas.records.values import richness
from transforms._cluster_files import CAPPED, WriteClusters
from transforms._dedup_members import Member, field_values, forest_edges, survivor_rank
from transforms._duplicates import ClusterDuplicates

STAGE = "semantic_dedup"
SKIPPED = "skipped"
EMBEDDING_MODEL = "embedding_model"
METRIC = "cosine_distance"
_BLOCK = 1024


class SemanticDedupOutputs(NamedTuple):
    rejected: beam.PCollection
    clusters: beam.PCollection


class SemanticDeduplicate(beam.PTransform):
    """Cluster samples by embedding cosine and reject all but one survivor per removal group."""

    def __init__(self, config: SemanticDedupConfig, output: str | None = None, earlier: str | None = None):
        super().__init__()
        self._config = config
        self._output = output
        self._earlier = earlier

    def expand(self, samples: beam.PCollection) -> SemanticDedupOutputs:
        config = self._config
        if not config.enabled:
            empty = samples.pipeline | "NoRejections" >> beam.Create([])
            clusters = samples.pipeline | "NoClusters" >> beam.Create([])
            return SemanticDedupOutputs(rejected=empty, clusters=clusters)
        members = samples | "Member" >> beam.ParDo(_MemberFn(config)).with_outputs(SKIPPED, main="members")
        verified = (
            members.members
            | "Signatures" >> beam.ParDo(_SignFn(config))
            | "GroupSignature" >> beam.GroupByKey()
            | "Verify"
            >> beam.ParDo(_VerifyBucketFn(config.threshold, config.max_bucket)).with_outputs(CAPPED, main="edges")
        )
        decided = verified.edges | "Cluster" >> ClusterDuplicates(
            STAGE, reasons.SEMANTIC_DUPLICATE, METRIC, config.report_only, cosine_distance
        )
        if self._output is not None:
            _ = (decided.clusters, verified[CAPPED], members[SKIPPED]) | "WriteClusters" >> WriteClusters(
                self._output, STAGE, self._earlier
            )
        return SemanticDedupOutputs(rejected=decided.rejected, clusters=decided.clusters)


def skip_reason(sample: Sample, config: SemanticDedupConfig) -> str | None:
    """Why a sample takes no part: no embedding, or a smoke model's embedding; ``None`` when it takes part."""
    if not sample.embedding:
        return "skipped_without_embedding"
    if "smoke" in str(sample.annotations.get(EMBEDDING_MODEL, "")) and not config.use_smoke_embeddings:
        return "skipped_smoke_embeddings"
    return None


def semantic_member(sample: Sample, config: SemanticDedupConfig) -> Member:
    """The light member of a sample with an embedding."""
    return Member(
        source=sample.source,
        key=sample.key,
        domain=sample.domain,
        scope=field_values(config.scope, sample.domain, sample.metadata),
        labels=field_values(config.keep_distinct, sample.domain, sample.metadata),
        rank=survivor_rank(
            config.survivor_policy,
            key=sample.key,
            source=sample.source,
            pixels=sample.original.width * sample.original.height,
            file_size=sample.original.bytes,
            richness=richness(sample.metadata),
            scores=sample.scores,
        ),
        features=bytes(sample.embedding),
    )


def vector(embedding: bytes) -> np.ndarray:
    """The float32 unit vector of float16 embedding bytes (re-normalised: float16 rounding moves the norm)."""
    values = np.frombuffer(embedding, np.float16).astype(np.float32)
    norm = float(np.linalg.norm(values))
    return values / norm if norm > 0 else values


def hyperplanes(seed: int, count: int, dim: int) -> np.ndarray:
    """``count`` random hyperplane normals in ``dim`` dimensions, the same for every worker given the seed."""
    return np.random.default_rng([seed, dim]).standard_normal((count, dim)).astype(np.float32)


def signatures(vectors: np.ndarray, planes: np.ndarray, tables: int, bits: int) -> np.ndarray:
    """``(n, tables)`` integer signatures: the sign bits of each table's ``bits`` projections."""
    signs = (vectors @ planes.T > 0).reshape(len(vectors), tables, bits)
    weights = (1 << np.arange(bits, dtype=np.int64))[None, None, :]
    return (signs * weights).sum(-1)


def similar_pairs(vectors: np.ndarray, threshold: float) -> Iterator[tuple[int, int]]:
    """Pairs ``i < j`` with cosine >= ``threshold``."""
    for start in range(0, len(vectors), _BLOCK):
        cosines = vectors[start : start + _BLOCK] @ vectors.T
        i, j = np.nonzero(cosines >= threshold)
        i = i + start
        keep = j > i
        yield from zip(i[keep].tolist(), j[keep].tolist(), strict=True)


def identical_pairs(members: Sequence[Member]) -> Iterator[tuple[int, int]]:
    """The linear fallback for a capped bucket: each member against the first with the same embedding bytes."""
    first: dict[bytes, int] = {}
    for index, member in enumerate(members):
        head = first.setdefault(member.features, index)
        if head != index:
            yield head, index


def cosine_distance(member: Member, survivor: Member) -> tuple[float, dict]:
    cosine = float(vector(member.features) @ vector(survivor.features))
    return round(1.0 - cosine, 6), {"cosine": round(cosine, 4)}


class _MemberFn(beam.DoFn):
    def __init__(self, config: SemanticDedupConfig):
        self._config = config

    def process(self, sample: Sample) -> Iterator:
        reason = skip_reason(sample, self._config)
        if reason is None:
            yield semantic_member(sample, self._config)
        else:
            yield pvalue.TaggedOutput(SKIPPED, (reason, 1))


class _SignFn(beam.DoFn):
    def __init__(self, config: SemanticDedupConfig):
        self._config = config
        self._planes: dict[int, np.ndarray] = {}

    def process(self, member: Member) -> Iterator[tuple[tuple[str, int, int], Member]]:
        values = vector(member.features)
        config = self._config
        if values.shape[0] not in self._planes:
            self._planes[values.shape[0]] = hyperplanes(config.seed, config.tables * config.bits, values.shape[0])
        signed = signatures(values[None, :], self._planes[values.shape[0]], config.tables, config.bits)[0]
        for table, signature in enumerate(signed.tolist()):
            yield (member.scope, table, signature), member


class _VerifyBucketFn(beam.DoFn):
    def __init__(self, threshold: float, max_bucket: int):
        self._threshold = threshold
        self._max_bucket = max_bucket
        self._capped = beam.metrics.Metrics.counter(STAGE, "capped_buckets")

    def process(self, element: tuple[tuple[str, int, int], Iterable[Member]]) -> Iterator:
        (scope, table, signature), members = element
        members = sorted(members, key=lambda member: member.source)
        if len(members) < 2:
            return
        if len(members) > self._max_bucket:
            self._capped.inc()
            yield pvalue.TaggedOutput(
                CAPPED,
                {"scope": scope, "table": table, "value": signature, "size": len(members), "compared": "identical"},
            )
            yield from forest_edges(members, identical_pairs(members))
            return
        vectors = np.stack([vector(member.features) for member in members])
        yield from forest_edges(members, similar_pairs(vectors, self._threshold))
