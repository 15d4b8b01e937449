"""What near and semantic deduplication share: members, survivor ranking, bucket forests, clusters and their files.

A dedup stage turns each sample into a light ``Member`` (no image bytes, no metadata beyond its scope and labels),
puts members into candidate buckets (band values, LSH signatures), verifies pairs inside each bucket, and emits
``Edge`` records. Only a spanning forest of each bucket's verified pairs leaves the bucket, so a bucket of ``s``
near-identical images yields at most ``2(s - 1)`` edges, never ``s^2 / 2``. ``ClusterDuplicates`` then labels
connected components with the distributed method in ``transforms._components`` (no single worker holds the graph),
groups each component's edges, and decides it: members whose ``keep_distinct`` labels are equal form removal groups
(components of the same-label edges); each group keeps its best-ranked member and rejects the rest naming it, unless
``report_only``. ``WriteClusters`` writes ``dedup/<stage>.parquet`` (one row per member) and ``dedup/<stage>.json``.
"""

import dataclasses
import json
import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas.compact import hex_bytes, hex_text, packed, unpacked
from schemas.records.dedup import DuplicateCluster
from schemas.records.ledger import rejected
from transforms._cluster_merge import clusters_from_rows, merge_clusters, merge_summaries
from transforms._components import ConnectedComponents
from transforms._io import join, write_atomic
from transforms._parts import parquet_bytes

REJECTED = "rejected"
CAPPED = "capped"
LARGEST_LISTED = 20
# Bucket forests make most components stars already; two rounds leave little for the final single-worker union-find.
COMPONENT_ROUNDS = 2

CLUSTER_SCHEMA = pa.schema(
    [
        ("cluster_id", pa.string()),
        ("stage", pa.string()),
        ("scope", pa.string()),
        ("metric", pa.string()),
        ("size", pa.int64()),
        ("key", pa.string()),
        ("source", pa.string()),
        ("survivor_key", pa.string()),
        ("distance", pa.float64()),
        ("removed", pa.bool_()),
        ("report_only", pa.bool_()),
        ("method", pa.string()),
        ("evidence", pa.string()),
    ]
)


@dataclasses.dataclass(frozen=True)
class Member:
    """The light view of one sample that a dedup stage buckets, compares and ranks.

    Attributes:
        source: Node id (unique per input item).
        key: Sample key.
        domain: Data domain, for ledger rows.
        scope: JSON list of scope values (``""`` when global); buckets never mix scopes.
        labels: JSON list of ``keep_distinct`` values; members with different labels are never removed for each other.
        rank: Sort key, best survivor first.
        shipped: Written by an earlier run: always preferred, never rejected again.
        features: What the stage compares (hashes, an embedding).
    """

    source: str
    key: str
    domain: str
    scope: str
    labels: str
    rank: tuple
    shipped: bool = False
    features: Any = None

    def __reduce__(self) -> tuple:
        # Compact pickling (schemas.compact); the rank ends with the key and source, as survivor_rank builds it.
        tail = self.rank[-2:] == (self.key, self.source)
        rank = self.rank[:-2] if tail else self.rank
        values = (self.source, hex_bytes(self.key), self.domain, self.scope, self.labels, rank, tail, self.shipped)
        return _member, (packed((*values, self.features)),)


def _member(blob: bytes) -> Member:
    source, key, domain, scope, labels, rank, tail, shipped, features = unpacked(blob)
    key = hex_text(key)
    return Member(source, key, domain, scope, labels, (*rank, key, source) if tail else rank, shipped, features)


class Edge(NamedTuple):
    """A verified pair; ``method`` names the test that matched it and ``evidence`` its ``(name, value)`` figures."""

    a: Member
    b: Member
    same_label: bool
    method: str = ""
    evidence: tuple[tuple[str, Any], ...] = ()


class Decided(NamedTuple):
    clusters: beam.PCollection
    rejected: beam.PCollection


def field_values(fields: Sequence[str], domain: str, metadata: Mapping[str, Any]) -> str:
    """JSON text of the named fields (``domain`` is the sample's domain, others are metadata); ``""`` for none."""
    if not fields:
        return ""
    values = [domain if name == "domain" else metadata.get(name) for name in fields]
    return json.dumps(values, sort_keys=True, ensure_ascii=False, default=str)


