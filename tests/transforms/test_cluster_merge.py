"""Duplicate clusters over runs: an incremental run's clusters merged with the earlier ones."""

from schemas.records.dedup import DuplicateCluster
from transforms._cluster_files import cluster_rows
from transforms._cluster_merge import clusters_from_rows, merge_clusters, merge_summaries


def _cluster(keys, survivor, removed, distances=None):
    return DuplicateCluster(
        cluster_id=f"near_dedup-{min(keys)}",
        stage="near_dedup",
        scope="",
        metric="phash_hamming",
        keys=tuple(keys),
        sources=tuple(f"/in/{key}.jpg" for key in keys),
        survivors=tuple(survivor for _ in keys),
        distances=tuple(distances or [0.0 if key == survivor else 3.0 for key in keys]),
        removed=tuple(removed),
    )


def test_a_new_copy_of_a_shipped_survivor_joins_its_earlier_cluster():
    earlier = [_cluster(["b1", "s1"], "s1", [True, False]), _cluster(["c1", "t1"], "t1", [True, False])]
    new = [_cluster(["a1", "s1"], "s1", [True, False], [5.0, 0.0]), _cluster(["u1", "v1"], "u1", [False, True])]

    merged = {cluster.cluster_id: cluster for cluster in merge_clusters(earlier, new)}

    assert sorted(merged) == ["near_dedup-a1", "near_dedup-c1", "near_dedup-u1"]
    grown = merged["near_dedup-a1"]
    assert grown.keys == ("a1", "b1", "s1") and grown.removed == (True, True, False)
    assert grown.survivors == ("s1", "s1", "s1") and grown.distances == (5.0, 3.0, 0.0)
    assert merged["near_dedup-c1"] == earlier[1] and merged["near_dedup-u1"] == new[1]


def test_clusters_read_back_from_their_rows_are_the_clusters_written():
    clusters = [_cluster(["b1", "s1"], "s1", [True, False]), _cluster(["c1", "d1", "t1"], "t1", [True, True, False])]
    assert clusters_from_rows(cluster_rows(clusters)) == clusters


def test_summaries_add_counts_and_keep_each_capped_bucket_once():
    earlier = {"stage": "semantic_dedup", "clusters": 4, "skipped_smoke_embeddings": 6, "capped_buckets": [{"b": 1}]}
    capped, counts = merge_summaries(earlier, [{"b": 1}, {"b": 2}], {"skipped_smoke_embeddings": 4})
    assert capped == [{"b": 1}, {"b": 2}]
    assert counts == {"skipped_smoke_embeddings": 10}
