"""The cluster files of a dedup stage: rows per member, the summary in images, and both files written and read back."""

import json

import apache_beam as beam
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from schemas.records.dedup import DuplicateCluster
from transforms._cluster_files import CLUSTER_SCHEMA, LARGEST_LISTED, WriteClusters, cluster_rows, summarise_clusters


def _cluster(first: str, size: int, removed: int = 0, stage: str = "near_dedup") -> DuplicateCluster:
    keys = tuple(f"{first}{index}" for index in range(size))
    return DuplicateCluster(
        cluster_id=f"{stage}-{keys[0]}",
        stage=stage,
        scope="",
        metric="phash_hamming",
        keys=keys,
        sources=tuple(f"src/{key}" for key in keys),
        survivors=(keys[0],) * size,
        distances=(0.0,) + (3.0,) * (size - 1),
        removed=(False,) + tuple(index <= removed for index in range(1, size)),
    )


def test_rows_go_cluster_by_cluster_in_id_order_one_per_member():
    rows = cluster_rows([_cluster("b", 2), _cluster("a", 3)])
    assert [(row["cluster_id"], row["key"]) for row in rows] == [
        ("near_dedup-a0", "a0"),
        ("near_dedup-a0", "a1"),
        ("near_dedup-a0", "a2"),
        ("near_dedup-b0", "b0"),
        ("near_dedup-b0", "b1"),
    ]
    assert set(rows[0]) == set(CLUSTER_SCHEMA.names)
    assert rows[1]["survivor_key"] == "a0" and rows[1]["distance"] == 3.0 and rows[0]["size"] == 3


def test_the_summary_counts_images_sizes_removals_and_lists_the_largest_first():
    clusters = [_cluster(f"c{index:02d}", 2 + index % 3, removed=1) for index in range(LARGEST_LISTED + 5)]
    capped = [{"bucket": "z", "size": 900}, {"bucket": "a", "size": 700}]
    summary = summarise_clusters("near_dedup", clusters, capped, {"skipped": 4})
    assert summary["skipped"] == 4 and summary["stage"] == "near_dedup"
    assert summary["clusters"] == len(clusters)
    assert summary["images_in_clusters"] == sum(cluster.size for cluster in clusters)
    assert summary["images_removed"] == len(clusters)
    assert summary["cluster_sizes"] == {"2": 9, "3": 8, "4": 8}
    assert len(summary["largest"]) == LARGEST_LISTED and summary["largest"][0]["size"] == 4
    assert [item["bucket"] for item in summary["capped_buckets"]] == ["a", "z"]


def test_write_clusters_writes_the_parquet_rows_and_the_summary(tmp_path):
    clusters = [_cluster("b", 2, removed=1), _cluster("a", 3)]
    with BeamTestPipeline() as pipeline:
        found = pipeline | "Clusters" >> beam.Create(clusters)
        capped = pipeline | "Capped" >> beam.Create([{"bucket": "x", "size": 500}])
        counts = pipeline | "Counts" >> beam.Create([("skipped", 1), ("skipped", 2)])
        _ = (found, capped, counts) | WriteClusters(str(tmp_path), "near_dedup")
    table = pq.read_table(tmp_path / "dedup" / "near_dedup.parquet")
    assert table.schema.equals(CLUSTER_SCHEMA)
    assert table.to_pylist() == cluster_rows(clusters)
    summary = json.loads((tmp_path / "dedup" / "near_dedup.json").read_text())
    assert summary == summarise_clusters("near_dedup", clusters, [{"bucket": "x", "size": 500}], {"skipped": 3})