def survivor_rank(
    policy: Sequence[str],
    *,
    key: str,
    source: str,
    pixels: int,
    file_size: int,
    richness: int,
    scores: Mapping[str, float],
    shipped: bool = False,
) -> tuple:
    """Sort key putting the preferred survivor first: shipped, then each policy criterion (larger wins), then key.

    ``clip_score`` is the largest score whose name starts with ``clip`` (score fields name their model); a sample
    without one ranks below any sample with one.
    """
    clip = max((float(value) for name, value in scores.items() if name.startswith("clip")), default=-math.inf)
    values = {"resolution": pixels, "file_size": file_size, "richness": richness, "clip_score": clip}
    return (not shipped, *(-values[name] for name in policy), key, source)


class _UnionFind:
    def __init__(self, size: int):
        self._parent = list(range(size))

    def find(self, node: int) -> int:
        while self._parent[node] != node:
            self._parent[node] = self._parent[self._parent[node]]
            node = self._parent[node]
        return node

    def union(self, a: int, b: int) -> bool:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return False
        self._parent[max(root_a, root_b)] = min(root_a, root_b)
        return True


def forest_edges(members: Sequence[Member], pairs: Iterable[tuple[int, int]], method: str = "") -> Iterator[Edge]:
    """Reduce verified pairs (indices into ``members``) to the edges that keep both kinds of component intact."""
    every, same = _UnionFind(len(members)), _UnionFind(len(members))
    for i, j in pairs:
        a, b = members[i], members[j]
        same_label = a.labels == b.labels
        joins_every = every.union(i, j)
        joins_same = same_label and same.union(i, j)
        if joins_every or joins_same:
            yield Edge(a, b, same_label, method)


class ClusterDuplicates(beam.PTransform):
    """Turn bucket edges into ``DuplicateCluster`` records and the ledger rows of the members removed.

    Args:
        stage: The deciding stage, written into ledger rows and cluster ids.
        reason: The reason code of removed members.
        metric: What ``distance`` measures (see ``DuplicateCluster.metric``).
        report_only: Decide survivors but remove nothing.
        distance: ``(member, survivor) -> (distance, ledger detail fields)``.
    """

    def __init__(
        self,
        stage: str,
        reason: str,
        metric: str,
        report_only: bool,
        distance: Callable[[Member, Member], tuple[float, dict]],
    ):
        super().__init__()
        self._decide = _DecideClusterFn(stage, reason, metric, report_only, distance)

    def expand(self, edges: beam.PCollection) -> Decided:
        labels = (
            edges
            | "NodePairs" >> beam.Map(lambda edge: (edge.a.source, edge.b.source))
            | "Components" >> ConnectedComponents(rounds=COMPONENT_ROUNDS)
        )
        decided = (
            {"label": labels, "edge": edges | "EdgeBySource" >> beam.Map(lambda edge: (edge.a.source, edge))}
            | "JoinLabels" >> beam.CoGroupByKey()
            | "EdgeByComponent" >> beam.FlatMapTuple(_edges_by_label)
            | "GroupComponent" >> beam.GroupByKey()
            | "Decide" >> beam.ParDo(self._decide).with_outputs(REJECTED, main="clusters")
        )
        return Decided(clusters=decided.clusters, rejected=decided[REJECTED])


def _edges_by_label(source: str, joined: dict) -> Iterator[tuple[str, Edge]]:
    label = min(joined["label"], default=source)
    for edge in joined["edge"]:
        yield label, edge


