"""Near dedup's band buckets: every pair within k found, open groups giving the edges of whole buckets, a
fingerprint's member, and the ledger detail."""

import random
from collections import defaultdict

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.config.near_dedup import NearDedupConfig
from schemas.records.dedup import Fingerprint
from tests.transforms import scenes
from transforms._dedup_members import Member, forest_edges
from transforms._hash_match import HashFeatures, Limits, band_layout, band_values
from transforms._near_buckets import (
    band_entries,
    bucket_pairs,
    colour_size,
    group_edges,
    loose_pairs,
    member_id,
    near_distance,
    near_member,
    open_group,
    open_members,
)


def _flip(value: int, bits: list[int]) -> int:
    for bit in bits:
        value ^= 1 << bit
    return value


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), k=st.integers(0, 12))
def test_band_buckets_find_exactly_the_pairs_within_k(seed, k):
    rng = random.Random(seed)
    values = [rng.getrandbits(64) for _ in range(30)]
    values += [_flip(rng.choice(values), rng.sample(range(64), rng.randint(0, k + 2))) for _ in range(30)]
    members = [
        Member(f"s{i:03d}", f"k{i:03d}", "d", "", "", (i,), features=HashFeatures(v)) for i, v in enumerate(values)
    ]
    layout = band_layout(k)
    buckets = defaultdict(list)
    for member in members:
        for band, value in enumerate(band_values(member.features.phash, layout)):
            buckets[(band, value)].append(member)
    found = set()
    for bucket in buckets.values():
        for i, j in bucket_pairs(bucket, Limits(k), max_bucket=1000):
            found.add(frozenset((bucket[i].source, bucket[j].source)))
    expected = {
        frozenset((a.source, b.source))
        for index, a in enumerate(members)
        for b in members[index + 1 :]
        if (a.features.phash ^ b.features.phash).bit_count() <= k
    }
    assert found == expected


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), k=st.integers(2, 10), max_bucket=st.sampled_from([3, 6, 1000]))
def test_open_groups_give_the_edges_and_candidates_of_whole_buckets(seed, k, max_bucket):
    """Buckets carry ids and pHashes only; verifying the open members joined with their features gives exactly the
    edges (in order), keypoint candidates and related pairs of verifying the whole bucket, capped buckets and colour
    sizes that tie included."""
    rng = random.Random(seed)
    bases = [(rng.getrandbits(64), bytes(rng.randrange(256) for _ in range(48))) for _ in range(8)]
    members = []
    for index in range(40):
        phash, colour = rng.choice(bases)
        phash = _flip(phash, rng.sample(range(64), rng.choice([0, 0, 1, k // 2, k, k + 1, k + 3])))
        if rng.random() < 0.5:
            colour = bytes(min(255, max(0, c + rng.randint(-3, 3))) for c in colour)
        elif rng.random() < 0.3:
            colour = bytes(rng.randrange(256) for _ in colour)  # a colour variant: related, not a duplicate
        colour = rng.choice([colour, colour, colour, colour[:27], None])
        labels = rng.choice(["", "", '["a"]'])
        members.append(
            Member(
                f"s{rng.getrandbits(20):07d}-{index}",
                f"k{index}",
                "d",
                "",
                labels,
                (index,),
                False,
                HashFeatures(phash, None, colour),
            )
        )
    limits, loose, layout = Limits(k, None, 8.0), k + 2, band_layout(k)
    related = rng.choice([None, rng.randint(0, k)])  # None: related pairs off
    by_id = {member_id(member.source): member for member in members}
    buckets = defaultdict(list)
    for member in members:
        for bucket, entry in band_entries(member, layout):
            buckets[bucket].append((member, entry))
    for bucket in buckets.values():
        whole = sorted((member for member, _ in bucket), key=lambda member: member.source)
        if len(whole) < 2:
            continue
        capped = len(whole) > max_bucket
        expected = [
            (e.a.source, e.b.source, e.same_label)
            for e in forest_edges(whole, bucket_pairs(whole, limits, max_bucket), "phash")
        ]
        expected_loose = [] if capped else list(loose_pairs(whole, limits, loose))
        # Related: one geometry (the hashes without colour pass), colours apart (the test with colour fails).
        geometry = set(bucket_pairs(whole, limits._replace(distance=related or 0, colour=None), max_bucket))
        coloured = set(bucket_pairs(whole, limits, max_bucket))
        off = capped or related is None
        expected_related = [] if off else sorted((whole[i].key, whole[j].key) for i, j in geometry - coloured)
        opened = open_group([entry for _, entry in bucket], capped, max(k, loose))
        if opened is None:
            assert (expected, expected_loose, expected_related) == ([], [], [])
            continue
        (_, group_capped, size), ids = opened
        found = group_edges([by_id[i] for i in ids], limits, group_capped, size, loose, related)
        assert [(e.a.source, e.b.source, e.same_label) for e in found.edges] == expected
        assert found.candidates == expected_loose
        assert sorted(tuple(sorted(pair)) for pair in found.related) == sorted(
            tuple(sorted(pair)) for pair in expected_related
        )


def test_open_members_are_those_within_reach_of_another_or_equal_in_a_capped_bucket():
    phashes = np.array([0b0000, 0b0011, 0b1111_0000, 0b1111_0000, 0xFFFF_0000_0000], dtype=np.uint64)
    assert open_members(phashes, False, 2).tolist() == [True, True, True, True, False]
    assert open_members(phashes, True, 2).tolist() == [False, False, True, True, False]
    assert not open_members(np.array([0, 0xFFFF], dtype=np.uint64), False, 8).any()


def test_the_colour_size_is_the_most_common_and_none_when_two_tie():
    assert colour_size([27, 27, 48, 0]) == 27
    assert colour_size([0, 0]) == 3
    assert colour_size([27, 48]) is None


def test_a_fingerprint_without_a_phash_has_no_member():
    fp = Fingerprint("k1", "/in/a.jpg", "", "", 100, 10, 1, "d", {}, {"colour": "00" * 27})
    assert list(near_member(fp, NearDedupConfig())) == []


def test_a_member_carries_its_hashes_scope_and_id():
    hashes = {"phash": "00000000000000ff", "colour": "01" * 27}
    fp = Fingerprint("k1", "/in/a.jpg", "", "", 100, 10, 1, "factory", {"line": "7"}, hashes)
    (member,) = near_member(fp, NearDedupConfig(scope=["line"]))
    assert (member.source, member.key, member.features.phash) == ("/in/a.jpg", "k1", 0xFF)
    assert member.features.colour == bytes([1] * 27) and member.scope != ""
    assert member_id("/in/a.jpg") == member_id(member.source) and len(member_id("/in/a.jpg")) == 16


def test_the_ledger_detail_names_bits_and_colour_distance():
    a = Member("a", "ka", "d", "", "", (0,), features=HashFeatures(0b1011, None, bytes(27)))
    b = Member("b", "kb", "d", "", "", (1,), features=HashFeatures(0b0001))
    assert near_distance(a, b) == (2.0, {"distance": 2, "colour_distance": None})
    distance, detail = near_distance(a, a)
    assert distance == 0.0 and detail["colour_distance"] == 0.0


def _signature(grid: np.ndarray) -> bytes:
    """A colour signature's bytes from a ``(cells, 3)`` CIELAB grid (``transforms.hashing.colour_signature``'s
    encoding)."""
    encoded = np.stack([grid[:, 0] * 2.55, grid[:, 1] + 128, grid[:, 2] + 128], axis=-1)
    return np.clip(np.rint(encoded), 0, 255).astype(np.uint8).tobytes()


def test_loose_candidates_leave_out_colour_variants_of_one_geometry_but_keep_overlay_copies():
    """A product in six colours with copies must not fill the per-image candidate bound: pairs the colour test
    closes (same geometry, colour differing beyond an edge patch) are no keypoint candidates; an overlay copy is."""
    red = scenes.lab_grid((50.0, 60.0, 40.0))
    blue = scenes.lab_grid((50.0, 10.0, -50.0))
    badge = red.reshape(12, 12, 3).copy()
    badge[0:2, 9:12] = (55.0, -70.0, 60.0)  # a green badge in a corner: 6 of 144 cells
    phash = 0x0123_4567_89AB_CDEF
    members = [
        Member(source, source, "d", "", "", (0,), False, HashFeatures(value, None, _signature(grid)))
        for source, value, grid in (
            ("a-red", phash, red),
            ("b-blue", _flip(phash, [1, 2]), blue),
            ("c-red-badge", _flip(phash, [3, 4]), badge.reshape(-1, 3)),
        )
    ]
    candidates = [pair for pair, _ in loose_pairs(members, Limits(8, None, 8.0), 10)]
    assert candidates == [("a-red", "c-red-badge")]
