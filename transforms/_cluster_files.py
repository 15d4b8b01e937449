"""The cluster files of a dedup stage: ``dedup/<stage>.parquet`` (one row per member) and ``dedup/<stage>.json``.

``WriteClusters`` writes both once, from every ``DuplicateCluster`` of the stage, the buckets too large to compare
pairwise (each a dict, output ``CAPPED`` of the stage) and optional ``(name, n)`` counts; an incremental run merges
the earlier run's clusters in (``transforms._cluster_merge``), so the files describe the whole output.
``cluster_rows`` and ``summarise_clusters`` are the pure parts.
"""

import json
from collections import Counter
from collections.abc import Iterable, Mapping

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from schemas.records.dedup import DuplicateCluster
from transforms._cluster_merge import clusters_from_rows, merge_clusters, merge_summaries
from transforms._io import join, write_atomic
from transforms._parts import parquet_bytes

CAPPED = "capped"
LARGEST_LISTED = 20

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
