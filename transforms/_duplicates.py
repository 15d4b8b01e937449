"""Clusters of a dedup stage: connected components of the verified edges, survivors per removal group.

Near and semantic deduplication share it. Their buckets emit ``Edge`` records between ``Member`` views of samples
(``transforms._dedup_members``: a spanning forest per bucket). ``ClusterDuplicates`` labels connected components with
the distributed method in ``transforms._components`` (no single worker holds the graph), groups each component's
edges, and decides it (``decide_cluster``): members whose ``keep_distinct`` labels are equal form removal groups
(components of the same-label edges); each group keeps its best-ranked member and rejects the rest naming it, unless
``report_only``. Given ``distinct`` (near dedup: a colour variant), a member that is distinct from every survivor
chosen so far (in rank order) is a survivor too, so a chain of edges cannot remove one colourway for another;
``distinct`` also sees the methods of the member's own edges (a member matched only on keypoints is no variant).
Outputs: ``clusters`` (``DuplicateCluster``, written by ``transforms._cluster_files.WriteClusters``) and ``rejected``
(ledger rows).
"""

import json
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

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
        distinct: ``(member, survivor, methods of the member's edges) -> bool``: the two must both stay although
            edges join them.
    """

    def __init__(
        self,
        stage: str,
        reason: str,
        metric: str,
        report_only: bool,
        distance: Callable[[Member, Member], tuple[float, dict]],
        distinct: Callable[[Member, Member, frozenset[str]], bool] | None = None,
    ):
        super().__init__()
        self._decide = _DecideClusterFn(stage, reason, metric, report_only, distance, distinct)

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
    distinct: Callable[[Member, Member, frozenset[str]], bool] | None = None,
) -> tuple[DuplicateCluster, list[tuple[Member, Member, float, dict]]]:
    """Choose the survivors of each removal group of a component: its best-ranked member, and (with ``distinct``)
    each member, in rank order, that is distinct from every survivor before it. The others are removed naming the
    nearest survivor along the edges, or, when they are distinct from that one, the best-ranked they are not.

    Returns:
        The cluster, and ``(member, survivor, distance, detail)`` for every member to reject (none in
        ``report_only`` mode, and never a shipped member).
    """
    edges = list(edges)
    by_source = {member.source: member for edge in edges for member in (edge.a, edge.b)}
    members = sorted(by_source.values(), key=lambda member: (member.key, member.source))
    index = {member.source: position for position, member in enumerate(members)}
    groups = UnionFind(len(members))
    matched_by: dict[str, set[str]] = {member.source: set() for member in members}
    for edge in edges:
        if edge.same_label:
            groups.union(index[edge.a.source], index[edge.b.source])
            matched_by[edge.a.source].add(edge.method)
            matched_by[edge.b.source].add(edge.method)

    # Each pair is asked twice: apart while choosing survivors and assigning members, measure for a member's
    # survivor and for its first step there (often the same member).
    measure = _once_per_pair(distance)
    apart = _once_per_pair(
        (lambda member, head: distinct(member, head, frozenset(matched_by[member.source])))
        if distinct is not None
        else (lambda member, head: False)
    )

    heads: dict[int, list[Member]] = {}
    for member in sorted(members, key=lambda member: member.rank):
        kept = heads.setdefault(groups.find(index[member.source]), [])
        if not kept or all(apart(member, head) for head in kept):
            kept.append(member)
    cluster_id = f"{stage}-{members[0].key}"
    towards = _edges_towards_survivors(edges, [head for root in sorted(heads) for head in heads[root]])
    survivors, distances, removed, losers, methods, evidence = [], [], [], [], [], []
    for member in members:
        survivor = _survivor(member, heads[groups.find(index[member.source])], towards.get(member.source), apart)
        value, detail = (0.0, {}) if survivor is member else measure(member, survivor)
        match = {} if survivor is member else _match_detail(member, towards.get(member.source), measure)
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


def _once_per_pair(ask: Callable[[Member, Member], Any]) -> Callable[[Member, Member], Any]:
    """``ask`` answered once per (member, other) pair of sources; later asks get the same answer."""
    answers: dict[tuple[str, str], Any] = {}

    def asked(member: Member, other: Member) -> Any:
        pair = (member.source, other.source)
        if pair not in answers:
            answers[pair] = ask(member, other)
        return answers[pair]

    return asked


def _survivor(
    member: Member,
    heads: list[Member],
    step: tuple[Edge, Member, Member] | None,
    apart: Callable[[Member, Member], bool],
) -> Member:
    """The survivor ``member`` is removed for (itself if it is one of its group's ``heads``): the nearest head along
    the edges (``step``), unless ``member`` must stay apart from it, then the best-ranked head it need not."""
    if any(head is member for head in heads):
        return member
    if step is not None and not apart(member, step[2]):
        return step[2]
    return next(head for head in heads if not apart(member, head))


def _edges_towards_survivors(edges: list[Edge], survivors: list[Member]) -> dict[str, tuple[Edge, Member, Member]]:
    """For each member, the same-label edge that leads one step towards the nearest survivor, the member it leads
    to, and that survivor.

    A breadth-first search from every survivor (best-ranked first, so it takes a member as near to two) over the
    same-label edges (neighbours in key order), so the path and its first step are the same whatever order the edges
    arrived in.
    """
    around: dict[str, list[tuple[Member, Edge]]] = {}
    for edge in edges:
        if edge.same_label:
            around.setdefault(edge.a.source, []).append((edge.b, edge))
            around.setdefault(edge.b.source, []).append((edge.a, edge))
    for neighbours in around.values():
        neighbours.sort(key=lambda pair: (pair[0].key, pair[0].source, pair[1].method, pair[1].evidence))
    towards: dict[str, tuple[Edge, Member, Member]] = {}
    frontier = [(member, member) for member in sorted(survivors, key=lambda member: member.rank)]
    seen = {member.source for member, _ in frontier}
    while frontier:
        following = []
        for member, origin in frontier:
            for neighbour, edge in around.get(member.source, []):
                if neighbour.source not in seen:
                    seen.add(neighbour.source)
                    towards[neighbour.source] = (edge, member, origin)
                    following.append((neighbour, origin))
        frontier = following
    return towards


def _match_detail(member: Member, step: tuple[Edge, Member, Member] | None, distance: Callable) -> dict:
    """What matched ``member`` on its way to the nearest survivor: the method and evidence of its first step there."""
    if step is None:
        return {}
    edge, towards, _ = step
    evidence = dict(edge.evidence) if edge.evidence else {"distance": distance(member, towards)[1].get("distance")}
    return {"method": edge.method, "evidence": evidence, "via": towards.key}


class _DecideClusterFn(beam.DoFn):
    def __init__(
        self, stage: str, reason: str, metric: str, report_only: bool, distance: Callable, distinct: Callable | None
    ):
        self._stage, self._reason, self._metric = stage, reason, metric
        self._report_only, self._distance, self._distinct = report_only, distance, distinct
        self._clusters = beam.metrics.Metrics.counter(stage, "clusters")
        self._removed = beam.metrics.Metrics.counter(stage, "duplicates")

    def process(self, element: tuple[str, Iterable[Edge]]) -> Iterator:
        cluster, losers = decide_cluster(
            self._stage, element[1], self._report_only, self._distance, self._metric, self._distinct
        )
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
