"""Shard writing: deterministic tars with sidecars, stats and a wids index, readable by webdataset and torch."""

import json
import re
import tarfile
from fractions import Fraction

import pyarrow.parquet as pq
import pytest

KEY = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    from tests.helpers import make_photo, run_job, write_sidecar

    root = tmp_path_factory.mktemp("shards")
    images = root / "images"
    images.mkdir()
    for seed in range(23):
        path = images / f"img{seed:02d}.jpg"
        make_photo(160 + seed, 120, seed=seed).save(path, quality=85)
        write_sidecar(
            path, title=f"caption {seed}", domain="factory" if seed % 2 else "marketing", line=f"L{seed % 3}"
        )
    return run_job([images], root / "out", shards={"samples_per_shard": 5})


def test_shards_hold_every_kept_sample_once_sorted_by_key(written):
    kept = sorted(row["key"] for row in written.ledger if row["status"] == "kept")
    assert len(kept) == 23
    seen = []
    for path in written.shard_paths():
        with tarfile.open(path) as tar:
            members = tar.getmembers()
        names = [member.name for member in members]
        keys = [name.split(".", 1)[0] for name in names[::3]]
        assert keys == sorted(keys)
        assert all(member.mtime == 0 and member.uid == 0 and member.gid == 0 for member in members)
        assert {name.split(".", 1)[1] for name in names} == {"jpg", "json", "txt"}
        seen += keys
    assert sorted(seen) == kept
    assert all(KEY.match(key) for key in seen)


def test_no_empty_shards_and_index_counts_match(written):
    total = 0
    for index_path in (written.path / "shards" / "pairs").glob("*/index.json"):
        folder = index_path.parent
        index = json.loads(index_path.read_text())
        assert index["__kind__"] == "wids-shard-index-v1"
        counts = {entry["url"]: entry["nsamples"] for entry in index["shardlist"]}
        assert set(counts) == {path.name for path in folder.glob("*.tar")}
        assert all(count > 0 for count in counts.values())
        total += sum(counts.values())
        for url, count in counts.items():
            stats = json.loads((folder / url.replace(".tar", "_stats.json")).read_text())
            assert stats["samples"] == count
            sidecar = pq.read_table(folder / url.replace(".tar", ".parquet"))
            assert sidecar.num_rows == count
            assert "image" not in sidecar.column_names
    assert total == 23


def test_sample_json_carries_provenance_and_metadata(written):
    sample = written.samples()[0]
    record = json.loads(sample["json"])
    assert record["schema_version"] == 1
    assert record["metadata"]["line"].startswith("L")
    assert record["original"]["format"] == "JPEG"
    assert record["image_member"] == f"{sample['__key__']}.jpg"
    assert sample["txt"].decode() == record["text"]


def test_shards_read_back_through_a_torch_dataloader_with_two_workers(written):
    import torch
    import webdataset as wds

    dataset = (
        wds.WebDataset([str(p) for p in written.shard_paths()], shardshuffle=False, nodesplitter=wds.split_by_node)
        .decode("pil")
        .to_tuple("__key__", "jpg", "txt")
        .map_tuple(lambda key: key, lambda image: image.size, lambda text: text)
    )
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=2)
    keys = [key for key, size, text in loader]
    assert sorted(keys) == sorted(row["key"] for row in written.ledger if row["status"] == "kept")


def _position(key: str) -> Fraction:
    """Where a key lies in the key space ``[0, 1)``: its first 60 bits (15 hex digits), as the module defines it."""
    return Fraction(int(key[:15], 16), 16**15)


def test_each_shard_covers_its_own_contiguous_key_range_named_in_its_stats(written):
    folders = {path.parent for path in written.shard_paths()}
    assert folders
    for folder in folders:
        # 23 samples at 5 per shard: ceil(23 / 5) = 5 key ranges of a fifth of the key space each.
        shards, previous_last = 5, None
        for path in sorted(folder.glob("shard-*.tar")):
            slot = int(path.stem.rsplit("-", 1)[1])
            with tarfile.open(path) as tar:
                keys = sorted({member.name.split(".", 1)[0] for member in tar.getmembers()})
            stats = json.loads((folder / f"{path.stem}_stats.json").read_text())
            assert (stats["first_key"], stats["last_key"]) == (keys[0], keys[-1])
            assert all(Fraction(slot, shards) <= _position(key) < Fraction(slot + 1, shards) for key in keys)
            assert previous_last is None or previous_last < keys[0]  # shards in key order, ranges disjoint
            previous_last = keys[-1]
