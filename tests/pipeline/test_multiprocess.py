"""Worker processes lose no input, and a run whose books do not add up commits nothing.

Beam 2.77's FnApiRunner flushes the data it sends to worker processes from a timer thread, racing the thread that
writes it; elements written in between vanish (``pipeline.profiles.close_flush_race``). The race needs a send that
outlasts the timer's period, so at test sizes it is provoked by shortening Beam's period to 1 ms: without the fix,
2,000 images then lose about half of their ledger rows (measured), and with it every input is accounted for.
"""

import hashlib
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.runners.portability.fn_api_runner import worker_handlers

import transforms.apply_rejections
from pipeline.launch import RunError
from tests.helpers import noise_images

TWO_PROCESSES = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=2"]
NO_TEXT = {"text": {"required": False}, "caption": {"required": False}}


def _digest(files: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    return digest.hexdigest()


def test_a_lost_item_fails_the_run_naming_it_and_commits_nothing(tmp_path, run, monkeypatch):
    images = noise_images(tmp_path / "in", 6, size=(64, 48))
    lost = str(images[3])
    keep_all = transforms.apply_rejections._survivors

    def lose_one(element):
        yield from (sample for sample in keep_all(element) if sample.source != lost)

    monkeypatch.setattr(transforms.apply_rejections, "_survivors", lose_one)
    with pytest.raises(RunError) as raised:
        run([tmp_path / "in"], output=tmp_path / "out", **NO_TEXT)
    message = str(raised.value)
    assert "books do not add up; nothing was committed" in message
    assert "ingest listed 6 items" in message and "the ledger has 5 rows" in message
    assert f"1 sources were listed but have no ledger row (lost), among them:\n    {lost}" in message
    assert not (tmp_path / "out" / "ledger").exists()
    assert not (tmp_path / "out" / "shards").exists()


@pytest.mark.slow
def test_two_worker_processes_account_for_every_input_even_when_beam_flushes_every_millisecond(
    tmp_path, run, monkeypatch
):
    images = noise_images(tmp_path / "in", 2000)
    # A folder metadata file (Hugging Face's ImageFolder layout) names every image, and two files that are not there.
    captions = {path.name: f"noise picture number {index}" for index, path in enumerate(images)}
    rows = [{"file_name": name, "caption": text} for name, text in captions.items()]
    rows += [{"file_name": "gone-1.jpg", "caption": "lost"}, {"file_name": "gone-2.jpg", "caption": "lost"}]
    (tmp_path / "in" / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    # A Hugging Face Parquet file holds 600 more images in its rows, 100 to a row group.
    held = noise_images(tmp_path / "held", 600, seed=5000)
    table = [{"image": {"bytes": p.read_bytes(), "path": p.name}, "caption": f"held {p.name}"} for p in held]
    hub = tmp_path / "hub.parquet"
    pq.write_table(pa.Table.from_pylist(table), hub, row_group_size=100)
    monkeypatch.setattr(worker_handlers, "DATA_BUFFER_TIME_LIMIT_MS", 1)
    # The face pass (a Haar cascade, ~37 ms on each noise picture: half of this test's time) only passes samples on.
    config = {**NO_TEXT, "faces": {"enabled": False}}
    multi = run([tmp_path / "in", hub], output=tmp_path / "multi", beam_args=TWO_PROCESSES, **config)
    one = ["--runner=DirectRunner", "--direct_num_workers=1"]  # 2,000 inputs would get one process per core
    single = run([tmp_path / "in", hub], output=tmp_path / "single", beam_args=one, **config)

    rows = {row["source"]: row for row in multi.ledger}
    missing = [f"{tmp_path / 'in' / 'metadata.jsonl'}#{number}" for number in (2001, 2002)]
    in_rows = [f"{hub}#{number}" for number in range(1, len(held) + 1)]
    assert sorted(rows) == sorted([str(path) for path in images] + missing + in_rows)
    assert {rows[source]["status"] for source in [*map(str, images), *in_rows]} == {"kept"}
    assert {rows[source]["reason"] for source in missing} == {"missing_file"}
    captions.update({f"hub.parquet#{number}": f"held {path.name}" for number, path in enumerate(held, start=1)})
    assert multi.texts_by_name() == captions
    assert _digest(multi.file_bytes()) == _digest(single.file_bytes())
