"""What ``OUT/_run/`` records: the fingerprint of what a run keeps, the earlier run it builds on, merged indexes."""

import json

import pytest

from pipeline.job import RunError
from pipeline.run_state import STATE, earlier_run, merge_indexes, read_json, what_fingerprint, write_run_files
from schemas.config.load import load_config
from transforms._parts import parquet_bytes
from transforms.ledger import LEDGER_SCHEMA


def test_the_fingerprint_ignores_run_and_how_keys_but_not_thresholds():
    base = load_config(None, [])
    same = load_config(None, ["run.output='elsewhere'", "embed.batch_size=3", "clip.threads=2"])
    other = load_config(None, ["near_dedup.max_distance=6"])
    assert what_fingerprint(base) == what_fingerprint(same) != what_fingerprint(other)


def test_a_full_run_writes_the_state_the_next_run_builds_on(tmp_path):
    config = load_config(None, ["clip.smoke=true"])
    staging = str(tmp_path)
    write_run_files(staging, config, None, "DirectRunner", ["--x"], 1.23456, "source")
    state = read_json(str(tmp_path / "_run" / STATE))
    assert state == {"generation": 0, "what_sha256": what_fingerprint(config)}
    run_info = read_json(str(tmp_path / "_run" / "run.json"))
    assert (run_info["wall_seconds"], run_info["incremental"], run_info["source_config"]) == (1.235, False, "source")
    assert earlier_run(staging, config, rebuild=False) is None, "no ledger part: the run decided nothing"
    (tmp_path / "ledger").mkdir()
    (tmp_path / "ledger" / "part-00000.parquet").write_bytes(parquet_bytes([], LEDGER_SCHEMA))
    earlier = earlier_run(staging, config, rebuild=False)
    assert (earlier.generation, earlier.has_shards) == (1, False)
    assert earlier_run(staging, config, rebuild=True) is None
    assert earlier_run(str(tmp_path / "empty"), config, rebuild=False) is None


def test_a_changed_kept_affecting_config_refuses_an_incremental_run(tmp_path):
    write_run_files(str(tmp_path), load_config(None, []), None, "DirectRunner", [], 1.0, "")
    with pytest.raises(RunError, match="rerun with --rebuild"):
        earlier_run(str(tmp_path), load_config(None, ["near_dedup.max_distance=6"]), rebuild=False)


def _index(folder, relative: str, urls: list[str]) -> None:
    path = folder / "shards" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"__kind__": "wids-shard-index-v1", "shardlist": [{"url": url} for url in urls]}))


def test_indexes_merge_by_url_and_earlier_shards_are_kept(tmp_path):
    staging, output = tmp_path / "staging", tmp_path / "out"
    _index(output, "pairs/train/index.json", ["shard-000000.tar", "shard-000001.tar"])
    (output / "shards" / "pairs" / "train" / "shard-000000.tar").write_bytes(b"tar")
    _index(output, "pairs/test/index.json", ["shard-000000.tar"])
    _index(staging, "pairs/train/index.json", ["shard-000001.tar", "shard-000002.tar"])
    keep = merge_indexes(str(staging), str(output))
    merged = read_json(str(staging / "shards" / "pairs" / "train" / "index.json"))
    assert [entry["url"] for entry in merged["shardlist"]] == [f"shard-00000{i}.tar" for i in range(3)]
    assert keep == {"shards/pairs/train/shard-000000.tar", "shards/pairs/test/index.json"}
