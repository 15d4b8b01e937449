"""Ingest: manifests in three formats, sidecars, WebDataset tars, and path checks, through real pipeline runs."""

import io
import json
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from schemas import reasons
from schemas.records import RejectItem
from tests.helpers import jpeg_bytes, make_photo, write_sidecar
from transforms.ingest import resolve_manifest_path


def test_manifest_paths_resolve_relative_to_the_manifest(tmp_path):
    manifest = str(tmp_path / "data" / "m.csv")
    assert resolve_manifest_path("img/a.jpg", manifest, []) == str(tmp_path / "data" / "img" / "a.jpg")


@pytest.mark.parametrize("value", ["../outside.jpg", "img/../../outside.jpg", "/etc/passwd"])
def test_manifest_paths_escaping_the_root_are_rejected_unread(tmp_path, value):
    with pytest.raises(RejectItem) as caught:
        resolve_manifest_path(value, str(tmp_path / "data" / "m.csv"), [])
    assert caught.value.reason == reasons.OUTSIDE_ROOT


def test_configured_roots_allow_other_folders(tmp_path):
    other = tmp_path / "shared"
    resolved = resolve_manifest_path(str(other / "a.jpg"), str(tmp_path / "data" / "m.csv"), [str(other)])
    assert resolved == str(other / "a.jpg")


@pytest.fixture
def manifest_inputs(tmp_path):
    """The same kind of rows as CSV, JSONL and Parquet manifests, plus a folder with sidecars and a tar."""
    data = tmp_path / "data"
    (data / "img").mkdir(parents=True)
    for seed in range(6):
        make_photo(200, 160, seed=seed).save(data / "img" / f"p{seed}.jpg", quality=90)
    (data / "m.csv").write_text(
        "path,domain,title,sku\n"
        "img/p0.jpg,marketing,Red mug,MUG-1\n"
        "img/missing.jpg,marketing,Gone,MUG-2\n"
        "../escape.jpg,marketing,Escape,MUG-3\n"
        ",marketing,No path,MUG-4\n"
    )
    (data / "m.jsonl").write_text(
        json.dumps({"path": "img/p1.jpg", "domain": "factory", "label": "scratch", "line": "L1"}) + "\n{not json\n"
    )
    pq.write_table(
        pa.Table.from_pylist([{"path": "img/p2.jpg", "domain": "factory", "label": "dent"}]), data / "m.parquet"
    )
    files = tmp_path / "files"
    files.mkdir()
    make_photo(200, 160, seed=10).save(files / "f0.jpg")
    write_sidecar(files / "f0.jpg", title="From a JSON sidecar", camera="cam-7")
    make_photo(200, 160, seed=11).save(files / "f1.jpg")
    (files / "f1.txt").write_text("From a text sidecar\n")
    make_photo(200, 160, seed=12).save(files / "f2.jpg")
    (files / "f2.json").write_text('{"title": ')
    tar_path = tmp_path / "input.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, payload in (
            ("s0.jpg", jpeg_bytes(make_photo(200, 160, seed=20))),
            ("s0.txt", b"A caption from a tar"),
            ("s0.json", json.dumps({"domain": "marketing"}).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return [
        {"path": str(data / "m.csv")},
        {"path": str(data / "m.jsonl")},
        {"path": str(data / "m.parquet")},
        {"path": str(files), "domain": "factory"},
        {"path": str(tar_path)},
    ]


def test_every_manifest_row_file_and_tar_member_ends_in_the_ledger(run, manifest_inputs):
    out = run(manifest_inputs, text={"fields": ["caption", "title", "label"]})
    rows = out.ledger_by_name()
    assert rows["m.csv#1"]["status"] == "kept"
    assert rows["m.csv#2"]["reason"] == reasons.MISSING_FILE
    assert rows["m.csv#3"]["reason"] == reasons.OUTSIDE_ROOT
    assert rows["m.csv#4"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert rows["m.jsonl#1"]["status"] == "kept"
    assert rows["m.jsonl#2"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert rows["m.parquet#1"]["status"] == "kept"
    assert rows["f0.jpg"]["status"] == rows["f1.jpg"]["status"] == "kept"
    assert rows["f2.jpg"]["reason"] == reasons.MALFORMED_SIDECAR
    assert "f2.json" in json.loads(rows["f2.jpg"]["detail"])["message"]
    assert rows["input.tar#s0"]["status"] == "kept"
    assert len(out.ledger) == 11  # 4 + 2 + 1 manifest rows, 3 files (sidecars are not items), 1 tar sample

    texts = {json.loads(s["json"])["source"].rsplit("/", 1)[-1]: s["txt"].decode() for s in out.samples()}
    assert texts["f0.jpg"] == "From a JSON sidecar"
    assert texts["f1.jpg"] == "From a text sidecar"
    assert texts["input.tar#s0"] == "A caption from a tar"
    assert texts["m.jsonl#1"] == "scratch"
    domains = {
        json.loads(s["json"])["source"].rsplit("/", 1)[-1]: json.loads(s["json"])["domain"] for s in out.samples()
    }
    assert domains == {
        "m.csv#1": "marketing",
        "m.jsonl#1": "factory",
        "m.parquet#1": "factory",
        "f0.jpg": "factory",
        "f1.jpg": "factory",
        "input.tar#s0": "marketing",
    }


def test_transient_read_errors_are_retried_and_the_attempts_recorded(tmp_path, run, monkeypatch):
    from apache_beam.io.filesystems import FileSystems

    images = tmp_path / "images"
    images.mkdir()
    for name, seed in (("flaky.jpg", 1), ("dead.jpg", 2), ("fine.jpg", 3)):
        make_photo(200, 160, seed=seed).save(images / name)
        (images / name.replace(".jpg", ".txt")).write_text(f"photo {name}")
    failures = {"flaky.jpg": 2, "dead.jpg": 99}
    real_open = FileSystems.open

    def unreliable_open(path, *args, **kwargs):
        name = path.rsplit("/", 1)[-1]
        if failures.get(name, 0) > 0:
            failures[name] -= 1
            raise OSError(5, "Input/output error (simulated network blip)", path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", staticmethod(unreliable_open))
    monkeypatch.setattr("transforms.ingest.time.sleep", lambda seconds: None)
    rows = run([images]).ledger_by_name()
    assert rows["flaky.jpg"]["status"] == "kept"
    assert json.loads(rows["flaky.jpg"]["detail"])["read_attempts"] == 3
    assert rows["dead.jpg"]["reason"] == reasons.UNREADABLE_INPUT
    assert json.loads(rows["dead.jpg"]["detail"])["attempts"] == 3
    assert "read_attempts" not in json.loads(rows["fine.jpg"]["detail"])
