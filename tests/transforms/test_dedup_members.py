"""Members and edges of a dedup stage: scope and label text, survivor rank, union-find, bucket forests, pickling."""

import itertools
import math
import pickle

from transforms._dedup_members import Edge, Member, UnionFind, field_values, forest_edges, survivor_rank


def _member(source: str, labels: str = "", **fields) -> Member:
    return Member(source, f"k{source}", "d", "", labels, ("rank", f"k{source}", source), **fields)


def test_field_values_are_json_of_domain_and_metadata_and_empty_without_fields():
    assert field_values([], "web", {"a": 1}) == ""
    assert field_values(["domain", "a", "missing"], "web", {"a": 1}) == '["web", 1, null]'
    assert field_values(["when"], "web", {"when": 1.5j}) == '["1.5j"]'


def test_survivor_rank_prefers_shipped_then_each_criterion_larger_then_key():
    common = {"source": "s", "file_size": 10, "richness": 0, "scores": {}}
    small = survivor_rank(["resolution"], key="a", pixels=100, **common)
    large = survivor_rank(["resolution"], key="b", pixels=400, **common)
    shipped = survivor_rank(["resolution"], key="c", pixels=1, shipped=True, **common)
    assert sorted([small, large, shipped]) == [shipped, large, small]
    assert survivor_rank([], key="a", pixels=1, **common) < survivor_rank([], key="b", pixels=9, **common)


def test_clip_score_is_the_largest_clip_named_score_and_a_sample_without_one_ranks_last():
    common = {"source": "s", "pixels": 1, "file_size": 1, "richness": 0}
    scored = survivor_rank(["clip_score"], key="b", scores={"clip_a": 0.2, "clip_b": 0.3, "other": 9.0}, **common)
    assert scored[1] == -0.3
    unscored = survivor_rank(["clip_score"], key="a", scores={"other": 9.0}, **common)
    assert unscored[1] == math.inf and scored < unscored


def test_union_find_roots_are_the_smallest_member_whatever_the_order_of_unions():
    for order in itertools.permutations([(0, 3), (3, 1), (4, 2)]):
        found = UnionFind(5)
        assert all(found.union(a, b) for a, b in order)
        assert [found.find(node) for node in range(5)] == [0, 0, 2, 0, 2]
        assert not found.union(1, 3)


def test_a_bucket_of_near_identical_members_leaves_a_spanning_forest():
    members = [_member(str(index)) for index in range(6)]
    pairs = list(itertools.combinations(range(6), 2))
    edges = list(forest_edges(members, pairs, method="phash"))
    assert len(edges) == 5 and all(edge.same_label and edge.method == "phash" for edge in edges)


def test_the_forest_keeps_both_the_whole_component_and_each_same_label_component():
    members = [_member(str(index), labels=f'["{index % 2}"]') for index in range(6)]
    edges = list(forest_edges(members, itertools.combinations(range(6), 2)))
    assert len(edges) <= 2 * (6 - 1)
    every, same = UnionFind(6), UnionFind(6)
    index = {member.source: position for position, member in enumerate(members)}
    for edge in edges:
        every.union(index[edge.a.source], index[edge.b.source])
        if edge.same_label:
            same.union(index[edge.a.source], index[edge.b.source])
    assert {every.find(node) for node in range(6)} == {0}
    assert [same.find(node) for node in range(6)] == [0, 1, 0, 1, 0, 1]


def test_a_member_survives_pickling_with_and_without_the_key_and_source_at_the_end_of_its_rank():
    plain = _member("1", labels='["x"]', shipped=True, features=(1, 2))
    other = Member("2", "ab", "d", '["s"]', "", (0, -5), features=b"\x01")
    for member in (plain, other):
        assert pickle.loads(pickle.dumps(member)) == member
    assert Edge(plain, other, False).evidence == ()


def test_a_member_read_back_pickles_to_the_same_bytes_as_a_fresh_equal_one():
    """A member keeps its packed bytes (it crosses many shuffles): what it pickles to must still depend on its values
    only, whether it was built here, read back from a shuffle, or pickled before."""
    fresh = _member("7", labels='["x"]', features=(3, 4, b"\x00" * 400))
    blob = pickle.dumps(fresh)
    again = pickle.loads(blob)
    assert again == fresh and pickle.dumps(again) == blob == pickle.dumps(fresh)
    twin = _member("7", labels='["x"]', features=(3, 4, b"\x00" * 400))
    assert pickle.dumps(twin) == blob
    other = _member("7", labels='["y"]', features=(3, 4, b"\x00" * 400))
    assert pickle.loads(pickle.dumps(other)) == other != again
