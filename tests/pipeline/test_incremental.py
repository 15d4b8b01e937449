"""Incremental runs, retries of failed items, config-change refusal, the output lock and write failures."""

import io
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.launch import RunError
from pipeline.state import OutputBusy
from schemas import reasons
from tests.helpers import write_sidecar


def _add_photos(folder, photo, seeds):
    folder.mkdir(exist_ok=True)
    for seed in seeds:
        path = folder / f"photo{seed:02d}.jpg"
        photo(220, 160, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"photo {seed}", domain="factory")


def _kept(out):
    return {(json.loads(sample["json"])["key"], sample["txt"].decode()) for sample in out.samples()}


def test_incremental_run_processes_only_new_content_and_matches_a_full_run(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(6))
    first = run([inputs], output=tmp_path / "out")
    old_shards = {path: path.read_bytes() for path in first.shard_paths()}

    _add_photos(inputs, photo, range(6, 10))
    shutil.copy(inputs / "photo01.jpg", inputs / "renamed.jpg")  # known content under a new name
    write_sidecar(inputs / "renamed.jpg", title="photo 1 again", domain="factory")
    second = run([inputs], output=tmp_path / "out")
    full = run([inputs], output=tmp_path / "full")

    assert {path: path.read_bytes() for path in old_shards} == old_shards  # earlier shards untouched
    assert len(second.shard_paths()) > len(old_shards)
    assert _kept(second) == _kept(full)
    rows = second.ledger_by_name()
    assert len(second.ledger) == len(full.ledger) == 11
    assert rows["renamed.jpg"]["reason"] == reasons.EXACT_DUPLICATE
    assert json.loads(rows["renamed.jpg"]["detail"])["survivor_key"] == rows["photo01.jpg"]["key"]
    carried = {name: row for name, row in first.ledger_by_name().items()}
    assert all(rows[name] == row for name, row in carried.items())  # earlier rows carried unchanged
    index = json.loads(next((tmp_path / "out" / "shards" / "pairs").glob("*/index.json")).read_text())
    assert all(
        (tmp_path / "out" / "shards" / "pairs" / index["name"].split("/")[1] / e["url"]).exists()
        for e in index["shardlist"]
    )


def _copy(folder, photo, seed, name, size):
    path = folder / name
    photo(320, 240, seed=seed).resize(size).save(path, quality=80)
    write_sidecar(path, title=f"copy of {seed}", domain="factory")


def test_an_incremental_run_s_side_outputs_describe_the_whole_output(tmp_path, run, photo):
    inputs, later = tmp_path / "in", tmp_path / "later"
    for seed in range(10):
        folder = later if seed >= 6 else inputs
        folder.mkdir(exist_ok=True)
        photo(320, 240, seed=seed).save(folder / f"photo{seed:02d}.jpg", quality=90)
        write_sidecar(
            folder / f"photo{seed:02d}.jpg", title=f"photo {seed}", domain=("factory", "marketing")[seed % 2]
        )
    _copy(inputs, photo, 0, "a-copy1.jpg", (240, 180))
    quality = {"report_only": True}  # measured and written, nothing removed: every copy reaches near dedup
    run([inputs], output=tmp_path / "out", quality=quality)
    for path in later.iterdir():
        path.rename(inputs / path.name)
    _copy(inputs, photo, 0, "a-copy2.jpg", (200, 150))
    _copy(inputs, photo, 7, "b-copy.jpg", (240, 180))

    second = run([inputs], output=tmp_path / "out", quality=quality)
    full = run([inputs], output=tmp_path / "full", quality=quality)

    ours, theirs = second.file_bytes(), full.file_bytes()
    side = sorted(name for name in theirs if name.startswith(("audit/", "quality/", "dedup/")))
    assert "audit/audit.json" in side and "quality/histograms.json" in side and "audit/rankings.json" in side
    assert [name for name in side if ours.get(name) != theirs[name]] == ["dedup/near_dedup.parquet"]
    audit = json.loads(ours["audit/audit.json"])
    assert audit["measured"]["input"] == 13 and audit["items"] == {"kept": 10, "rejected": 3}

    def clusters(out):  # evidence differs by design: a later copy matched the survivor, not the earlier copy
        rows = pq.read_table(out.path / "dedup" / "near_dedup.parquet").to_pylist()
        return {(Path(row["source"]).name, row["cluster_id"], row["survivor_key"], row["removed"]) for row in rows}

    keys = second.ledger_by_name()
    assert clusters(second) == clusters(full)
    assert {(name, survivor) for name, _, survivor, removed in clusters(second) if removed} == {
        ("a-copy1.jpg", keys["photo00.jpg"]["key"]),
        ("a-copy2.jpg", keys["photo00.jpg"]["key"]),
        ("b-copy.jpg", keys["photo07.jpg"]["key"]),
    }


