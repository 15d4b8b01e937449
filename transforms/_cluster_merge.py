"""Duplicate clusters over runs: an incremental run's clusters merged with those the output already lists.

An incremental run compares its new samples with the samples earlier runs shipped, never with the copies those runs
removed, so a cluster it finds around a shipped survivor holds the survivor and the new copies only. Merged with the
earlier ``dedup/<stage>.parquet`` (clusters that share a member become one), the side file lists every cluster of
the whole output, as a run over all of it would. Pure functions on ``DuplicateCluster``; the caller reads and writes.
"""

import json
from collections.abc import Iterable, Mapping

from schemas.records.dedup import DuplicateCluster

# Summary fields ``summarise_clusters`` derives from the clusters; every other numeric field is a count to add up.
DERIVED = {"stage", "clusters", "images_in_clusters", "images_removed", "cluster_sizes", "largest", "capped_buckets"}


def clusters_from_rows(rows: Iterable[Mapping]) -> list[DuplicateCluster]:
    """Rebuild the clusters of a ``dedup/<stage>.parquet`` file from its rows (one per member)."""
    members: dict[str, list[Mapping]] = {}
    for row in rows:
        members.setdefault(row["cluster_id"], []).append(row)
    return [_cluster(cluster_id, found) for cluster_id, found in sorted(members.items())]


def _cluster(cluster_id: str, rows: list[Mapping]) -> DuplicateCluster:
    rows = sorted(rows, key=lambda row: (row["key"], row["source"]))
    first = rows[0]
    has_methods = any(row["method"] for row in rows)
    return DuplicateCluster(
        cluster_id=cluster_id,
        stage=first["stage"],
        scope=first["scope"],
        metric=first["metric"],
        keys=tuple(row["key"] for row in rows),
        sources=tuple(row["source"] for row in rows),
        survivors=tuple(row["survivor_key"] for row in rows),
        distances=tuple(float(row["distance"]) for row in rows),
        removed=tuple(bool(row["removed"]) for row in rows),
        report_only=bool(first["report_only"]),
        methods=tuple(row["method"] or "" for row in rows) if has_methods else (),
        evidence=tuple(row["evidence"] or "" for row in rows) if has_methods else (),
    )


def merge_clusters(earlier: list[DuplicateCluster], new: list[DuplicateCluster]) -> list[DuplicateCluster]:
    """Earlier and new clusters, those sharing a member merged (a shared member keeps its new row).

    A merged cluster's id is ``<stage>-<smallest member key>``, as a cluster found in one run would have.
    """
    parent: dict[int, int] = {}

    def find(index: int) -> int:
        while parent.setdefault(index, index) != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    ordered = [*earlier, *new]
    owner: dict[str, int] = {}
    for index, cluster in enumerate(ordered):
        find(index)
        for key in cluster.keys:
            if key in owner:
                parent[find(index)] = find(owner[key])
            owner[key] = index
    groups: dict[int, list[DuplicateCluster]] = {}
    for index, cluster in enumerate(ordered):
        groups.setdefault(find(index), []).append(cluster)
    merged = [_merge(group) for group in groups.values()]
    return sorted(merged, key=lambda cluster: cluster.cluster_id)


def _merge(group: list[DuplicateCluster]) -> DuplicateCluster:
    if len(group) == 1:
        return group[0]
    rows: dict[str, dict] = {}
    for cluster in group:  # earlier clusters first, so a new row replaces an earlier one
        rows.update((member["key"], member) for member in cluster.members())
    first = group[0]
    keyed = sorted(rows.values(), key=lambda row: (row["key"], row["source"]))
    has_methods = any(row["method"] for row in keyed)
    return DuplicateCluster(
        cluster_id=f"{first.stage}-{keyed[0]['key']}",
        stage=first.stage,
        scope=first.scope,
        metric=first.metric,
        keys=tuple(row["key"] for row in keyed),
        sources=tuple(row["source"] for row in keyed),
        survivors=tuple(row["survivor_key"] for row in keyed),
        distances=tuple(row["distance"] for row in keyed),
        removed=tuple(row["removed"] for row in keyed),
        report_only=any(cluster.report_only for cluster in group),
        methods=tuple(row["method"] for row in keyed) if has_methods else (),
        evidence=tuple(row["evidence"] for row in keyed) if has_methods else (),
    )


def merge_summaries(earlier: Mapping, capped: list[dict], counts: Mapping[str, int]) -> tuple[list[dict], dict]:
    """The capped buckets and added-up counts of an earlier summary and this run's."""
    listed = {json.dumps(item, sort_keys=True): item for item in [*earlier.get("capped_buckets", []), *capped]}
    totals = dict(counts)
    for name, value in earlier.items():
        if name not in DERIVED and isinstance(value, int):
            totals[name] = totals.get(name, 0) + value
    return [listed[text] for text in sorted(listed)], totals
