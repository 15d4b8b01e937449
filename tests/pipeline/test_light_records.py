"""Image bytes cross no shuffle: samples carry a reference into the run's image store, never the bytes.

The local runner keeps everything that crosses a stage boundary in memory (and a cluster runner shuffles it over
the network), so a run's memory and shuffle volume grow with the bytes that travel between stages. The test
records every buffer the FnApiRunner fills at a stage boundary (grouped and materialised alike) during a real run
and looks for the images of the shards, and of the inputs, in them.
"""

import errno
import json
import math
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import execution

from pipeline.launch import RunError
from schemas import compact
from tests.helpers import noise_images

NO_TEXT = {"text": {"required": False}, "caption": {"required": False}}


def _probes(data: bytes) -> list[bytes]:
    """Three 48-byte slices of ``data``: noise images make them unique to that image."""
    return [data[offset : offset + 48] for offset in (len(data) // 4, len(data) // 2, 3 * len(data) // 4)]


@pytest.fixture
def crossed(monkeypatch) -> list[bytes]:
    """Every buffer the FnApiRunner fills at a stage boundary (grouped and materialised alike) from now on, with
    records left uncompressed (``schemas.compact``) so their fields stand in the bytes as they are."""
    monkeypatch.setattr(compact, "COMPRESS_ABOVE", math.inf)
    seen: list[bytes] = []
    for buffer in (execution.GroupingBuffer, execution.ListBuffer):
        original = buffer.append

        def spy(self, data, original=original):
            seen.append(bytes(data))
            return original(self, data)

        monkeypatch.setattr(buffer, "append", spy)
    return seen


def test_no_stage_boundary_carries_image_bytes(tmp_path, run, crossed):
    inputs = noise_images(tmp_path / "in", 5, size=(128, 96), suffix="png", seed=100)
    # A Hugging Face dataset's Parquet file holds three more images in its rows, in two row groups.
    held = noise_images(tmp_path / "held", 3, size=(128, 96), suffix="png", seed=200)
    rows = [{"image": {"bytes": path.read_bytes(), "path": path.name}} for path in held]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub.parquet", row_group_size=2)
    out = run([tmp_path / "in", tmp_path / "hub.parquet"], output=tmp_path / "out", **NO_TEXT)

    samples = out.samples()
    assert len(samples) == len(inputs) + len(held)
    inputs += held
    everything = b"".join(crossed)
    # The records themselves do cross: the spy sees every sample's key (as the bytes it spells, in a compact record).
    assert all(bytes.fromhex(sample["__key__"]) in everything for sample in samples)
    for sample in samples:
        assert not any(probe in everything for probe in _probes(sample["jpg"])), sample["__key__"]
    for path in inputs:
        assert not any(probe in everything for probe in _probes(path.read_bytes())), path.name


def test_tar_members_and_incremental_runs_carry_no_image_bytes_across_a_boundary(tmp_path, run, crossed):
    first = noise_images(tmp_path / "in", 3, size=(128, 96), suffix="png", seed=200)
    members = noise_images(tmp_path / "members", 3, size=(128, 96), suffix="png", seed=300)
    with tarfile.open(tmp_path / "shard.tar", "w") as tar:
        for path in members:
            tar.add(path, arcname=path.name)
    run([tmp_path / "in", tmp_path / "shard.tar"], output=tmp_path / "out", **NO_TEXT)
    later = [
        path.rename(tmp_path / "in" / f"later-{path.name}")
        for path in noise_images(tmp_path / "later", 2, size=(128, 96), suffix="png", seed=400)
    ]
    out = run([tmp_path / "in", tmp_path / "shard.tar"], output=tmp_path / "out", **NO_TEXT)

    assert len(out.samples()) == len(first) + len(later) + len(members)
    assert json.loads((tmp_path / "out" / "_run" / "state.json").read_text())["generation"] == 1  # incremental
    everything = b"".join(crossed)
    for path in [*first, *later, *members]:
        assert not any(probe in everything for probe in _probes(path.read_bytes())), path.name


def test_the_image_store_is_gone_after_the_run(tmp_path, run):
    noise_images(tmp_path / "in", 2, size=(128, 96), suffix="png", seed=100)
    out = run([tmp_path / "in"], output=tmp_path / "out", **NO_TEXT)
    assert len(out.samples()) == 2
    assert not list((tmp_path / "out").glob("_staging*/*.images"))
    assert not (tmp_path / "out" / "_staging").exists()


def test_an_image_store_that_cannot_be_written_fails_the_run_naming_the_path(tmp_path, run, monkeypatch):
    import transforms.image_store

    noise_images(tmp_path / "in", 3, size=(128, 96), suffix="png", seed=100)
    refused = []

    def disk_full(path, data):
        refused.append(path)
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(transforms.image_store, "write_atomic", disk_full)
    with pytest.raises(RunError) as raised:
        run([tmp_path / "in"], output=tmp_path / "out", **NO_TEXT)

    message = str(raised.value)
    assert "No space left on device" in message
    assert any(path in message for path in refused), message  # the image it could not write
    assert "nothing was committed" in message.lower() or "Nothing was committed" in message


def test_a_shard_write_that_finds_the_disk_full_says_what_to_do_and_commits_nothing(tmp_path, run, monkeypatch):
    import transforms.shard_writer

    noise_images(tmp_path / "in", 3, size=(128, 96), suffix="png", seed=100)

    def disk_full(path, members):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(transforms.shard_writer, "write_tar", disk_full)
    with pytest.raises(RunError) as raised:
        run([tmp_path / "in"], output=tmp_path / "out", **NO_TEXT)

    message = str(raised.value)
    assert "Nothing was committed" in message
    assert f"A disk is full: free space on the disk of the output folder ({tmp_path / 'out'})" in message
    assert sorted(path.name for path in (tmp_path / "out").iterdir()) == ["_staging"]  # nothing committed
    final = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and "_staging" not in p.parts]
    assert final == []