def test_new_copies_and_near_duplicates_of_shipped_images_are_rejected_naming_them(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))
    first = run([inputs], output=tmp_path / "out")
    shipped = {name: row["key"] for name, row in first.ledger_by_name().items()}
    shutil.copy(inputs / "photo00.jpg", inputs / "z-copy.jpg")
    photo(220, 160, seed=1).resize((440, 320)).save(inputs / "z-bigger.png")  # a full run would prefer it
    for name in ("z-copy.jpg", "z-bigger.png"):
        write_sidecar(inputs / name, title=f"new {name}", domain="factory")
    second = run([inputs], output=tmp_path / "out")
    rows = second.ledger_by_name()
    assert rows["z-copy.jpg"]["reason"] == reasons.EXACT_DUPLICATE
    assert json.loads(rows["z-copy.jpg"]["detail"])["survivor_key"] == shipped["photo00.jpg"]
    assert rows["z-bigger.png"]["reason"] == reasons.NEAR_DUPLICATE
    assert json.loads(rows["z-bigger.png"]["detail"])["survivor_key"] == shipped["photo01.jpg"]
    assert rows["photo01.jpg"]["status"] == "kept"
    assert len(second.ledger) == 5


def test_a_rerun_with_nothing_new_commits_nothing_even_with_unreadable_inputs(tmp_path, run, photo, caplog):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(2))
    (inputs / "empty.jpg").write_bytes(b"")
    (inputs / "notes.jpg").write_text("not an image", encoding="utf-8")
    first = run([inputs], output=tmp_path / "out")
    before = first.file_bytes()
    assert {row["status"] for name, row in first.ledger_by_name().items() if name != "empty.jpg"} >= {"rejected"}

    caplog.set_level(logging.INFO, logger="unishard")
    run([inputs], output=tmp_path / "out")

    assert "is unchanged" in caplog.text
    assert first.file_bytes() == before  # _run/state.json included: no new generation was committed


def test_a_renamed_or_deleted_file_alone_still_updates_the_ledger(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    first = run([inputs], output=tmp_path / "out")
    assert set(first.ledger_by_name()) == {"photo00.jpg", "photo01.jpg", "photo02.jpg", "broken.jpg"}

    (inputs / "photo01.jpg").rename(inputs / "moved.jpg")
    (inputs / "photo01.json").rename(inputs / "moved.json")
    (inputs / "broken.jpg").unlink()
    second = run([inputs], output=tmp_path / "out")

    rows = second.ledger_by_name()
    # the moved file's sample is still in its shard under the old name; the new name is its exact duplicate
    assert set(rows) == {"photo00.jpg", "photo01.jpg", "photo02.jpg", "moved.jpg"}
    assert rows["moved.jpg"]["reason"] == reasons.EXACT_DUPLICATE
    assert json.loads(rows["moved.jpg"]["detail"])["survivor_key"] == rows["photo01.jpg"]["key"]
    assert len(second.samples()) == 3
    # the audit counts what the ledger holds: the deleted file's earlier counts were taken out
    audit = json.loads((tmp_path / "out" / "audit" / "audit.json").read_text())
    assert audit["items"] == {"kept": 3, "rejected": 1}
    assert audit["measured"]["input"] == 4


def test_a_deleted_kept_file_is_named_while_its_sample_stays_and_a_rebuild_takes_it_out(tmp_path, run, photo, caplog):
    """An incremental run never rewrites earlier shards, so a deleted file's sample stays shipped: the run says so,
    naming the file, every time (a person who deleted it for its licence must not believe it gone)."""
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(4))
    run([inputs], output=tmp_path / "out")
    (inputs / "photo02.jpg").unlink()
    (inputs / "photo02.json").unlink()
    caplog.set_level(logging.INFO, logger="unishard")
    for _ in range(2):  # the run that sees the deletion, and the next one, which changes nothing
        caplog.clear()
        second = run([inputs], output=tmp_path / "out")
        assert "1 kept sample's files are no longer in the input" in caplog.text
        assert str(inputs / "photo02.jpg") in caplog.text and "--rebuild" in caplog.text
        assert second.ledger_by_name()["photo02.jpg"]["status"] == "kept" and len(second.samples()) == 4
    caplog.clear()
    rebuilt = run([inputs], output=tmp_path / "out", rebuild=True)
    assert set(rebuilt.ledger_by_name()) == {"photo00.jpg", "photo01.jpg", "photo03.jpg"}
    assert len(rebuilt.samples()) == 3 and "no longer in the input" not in caplog.text