def decide_cluster(
    stage: str,
    edges: Iterable[Edge],
    report_only: bool,
    distance: Callable[[Member, Member], tuple[float, dict]],
    metric: str = "",
) -> tuple[DuplicateCluster, list[tuple[Member, Member, float, dict]]]:
    """Choose one survivor per removal group of a component.

    Returns:
        The cluster, and ``(member, survivor, distance, detail)`` for every member to reject (none in
        ``report_only`` mode, and never a shipped member).
    """
    edges = list(edges)
    by_source = {member.source: member for edge in edges for member in (edge.a, edge.b)}
    members = sorted(by_source.values(), key=lambda member: (member.key, member.source))
    index = {member.source: position for position, member in enumerate(members)}
    groups = _UnionFind(len(members))
    for edge in edges:
        if edge.same_label:
            groups.union(index[edge.a.source], index[edge.b.source])
    best: dict[int, Member] = {}
    for position, member in enumerate(members):
        root = groups.find(position)
        if root not in best or member.rank < best[root].rank:
            best[root] = member
    cluster_id = f"{stage}-{members[0].key}"
    towards = _edges_towards_survivors(edges, [best[root] for root in sorted(set(best))])
    survivors, distances, removed, losers, methods, evidence = [], [], [], [], [], []
    for position, member in enumerate(members):
        survivor = best[groups.find(position)]
        value, detail = (0.0, {}) if survivor is member else distance(member, survivor)
        match = {} if survivor is member else _match_detail(member, towards.get(member.source), distance)
        remove = survivor is not member and not report_only and not member.shipped
        survivors.append(survivor.key)
        distances.append(float(value))
        removed.append(remove)
        methods.append(match.get("method", ""))
        evidence.append(json.dumps(match.get("evidence", {}), sort_keys=True) if match else "")
        if remove:
            extra = {"method": match["method"], **match["evidence"]} if match.get("method") else {}
            if match.get("via") and match["via"] != survivor.key:
                extra["matched_key"] = match["via"]
            losers.append((member, survivor, value, {**detail, **extra, "cluster_id": cluster_id}))
    cluster = DuplicateCluster(
        cluster_id=cluster_id,
        stage=stage,
        scope=members[0].scope,
        metric=metric,
        keys=tuple(member.key for member in members),
        sources=tuple(member.source for member in members),
        survivors=tuple(survivors),
        distances=tuple(distances),
        removed=tuple(removed),
        report_only=report_only,
        methods=tuple(methods) if any(methods) else (),
        evidence=tuple(evidence) if any(methods) else (),
    )
    return cluster, losers


def _edges_towards_survivors(edges: list[Edge], survivors: list[Member]) -> dict[str, tuple[Edge, Member]]:
    """For each member, the same-label edge that leads one step towards its survivor, and the member it leads to.

    A breadth-first search from every survivor over the same-label edges (neighbours in key order), so the path and
    its first step are the same whatever order the edges arrived in.
    """
    around: dict[str, list[tuple[Member, Edge]]] = {}
    for edge in edges:
        if edge.same_label:
            around.setdefault(edge.a.source, []).append((edge.b, edge))
            around.setdefault(edge.b.source, []).append((edge.a, edge))
    for neighbours in around.values():
        neighbours.sort(key=lambda pair: (pair[0].key, pair[0].source, pair[1].method, pair[1].evidence))
    towards: dict[str, tuple[Edge, Member]] = {}
    frontier = sorted(survivors, key=lambda member: (member.key, member.source))
    seen = {member.source for member in frontier}
    while frontier:
        following = []
        for member in frontier:
            for neighbour, edge in around.get(member.source, []):
                if neighbour.source not in seen:
                    seen.add(neighbour.source)
                    towards[neighbour.source] = (edge, member)
                    following.append(neighbour)
        frontier = following
    return towards


def _match_detail(member: Member, step: tuple[Edge, Member] | None, distance: Callable) -> dict:
    """What matched ``member`` on its way to its survivor: the method and evidence of its first step there."""
    if step is None:
        return {}
    edge, towards = step
    evidence = dict(edge.evidence) if edge.evidence else {"distance": distance(member, towards)[1].get("distance")}
    return {"method": edge.method, "evidence": evidence, "via": towards.key}


class _DecideClusterFn(beam.DoFn):
    def __init__(self, stage: str, reason: str, metric: str, report_only: bool, distance: Callable):
        self._stage, self._reason, self._metric = stage, reason, metric
        self._report_only, self._distance = report_only, distance
        self._clusters = beam.metrics.Metrics.counter(stage, "clusters")
        self._removed = beam.metrics.Metrics.counter(stage, "duplicates")

    def process(self, element: tuple[str, Iterable[Edge]]) -> Iterator:
        cluster, losers = decide_cluster(self._stage, element[1], self._report_only, self._distance, self._metric)
        self._clusters.inc()
        yield cluster
        for member, survivor, _, detail in losers:
            self._removed.inc()
            yield pvalue.TaggedOutput(
                REJECTED,
                rejected(
                    self._stage,
                    self._reason,
                    member.source,
                    member.key,
                    member.domain,
                    survivor_key=survivor.key,
                    survivor_source=survivor.source,
                    **detail,
                ),
            )


