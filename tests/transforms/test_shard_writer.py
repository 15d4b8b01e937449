"""The shard writer every view shares: key ranges, one shard's files and statistics, the wids index."""

import hashlib
import json
import tarfile
from collections import Counter
from fractions import Fraction

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.config.shards import ShardsConfig
from transforms.shard_writer import (
    ShardItem,
    canonical_json,
    sampled,
    shard_count,
    shard_name,
    shard_of,
    slot_of,
    write_index,
    write_shard,
)

SCHEMA = pa.schema([("key", pa.string()), ("note", pa.string())])


def _position(key: str) -> Fraction:
    """Where a key lies in the key space ``[0, 1)``: its first 60 bits (15 hex digits), as the module defines it."""
    return Fraction(int(key[:15], 16), 16**15)


@pytest.mark.parametrize(
    ("key", "shards", "slot"),
    [
        ("0" * 32, 4, 0),
        ("f" * 32, 4, 3),
        ("3" + "f" * 31, 4, 0),  # just below a quarter
        ("4" + "0" * 31, 4, 1),  # exactly a quarter starts the second range
        ("c" + "0" * 31, 4, 3),
        ("7" + "f" * 31, 2, 0),
        ("8" + "0" * 31, 2, 1),
        ("5" * 15 + "0" * 17, 3, 0),  # 0x555555555555555 / 16**15 is just below 1/3
        ("5" * 14 + "6" + "0" * 17, 3, 1),  # and the next 60-bit position is just above it
        ("a" * 15 + "0" * 17, 3, 1),  # just below 2/3
        ("a" * 14 + "b" + "0" * 17, 3, 2),
        ("0" * 31 + "1", 1000, 0),
    ],
)
def test_shard_slot_of_hand_picked_keys_follows_the_equal_key_ranges(key, shards, slot):
    assert shard_of(key, shards) == slot


@given(st.lists(st.text("0123456789abcdef", min_size=32, max_size=32), min_size=1, max_size=50), st.integers(1, 40))
def test_shard_slots_are_ordered_like_the_keys_and_each_key_lies_in_its_slots_range(keys, shards):
    slots = [shard_of(key, shards) for key in sorted(keys)]
    assert slots == sorted(slots)
    for key, slot in zip(sorted(keys), slots, strict=True):
        assert Fraction(slot, shards) <= _position(key) < Fraction(slot + 1, shards)


def test_shard_count_honours_both_size_targets_and_the_minimum():
    config = ShardsConfig(samples_per_shard=100, bytes_per_shard=1000, min_shards=2)
    assert shard_count(1, 10, config) == 2
    assert shard_count(1000, 10, config) == 10
    assert shard_count(10, 50_000, config) == 50


def test_slot_of_uses_the_split_s_totals():
    config = ShardsConfig(samples_per_shard=2, bytes_per_shard=10**9, min_shards=1)
    assert slot_of("train", "f" * 32, {"train": (4, 0)}, config) == ("train", 1)
    assert slot_of("test", "f" * 32, {"test": (1, 0)}, config) == ("test", 0)


def test_a_share_keeps_a_stable_first_part_of_the_key_space():
    assert sampled("0" * 32, 0.01) and not sampled("f" * 32, 0.99) and sampled("f" * 32, 1.0)


def test_a_view_s_share_fills_every_shard_slot_not_the_first_share_of_them():
    """Slots cut over the whole key space left a half-share view half its slots empty, the rest twice their size."""
    keys = [hashlib.sha256(str(n).encode()).hexdigest() for n in range(2000)]
    config = ShardsConfig(samples_per_shard=100, min_shards=8)
    for share in (0.5, 0.1):
        kept = [key for key in keys if sampled(key, share)]
        assert abs(len(kept) - share * len(keys)) < 4 * (share * len(keys)) ** 0.5  # a hash's share, roughly
        slots = Counter(slot_of("train", key, {"train": (len(kept), 0)}, config, share)[1] for key in kept)
        shards = max(8, -(-len(kept) // 100))
        assert sorted(slots) == list(range(shards))
        assert max(slots.values()) <= 1.5 * len(kept) / shards


def test_shard_names_carry_the_generation_after_a_first_run():
    assert shard_name(3) == "shard-000003"
    assert shard_name(3, generation=2) == "shard-g0002-000003"


def _item(element: tuple[str, str]) -> ShardItem:
    key, domain = element
    members = [(f"{key}.json", canonical_json({"key": key})), (f"{key}.txt", domain.encode())]
    return ShardItem(key, domain, len(domain), members, {"key": key, "note": domain})


def test_write_shard_writes_members_in_order_a_sidecar_extras_and_stats(tmp_path):
    elements = [("0a", "factory"), ("0b", "marketing"), ("0c", "factory")]
    stats = write_shard(str(tmp_path), "shard-000000", "pairs", "train", elements, _item, SCHEMA, {"npy": b"x"})
    with tarfile.open(tmp_path / "shard-000000.tar") as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["0a.json", "0a.txt", "0b.json", "0b.txt", "0c.json", "0c.txt"]
        assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and m.uname == "" for m in members)
        assert tar.extractfile("0b.txt").read() == b"marketing"
    assert pq.read_table(tmp_path / "shard-000000.parquet").to_pylist() == [
        {"key": key, "note": domain} for key, domain in elements
    ]
    assert (tmp_path / "shard-000000.npy").read_bytes() == b"x"
    assert stats.bytes == (tmp_path / "shard-000000.tar").stat().st_size
    assert (stats.samples, stats.image_bytes, stats.first_key, stats.last_key) == (3, 23, "0a", "0c")
    assert stats.domains == {"factory": 2, "marketing": 1}
    written = json.loads((tmp_path / "shard-000000_stats.json").read_text())
    assert written == stats.model_dump()


def test_write_shard_is_byte_identical_when_repeated(tmp_path):
    elements = [("0a", "factory"), ("0b", "marketing")]
    for folder in ("one", "two"):
        write_shard(str(tmp_path / folder), "shard-000001", "edit", "val", elements, _item, SCHEMA)
    for name in ("shard-000001.tar", "shard-000001.parquet", "shard-000001_stats.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_index_lists_a_split_s_shards_in_name_order(tmp_path):
    elements = [("0a", "factory")]
    stats = [
        write_shard(str(tmp_path / "shards" / "docs" / "train"), name, "docs", "train", elements, _item, SCHEMA)
        for name in ("shard-000002", "shard-000000")
    ]
    write_index(("train", stats), output=str(tmp_path), view="docs")
    index = json.loads((tmp_path / "shards" / "docs" / "train" / "index.json").read_text())
    assert index["__kind__"] == "wids-shard-index-v1" and index["name"] == "docs/train"
    assert [entry["url"] for entry in index["shardlist"]] == ["shard-000000.tar", "shard-000002.tar"]


def test_write_shard_refuses_two_elements_with_one_key(tmp_path):
    elements = [("0a", "factory"), ("0b", "marketing"), ("0b", "factory")]
    with pytest.raises(ValueError, match="share the key 0b"):
        write_shard(str(tmp_path), "shard-000000", "pairs", "train", elements, _item, SCHEMA)