def test_failed_items_are_retried_on_the_next_run(tmp_path, run, photo, monkeypatch):
    import transforms.text

    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(4))
    original = transforms.text.choose_text

    def flaky(metadata, *rest):
        if metadata.get("title") == "photo 2":
            raise TimeoutError("caption service timed out")
        return original(metadata, *rest)

    monkeypatch.setattr(transforms.text, "choose_text", flaky)
    first = run([inputs], output=tmp_path / "out", run={"max_failure_ratio": 0.5})
    assert first.ledger_by_name()["photo02.jpg"]["status"] == "failed"
    monkeypatch.setattr(transforms.text, "choose_text", original)
    second = run([inputs], output=tmp_path / "out", run={"max_failure_ratio": 0.5})
    assert second.ledger_by_name()["photo02.jpg"]["status"] == "kept"
    assert len(second.samples()) == 4
    audit = json.loads((tmp_path / "out" / "audit" / "audit.json").read_text())
    assert audit["items"] == {"kept": 4}  # the retried item's failed count was taken out


def test_a_kept_affecting_config_change_needs_rebuild(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(2))
    run([inputs], output=tmp_path / "out")
    with pytest.raises(RunError, match=r"keeps different things \(normalise.max_side: 1024 -> 128; .*--rebuild"):
        run([inputs], output=tmp_path / "out", normalise={"max_side": 128})
    rebuilt = run([inputs], output=tmp_path / "out", normalise={"max_side": 128}, rebuild=True)
    assert all(json.loads(s["json"])["image"]["width"] <= 128 for s in rebuilt.samples())


def test_an_input_added_after_the_earlier_ones_is_incremental_and_a_removed_or_changed_one_is_named(
    tmp_path, run, photo
):
    """Adding a week's folder as a second --input was refused as a config change, dumping both input lists."""
    first_week, second_week, out = tmp_path / "week1", tmp_path / "week2", tmp_path / "out"
    _add_photos(first_week, photo, range(3))
    _add_photos(second_week, photo, range(3, 5))
    first = run([first_week], output=out)
    old_shards = {path: path.read_bytes() for path in first.shard_paths()}

    second = run([first_week, second_week], output=out)
    full = run([first_week, second_week], output=tmp_path / "full")

    assert json.loads((out / "_run" / "state.json").read_text())["generation"] == 1  # incremental, not rebuilt
    assert all(path.read_bytes() == data for path, data in old_shards.items())
    assert _kept(second) == _kept(full) and len(_kept(full)) == 5
    with pytest.raises(RunError, match=rf"\(ingest.inputs: {re.escape(str(first_week))} removed"):
        run([second_week], output=out)
    changed = [{"path": str(first_week), "domain": "marketing"}, second_week]
    with pytest.raises(RunError, match=r"ingest.inputs: .*week1 changed \(domain None -> 'marketing'\)"):
        run(changed, output=out)


def test_an_output_of_a_version_without_a_new_config_key_stays_incremental_while_the_key_holds_its_default(
    tmp_path, run, photo
):
    """Every new key changed the config's fingerprint, so an upgrade refused every incremental run."""
    inputs, out = tmp_path / "in", tmp_path / "out"
    _add_photos(inputs, photo, range(3))
    run([inputs], output=out)
    recorded = json.loads((out / "_run" / "config.json").read_text())
    del recorded["ingest"]["ignore"]  # as the version before ingest.ignore wrote it, with its own fingerprint
    (out / "_run" / "config.json").write_text(json.dumps(recorded))
    state = json.loads((out / "_run" / "state.json").read_text())
    (out / "_run" / "state.json").write_text(json.dumps({**state, "what_sha256": "0" * 64}))
    _add_photos(inputs, photo, range(3, 5))

    second = run([inputs], output=out)

    assert len(second.ledger) == 5 and len(second.samples()) == 5
    assert json.loads((out / "_run" / "run.json").read_text())["incremental"] is True
    with pytest.raises(RunError, match=r"\(ingest.ignore: \[\] -> \['\*.png'\]; from "):
        run([inputs], output=out, ingest={"ignore": ["*.png"]})


