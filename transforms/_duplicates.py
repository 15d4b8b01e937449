"""Clusters of a dedup stage: connected components of the verified edges, one survivor per removal group.

Near and semantic deduplication share it. Their buckets emit ``Edge`` records between ``Member`` views of samples
(``transforms._dedup_members``: a spanning forest per bucket). ``ClusterDuplicates`` labels connected components with
the distributed method in ``transforms._components`` (no single worker holds the graph), groups each component's
edges, and decides it (``decide_cluster``): members whose ``keep_distinct`` labels are equal form removal groups
(components of the same-label edges); each group keeps its best-ranked member and rejects the rest naming it, unless
``report_only``. Outputs: ``clusters`` (``DuplicateCluster``, written by ``transforms._cluster_files.WriteClusters``)
and ``rejected`` (ledger rows).
"""

import json
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue

from schemas.records.dedup import DuplicateCluster
from schemas.records.ledger import rejected
from transforms._components import ConnectedComponents
from transforms._dedup_members import Edge, Member, UnionFind

REJECTED = "rejected"
# Bucket forests make most components stars already; two rounds leave little for the final single-worker union-find.
COMPONENT_ROUNDS = 2


class Decided(NamedTuple):
    clusters: beam.PCollection
    rejected: beam.PCollection


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
    groups = UnionFind(len(members))
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