class WriteClusters(beam.PTransform):
    """Write ``dedup/<stage>.parquet`` (a row per cluster member) and ``dedup/<stage>.json`` (the summary).

    Input: ``(clusters, capped)`` or ``(clusters, capped, counts)``: ``capped`` holds a dict per oversized bucket
    that was not compared pairwise, ``counts`` ``(name, n)`` pairs summed into the summary (samples skipped...).
    """

    def __init__(self, output: str, stage: str, earlier: str | None = None):
        """``earlier``: the output an incremental run builds on; its clusters are merged in
        (``transforms._cluster_merge``), so the files describe the whole output."""
        super().__init__()
        self._output = output
        self._stage = stage
        self._earlier = earlier

    def expand(self, pcolls: tuple[beam.PCollection, ...]) -> beam.PCollection:
        clusters, capped, *counts = pcolls
        all_capped = capped | "AllCapped" >> beam.combiners.ToList()
        totals = (
            counts[0] if counts else clusters.pipeline | "NoCounts" >> beam.Create([])
        ) | "SumCounts" >> beam.CombinePerKey(sum)
        return (
            clusters
            | "AllClusters" >> beam.combiners.ToList()
            | "Write"
            >> beam.Map(
                _write,
                self._output,
                self._stage,
                beam.pvalue.AsSingleton(all_capped),
                beam.pvalue.AsDict(totals),
                self._earlier,
            )
        )


def cluster_rows(clusters: Iterable[DuplicateCluster]) -> list[dict]:
    """One row per member, clusters in id order, members in key order."""
    return [
        {
            "cluster_id": cluster.cluster_id,
            "stage": cluster.stage,
            "scope": cluster.scope,
            "metric": cluster.metric,
            "size": cluster.size,
            "report_only": cluster.report_only,
            **member,
        }
        for cluster in sorted(clusters, key=lambda c: c.cluster_id)
        for member in cluster.members()
    ]


def summarise_clusters(
    stage: str, clusters: list[DuplicateCluster], capped: list[dict], counts: Mapping[str, int] | None = None
) -> dict:
    """Counts in images: clusters, images in them, images removed, sizes, the largest clusters, capped buckets."""
    sizes = Counter(cluster.size for cluster in clusters)
    largest = sorted(clusters, key=lambda c: (-c.size, c.cluster_id))[:LARGEST_LISTED]
    return {
        **dict(sorted((counts or {}).items())),
        "stage": stage,
        "clusters": len(clusters),
        "images_in_clusters": sum(cluster.size for cluster in clusters),
        "images_removed": sum(sum(cluster.removed) for cluster in clusters),
        "cluster_sizes": {str(size): count for size, count in sorted(sizes.items())},
        "largest": [
            {
                "cluster_id": cluster.cluster_id,
                "size": cluster.size,
                "survivors": len(set(cluster.survivors)),
                "removed": sum(cluster.removed),
                "scope": cluster.scope,
            }
            for cluster in largest
        ],
        "capped_buckets": sorted(capped, key=lambda item: json.dumps(item, sort_keys=True)),
    }


def _write(
    clusters: list[DuplicateCluster], output: str, stage: str, capped: list[dict], counts: dict, earlier: str | None
) -> str:
    if earlier is not None and FileSystems.exists(join(earlier, "dedup", f"{stage}.parquet")):
        with FileSystems.open(join(earlier, "dedup", f"{stage}.parquet")) as handle:
            clusters = merge_clusters(clusters_from_rows(pq.read_table(handle).to_pylist()), clusters)
        with FileSystems.open(join(earlier, "dedup", f"{stage}.json")) as handle:
            capped, counts = merge_summaries(json.loads(handle.read()), capped, counts)
    path = join(output, "dedup", f"{stage}.parquet")
    write_atomic(path, parquet_bytes(cluster_rows(clusters), CLUSTER_SCHEMA))
    summary = summarise_clusters(stage, clusters, capped, counts)
    write_atomic(
        join(output, "dedup", f"{stage}.json"), json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n"
    )
    return path