def test_a_shipped_file_with_new_content_replaces_its_old_sample_everywhere(tmp_path, run, photo, caplog):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))
    first = run([inputs], output=tmp_path / "out")
    old_key = first.ledger_by_name()["photo01.jpg"]["key"]
    assert any(old_key.encode() in data for name, data in first.file_bytes().items() if name.startswith("shards/"))
    changed = inputs / "photo01.jpg"
    photo(220, 160, seed=77).save(changed, quality=90)  # same name, other picture
    photo(220, 160, seed=78).save(inputs / "photo02.jpg", quality=90)  # and a second one
    _add_photos(inputs, photo, [3])

    second = run([inputs], output=tmp_path / "out")

    assert f"{changed} changed content" in caplog.text and "rebuilt" in caplog.text
    # the job stops at the first changed file; the rebuilt run names them all (it named only the first)
    listed = caplog.text.split("2 files' changed content replaces their earlier sample, among them:", 1)[1]
    assert str(changed) in listed and str(inputs / "photo02.jpg") in listed
    rows = second.ledger_by_name()
    assert len(rows) == 4 and rows["photo01.jpg"]["status"] == reasons.KEPT
    assert rows["photo01.jpg"]["key"] != old_key
    assert json.loads(rows["photo01.jpg"]["detail"])["replaces_key"] == old_key
    assert "replaces_key" in json.loads(rows["photo02.jpg"]["detail"])
    assert "replaces_key" not in json.loads(rows["photo00.jpg"]["detail"])
    samples = second.samples()
    assert len(samples) == 4 and all(json.loads(s["json"])["key"] != old_key for s in samples)
    # no file of any view, sidecar, index or side output holds the old sample any more; only the ledger names it
    # (as replaces_key, read above: its compressed bytes need not hold the key's text)
    holding = sorted(name for name, data in second.file_bytes().items() if old_key.encode() in data)
    assert all(name.startswith("ledger/") for name in holding), holding
    assert second.file_bytes().keys() == run([inputs], output=tmp_path / "full").file_bytes().keys()
    caplog.clear()
    with caplog.at_level("INFO"):
        run([inputs], output=tmp_path / "out")  # nothing changed since: the replacement was the last run's news
    assert "changed content replaces" not in caplog.text and "is unchanged" in caplog.text


def test_a_shipped_file_emptied_is_replaced_once_and_a_rerun_that_changes_nothing_keeps_the_row(
    tmp_path, run, photo, caplog
):
    """The empty file is read again each run, and its row lost replaces_key: a new generation for no change."""
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))
    old_key = run([inputs], output=tmp_path / "out").ledger_by_name()["photo01.jpg"]["key"]
    (inputs / "photo01.jpg").write_bytes(b"")
    row = run([inputs], output=tmp_path / "out").ledger_by_name()["photo01.jpg"]
    assert row["reason"] == reasons.EMPTY_FILE and json.loads(row["detail"])["replaces_key"] == old_key
    before = (tmp_path / "out").joinpath("ledger").glob("*.parquet")
    before = {path.name: path.read_bytes() for path in before}

    caplog.clear()
    with caplog.at_level("INFO"):
        again = run([inputs], output=tmp_path / "out")
    assert "is unchanged" in caplog.text
    assert json.loads(again.ledger_by_name()["photo01.jpg"]["detail"])["replaces_key"] == old_key
    assert {path.name: path.read_bytes() for path in (tmp_path / "out" / "ledger").glob("*.parquet")} == before


def test_a_run_that_listed_nothing_leaves_an_empty_ledger_and_the_next_run_builds_on_it(tmp_path, run, photo):
    """A run of only ignored files committed an output without a ledger part; every later run into it crashed."""
    import pyarrow.parquet as pq

    inputs, out = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    (inputs / "Thumbs.db").write_bytes(b"not a picture")
    ignore = {"ignore": ["Thumbs.db"]}
    first = run([inputs], output=out, ingest=ignore)
    assert first.ledger == [] and first.samples() == []
    (part,) = (out / "ledger").glob("part-*.parquet")
    assert pq.read_table(part).num_rows == 0

    assert run([inputs], output=out, ingest=ignore).ledger == []
    _add_photos(inputs, photo, range(3))
    third = run([inputs], output=out, ingest=ignore)
    assert sorted(row["status"] for row in third.ledger) == ["kept"] * 3 and len(third.samples()) == 3

    # An output written before the empty part: its missing ledger means there is nothing to build on.
    for part in (out / "ledger").glob("part-*.parquet"):
        part.unlink()
    assert len(run([inputs], output=out, ingest=ignore).samples()) == 3


def test_a_live_lock_refuses_and_a_stale_lock_is_taken_over(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(2))
    out = tmp_path / "out"
    out.mkdir()
    lock = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    (out / "_lock").write_text(json.dumps(lock))
    with pytest.raises(OutputBusy, match="being written by another unishard run"):
        run([inputs], output=out)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / "_lock").write_text(json.dumps({**lock, "pid": dead.pid}))
    assert len(run([inputs], output=out).samples()) == 2
    assert not (out / "_lock").exists()


def test_an_unwritable_output_fails_before_any_work_with_a_clear_message(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(1))
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(RunError, match="cannot write to the output folder"):
        run([inputs], output=blocker / "out")


def test_a_write_failure_mid_run_fails_the_run_and_leaves_no_final_output(tmp_path, run, photo, monkeypatch):
    import transforms.shard_writer

    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))

    def disk_full(path, members):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(transforms.shard_writer, "write_tar", disk_full)
    with pytest.raises(RunError, match="No space left on device"):
        run([inputs], output=tmp_path / "out")
    final = [p for p in (tmp_path / "out").rglob("*") if p.is_file() and "_staging" not in p.parts]
    assert final == []


# Each image's title is its text segment, so a page of images alone makes a document.
PAGES = {"documents": {"image_text_fields": ["title"]}}


def test_an_image_added_to_a_shipped_document_rebuilds_the_document_with_every_image(tmp_path, run, photo, caplog):
    inputs = tmp_path / "in"
    inputs.mkdir()

    def page_photo(seed, doc_id):
        path = inputs / f"page{seed:02d}.jpg"
        photo(220, 160, seed=seed).save(path, quality=90)
        write_sidecar(path, title=f"view {seed} of {doc_id}", doc_id=doc_id, domain="marketing")

    for seed, doc_id in ((0, "PAGE-1"), (1, "PAGE-1"), (2, "PAGE-2")):
        page_photo(seed, doc_id)
    first = run([inputs], output=tmp_path / "out", **PAGES)
    assert {json.loads(s["json"])["doc_id"]: sum(k.endswith(".jpg") for k in s) for s in first.samples("docs")} == {
        "PAGE-1": 2,
        "PAGE-2": 1,
    }
    page_photo(3, "PAGE-1")  # a third view of a shipped page
    page_photo(4, "PAGE-3")  # and a new page

    second = run([inputs], output=tmp_path / "out", **PAGES)

    assert "document PAGE-1 changed content" in caplog.text
    assert "the document is assembled again with every image it has" in caplog.text
    documents = {json.loads(s["json"])["doc_id"]: s for s in second.samples("docs")}
    assert {doc_id: sum(k.endswith(".jpg") for k in s) for doc_id, s in documents.items()} == {
        "PAGE-1": 3,
        "PAGE-2": 1,
        "PAGE-3": 1,
    }
    full = run([inputs], output=tmp_path / "full", **PAGES)
    views = ("shards/", "ledger", "ledger_documents/")
    assert {k: v for k, v in second.file_bytes().items() if k.startswith(views)} == {
        k: v for k, v in full.file_bytes().items() if k.startswith(views)
    }


def test_a_new_document_in_an_incremental_run_needs_no_rebuild(tmp_path, run, photo, caplog):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(2))
    first = run([inputs], output=tmp_path / "out", **PAGES)
    path = inputs / "page.jpg"
    photo(220, 160, seed=9).save(path, quality=90)
    write_sidecar(path, title="a new page", doc_id="PAGE-9", domain="marketing")

    second = run([inputs], output=tmp_path / "out", **PAGES)

    assert "rebuilt" not in caplog.text
    assert {path: path.read_bytes() for path in first.shard_paths()} == {
        path: path.read_bytes() for path in first.shard_paths() if path.exists()
    }
    assert [json.loads(s["json"])["doc_id"] for s in second.samples("docs")] == ["PAGE-9"]


def _pages_with_texts(folder, photo, texts):
    folder.mkdir(exist_ok=True)
    rows = ["path,doc_id,position,caption"]
    for seed in range(3):
        photo(220, 160, seed=seed).save(folder / f"page{seed}.jpg", quality=90)
        rows.append(f"page{seed}.jpg,doc-{seed},0,photo of item {seed}")
    (folder / "pages.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "texts.csv").write_text("doc_id,position,text\n" + "".join(f"{r}\n" for r in texts), encoding="utf-8")
    return [{"path": str(folder / "pages.csv")}, {"path": str(folder / "texts.csv")}]


def _document_texts(out):
    records = [json.loads(sample["json"]) for sample in out.samples("docs")]
    return {record["doc_id"]: [text for text in record["texts"] if text] for record in records}


def test_an_edited_or_added_text_row_of_a_shipped_document_rebuilds_it_with_the_new_texts(
    tmp_path, run, photo, caplog
):
    """A text row edited or added for a shipped document was ignored: the rerun said nothing changed."""
    original = [f"doc-{seed},1,Original text of doc {seed}." for seed in range(3)]
    inputs = _pages_with_texts(tmp_path / "in", photo, original)
    run(inputs, output=tmp_path / "out")
    # a row inserted above the others moves their row numbers, and changes nothing of theirs
    _pages_with_texts(tmp_path / "in", photo, ["doc-1,1,EDITED text of doc 1.", *original[::2]])

    edited = run(inputs, output=tmp_path / "out")

    assert "document doc-1 changed content" in caplog.text and "its text rows" in caplog.text
    assert _document_texts(edited)["doc-1"] == ["EDITED text of doc 1."]
    _pages_with_texts(tmp_path / "in", photo, [*original[::2], "doc-1,1,EDITED text of doc 1.", "doc-2,2,ADDED."])
    caplog.clear()
    added = run(inputs, output=tmp_path / "out")

    assert "document doc-2 changed content" in caplog.text and "document doc-0 changed" not in caplog.text
    full = run(inputs, output=tmp_path / "full")
    assert _document_texts(added) == _document_texts(full)
    assert _document_texts(full)["doc-2"] == ["Original text of doc 2.", "ADDED."]
    views = ("shards/", "ledger", "ledger_documents/")
    assert {k: v for k, v in added.file_bytes().items() if k.startswith(views)} == {
        k: v for k, v in full.file_bytes().items() if k.startswith(views)
    }


def test_a_text_row_removed_from_a_shipped_document_rebuilds_it_and_a_rerun_changes_nothing(
    tmp_path, run, photo, caplog
):
    texts = [f"doc-{seed},1,Text of doc {seed}." for seed in range(3)] + ["doc-0,2,A second paragraph."]
    inputs = _pages_with_texts(tmp_path / "in", photo, texts)
    run(inputs, output=tmp_path / "out")
    _pages_with_texts(tmp_path / "in", photo, texts[:3])

    removed = run(inputs, output=tmp_path / "out")

    assert "document doc-0 changed content" in caplog.text
    assert _document_texts(removed)["doc-0"] == ["Text of doc 0."]
    caplog.clear()
    caplog.set_level(logging.INFO, logger="unishard")
    run(inputs, output=tmp_path / "out")
    assert "rebuilt" not in caplog.text and "is unchanged" in caplog.text


def _document_ledger(out):
    rows = pq.read_table(out.path / "ledger_documents").to_pylist()
    return {row["doc_id"]: (row["status"], row["reason"], row["images"], row["texts"], row["split"]) for row in rows}


def test_an_incremental_run_keeps_the_document_ledger_rows_of_shipped_documents_and_still_sees_them_grow(
    tmp_path, run, photo, caplog
):
    """An incremental run rewrote ledger_documents with its own documents only: shipped documents lost their rows or
    were listed as rejected (their text rows without images), and an image added later to such a document shipped
    it a second time instead of rebuilding it."""
    inputs = _pages_with_texts(tmp_path / "in", photo, [f"doc-{seed},1,Text of doc {seed}." for seed in range(3)])
    shipped = _document_ledger(run(inputs, output=tmp_path / "out"))
    photo(220, 160, seed=9).save(tmp_path / "in" / "page9.jpg", quality=90)
    with open(tmp_path / "in" / "pages.csv", "a", encoding="utf-8") as pages:
        pages.write("page9.jpg,doc-9,0,photo of item 9\n")

    second = run(inputs, output=tmp_path / "out")

    assert "rebuilt" not in caplog.text
    full = run(inputs, output=tmp_path / "full")
    assert _document_ledger(second) == _document_ledger(full)
    assert {doc_id: row for doc_id, row in _document_ledger(second).items() if doc_id != "doc-9"} == shipped
    photo(220, 160, seed=10).save(tmp_path / "in" / "page10.jpg", quality=90)
    with open(tmp_path / "in" / "pages.csv", "a", encoding="utf-8") as pages:
        pages.write("page10.jpg,doc-0,2,another photo of item 0\n")

    third = run(inputs, output=tmp_path / "out")

    assert "document doc-0 changed content" in caplog.text
    records = [json.loads(sample["json"]) for sample in third.samples("docs")]
    assert {record["doc_id"]: sum(map(bool, record["images"])) for record in records} == {
        "doc-0": 2,
        "doc-1": 1,
        "doc-2": 1,
    }


def _mmc4_documents(folder, photo, seeds):
    folder.mkdir(exist_ok=True)
    lines = []
    for seed in seeds:
        names = [f"m{seed}_{index}.jpg" for index in range(2)]
        for index, name in enumerate(names):
            photo(220, 160, seed=100 + 2 * seed + index).save(folder / name, quality=90)
        infos = [{"image_name": name, "matched_text_index": at, "matched_sim": 0.3} for at, name in enumerate(names)]
        sentences = [f"First sentence of document {seed}.", f"Second sentence of document {seed}."]
        lines.append(json.dumps({"image_info": infos, "text_list": sentences, "url": f"http://x/{seed}"}) + "\n")
    (folder / "docs.jsonl").write_text("".join(lines), encoding="utf-8")
    return [{"path": str(folder / "docs.jsonl"), "kind": "mmc4"}]


def test_a_document_put_first_in_an_mmc4_file_leaves_every_other_document_as_it_shipped(tmp_path, run, photo, caplog):
    """Ids were line numbers: the rerun rebuilt everything, named replaces_key for keys still shipped, and moved
    unchanged documents between splits (test to validation, validation to train)."""
    fractions = {"split": {"fractions": {"train": 0.5, "validation": 0.25, "test": 0.25}}}
    inputs = _mmc4_documents(tmp_path / "in", photo, range(1, 7))
    first = run(inputs, output=tmp_path / "out", **fractions)
    _mmc4_documents(tmp_path / "in", photo, range(7))  # document 0 is the file's first line now

    second = run(inputs, output=tmp_path / "out", **fractions)

    assert "changed content" not in caplog.text and "rebuilt" not in caplog.text
    assert not [row for row in second.ledger if "replaces_key" in row["detail"]]
    splits = {row["key"]: row["split"] for row in second.ledger}
    assert {row["key"]: (row["source"], row["split"]) for row in first.ledger} == {
        row["key"]: (row["source"], splits[row["key"]]) for row in first.ledger
    }
    full = run(inputs, output=tmp_path / "full", **fractions)

    def decided(out):
        return sorted((row["source"], row["key"], row["status"], row["reason"], row["split"]) for row in out.ledger)

    assert decided(second) == decided(full)


def test_an_incremental_keep_fraction_threshold_comes_from_every_score_the_output_holds(tmp_path, run, photo):
    inputs = tmp_path / "in"
    keep_half = {"clip_filter": {"keep_fraction": 0.5, "group_by": "all"}}
    _add_photos(inputs, photo, range(6))
    first = run([inputs], output=tmp_path / "out", **keep_half)
    _add_photos(inputs, photo, range(6, 12))

    second = run([inputs], output=tmp_path / "out", **keep_half)
    full = run([inputs], output=tmp_path / "full", **keep_half)

    def thresholds(out, names):
        rows = out.ledger_by_name()
        return {json.loads(rows[n]["detail"])["threshold"] for n in names if rows[n]["reason"] == "low_clip_score"}

    new = [f"photo{seed:02d}.jpg" for seed in range(6, 12)]
    assert len(thresholds(full, [f"photo{seed:02d}.jpg" for seed in range(12)])) == 1
    assert thresholds(second, new) == thresholds(full, new) != set()
    scores = pq.read_table(tmp_path / "out" / "clip_filter" / "scores").to_pylist()
    assert len(scores) == 12 and {row["key"] for row in scores} == {row["key"] for row in full.ledger}
    assert {k: v for k, v in second.file_bytes().items() if k.startswith("clip_filter/")} == {
        k: v for k, v in full.file_bytes().items() if k.startswith("clip_filter/")
    }
    assert first.ledger_by_name().items() <= second.ledger_by_name().items()  # earlier verdicts stand


def test_a_caption_added_after_a_no_text_rejection_is_read_by_the_next_run(tmp_path, run, photo):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(2))
    photo(220, 160, seed=40).save(inputs / "untitled.jpg", quality=90)
    first = run([inputs], output=tmp_path / "out")
    assert first.ledger_by_name()["untitled.jpg"]["reason"] == reasons.NO_TEXT

    write_sidecar(inputs / "untitled.jpg", title="the caption the rejection asked for", domain="factory")
    second = run([inputs], output=tmp_path / "out")

    rows = second.ledger_by_name()
    assert len(second.ledger) == 3 and rows["untitled.jpg"]["status"] == reasons.KEPT
    assert "the caption the rejection asked for" in {text for _, text in _kept(second)}
    assert _kept(second) == _kept(run([inputs], output=tmp_path / "full"))


def test_a_new_copy_with_its_own_caption_of_a_no_text_rejection_is_decided_again_and_matches_a_full_run(
    tmp_path, run, photo
):
    """The copy took over the earlier file's no_text verdict (same bytes), though its own caption keeps it."""
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(2))
    photo(220, 160, seed=40).save(inputs / "untitled.jpg", quality=90)
    (inputs / "truncated.jpg").write_bytes((inputs / "untitled.jpg").read_bytes()[:300])
    first = run([inputs], output=tmp_path / "out")
    assert first.ledger_by_name()["untitled.jpg"]["reason"] == reasons.NO_TEXT

    (inputs / "captioned.jpg").write_bytes((inputs / "untitled.jpg").read_bytes())
    write_sidecar(inputs / "captioned.jpg", title="a copy with its own caption", domain="factory")
    (inputs / "truncated-again.jpg").write_bytes((inputs / "truncated.jpg").read_bytes())
    second = run([inputs], output=tmp_path / "out")

    rows = second.ledger_by_name()
    assert rows["captioned.jpg"]["status"] == reasons.KEPT and rows["untitled.jpg"]["reason"] == reasons.NO_TEXT
    assert rows["truncated-again.jpg"]["reason"] == rows["truncated.jpg"]["reason"] == reasons.TRUNCATED
    full = run([inputs], output=tmp_path / "full")
    statuses = {name: row["status"] for name, row in full.ledger_by_name().items()}
    assert {name: row["status"] for name, row in rows.items()} == statuses and _kept(second) == _kept(full)


def test_a_parquet_file_dropped_among_the_shards_is_no_sample_the_output_shipped(tmp_path, run, photo):
    """Another dataset's sidecar dropped into shards/pairs/all/ made a copy of its photo an exact_duplicate."""
    inputs, elsewhere = tmp_path / "in", tmp_path / "elsewhere"
    _add_photos(inputs, photo, range(2))
    _add_photos(elsewhere, photo, range(10, 12))
    other = run([elsewhere], output=tmp_path / "other")
    first = run([inputs], output=tmp_path / "out")
    (dropped,) = [path for path in other.shard_paths() if path.name == "shard-000000.tar"]
    target = first.shard_paths()[0].parent / "other-dataset.parquet"
    target.write_bytes(dropped.with_suffix(".parquet").read_bytes())

    (inputs / "copy.jpg").write_bytes((elsewhere / "photo10.jpg").read_bytes())
    write_sidecar(inputs / "copy.jpg", title="a copy of another dataset's photo", domain="factory")
    second = run([inputs], output=tmp_path / "out")

    assert second.ledger_by_name()["copy.jpg"]["status"] == reasons.KEPT
    assert target.exists(), "a file someone dropped there stays"
    assert _kept(second) == _kept(run([inputs], output=tmp_path / "full"))


def test_an_edited_caption_of_a_shipped_sample_rebuilds_the_output_with_the_new_caption(tmp_path, run, photo, caplog):
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))
    run([inputs], output=tmp_path / "out")
    write_sidecar(inputs / "photo01.jpg", title="an edited title", domain="factory")

    second = run([inputs], output=tmp_path / "out")

    assert "photo01.jpg changed content" in caplog.text and "rebuilt with the new metadata" in caplog.text
    texts = {text for _, text in _kept(second)}
    assert "an edited title" in texts and "photo 1" not in texts
    assert len(second.ledger) == 3 and len(second.samples()) == 3


def test_an_output_folder_named_with_wildcard_characters_takes_runs_and_reruns(tmp_path, run, photo):
    """``out [v2]``: the run found none of its own shards (Beam read ``[v2]`` as one of v, 2), so every run failed
    its books check, and earlier outputs could not be read back."""
    inputs, output, neighbour = tmp_path / "in", tmp_path / "out [v2]", tmp_path / "out 2"
    neighbour.mkdir()
    (neighbour / "notes.txt").write_text("a person's file beside the output")
    _add_photos(inputs, photo, range(4))
    first = run([inputs], output=output)
    assert len(first.samples()) == 4
    earlier = first.ledger_by_name()
    _add_photos(inputs, photo, range(4, 7))
    second = run([inputs], output=output)
    full = run([inputs], output=tmp_path / "full")

    assert len(second.ledger) == 7 and _kept(second) == _kept(full)
    assert all(row == second.ledger_by_name()[name] for name, row in earlier.items())
    assert [path.name for path in neighbour.iterdir()] == ["notes.txt"]
    assert not (output / "_staging").exists()


def test_rows_appended_to_a_parquet_file_holding_its_images_are_an_increment_that_matches_a_full_run(
    tmp_path, run, photo
):
    def hub(count):
        rows = []
        for seed in range(count):
            buffer = io.BytesIO()
            photo(220, 160, seed=300 + seed).save(buffer, format="JPEG", quality=90)
            rows.append({"image": {"bytes": buffer.getvalue(), "path": f"{seed}.jpg"}, "caption": f"row {seed}"})
        pq.write_table(pa.Table.from_pylist(rows), tmp_path / "hub.parquet", row_group_size=2)

    hub(3)
    first = run([tmp_path / "hub.parquet"], output=tmp_path / "out")
    old_shards = {path: path.read_bytes() for path in first.shard_paths()}
    hub(5)
    second = run([tmp_path / "hub.parquet"], output=tmp_path / "out")
    full = run([tmp_path / "hub.parquet"], output=tmp_path / "full")

    assert {path: path.read_bytes() for path in old_shards} == old_shards
    assert len(second.shard_paths()) > len(old_shards), "the new rows are a new shard"
    assert _kept(second) == _kept(full) and len(_kept(full)) == 5


def test_a_rerun_that_changes_nothing_writes_the_report_a_killed_run_owed(tmp_path, run, photo):
    """A run killed during its commit: the rerun finished the commit, found nothing new, and wrote no report."""
    inputs = tmp_path / "in"
    _add_photos(inputs, photo, range(3))
    out = tmp_path / "out"
    run([inputs], output=out)
    report = (out / "report" / "index.html").read_bytes()
    shutil.rmtree(out / "report")  # what a kill between the commit and the report leaves

    run([inputs], output=out)

    assert (out / "report" / "index.html").exists() and (out / "report" / "report.json").exists()
    assert len(report) > 1000
    before = {path: path.read_bytes() for path in out.rglob("*") if path.is_file()}
    run([inputs], output=out)
    assert {path: path.read_bytes() for path in out.rglob("*") if path.is_file()} == before, "then unchanged"
