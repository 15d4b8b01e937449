"""Listing inputs: kinds and roots, manifest paths checked against the roots, manifest rows in three formats, a
tar's samples, and the count before a run."""

import csv
import io
import json
import os
import tarfile

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.records.ledger import RejectItem
from transforms._io import literal, pattern
from transforms._listing import (
    NO_IMAGE,
    ORPHAN,
    count_items,
    input_kind,
    manifest_rows,
    pattern_roots,
    resolve_manifest_path,
    stem_items,
    stem_key,
    tar_items,
)
from transforms._output_layout import EarlierOutput, earlier_output, written_earlier


def test_manifest_paths_resolve_relative_to_the_manifest(tmp_path):
    manifest = str(tmp_path / "data" / "m.csv")
    assert resolve_manifest_path("img/a.jpg", manifest, []) == str(tmp_path / "data" / "img" / "a.jpg")


@pytest.mark.parametrize("value", ["../outside.jpg", "img/../../outside.jpg", "/etc/passwd"])
def test_manifest_paths_escaping_the_root_are_rejected_unread(tmp_path, value):
    with pytest.raises(RejectItem) as caught:
        resolve_manifest_path(value, str(tmp_path / "data" / "m.csv"), [])
    assert caught.value.reason == reasons.OUTSIDE_ROOT
    assert caught.value.detail["resolved"] == os.path.realpath(os.path.join(tmp_path / "data", value))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("img/a.jpg", "gs://bucket/data/img/a.jpg"),
        ("gs://bucket/data/img/a.jpg", "gs://bucket/data/img/a.jpg"),
        ("../secret.jpg", None),
        ("gs://bucket/data/../secret.jpg", None),
        ("gs://other/data/a.jpg", None),
    ],
)
def test_remote_manifest_paths_keep_the_normalised_prefix_check(value, expected):
    if expected:
        assert resolve_manifest_path(value, "gs://bucket/data/m.csv", []) == expected
        return
    with pytest.raises(RejectItem) as caught:
        resolve_manifest_path(value, "gs://bucket/data/m.csv", [])
    assert caught.value.reason == reasons.OUTSIDE_ROOT


def test_a_csv_field_longer_than_the_csv_module_s_default_limit_is_read(tmp_path):
    """A 200 KB product description passed csv's 128 KB field limit: the launcher's count crashed the run."""
    manifest = tmp_path / "long.csv"
    description = "A very long HTML description. " * 7000  # 210,000 characters
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerows([["path", "description"], ["a.jpg", description], ["b.jpg", "short"]])

    rows = list(manifest_rows(str(manifest)))

    assert [row["description"] for row in rows] == [description, "short"]
    assert count_items(InputSpec(path=str(manifest)), 100) == 2


def test_count_items_counts_files_manifest_rows_and_tar_samples_up_to_the_limit(tmp_path):

    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(5):
        (folder / f"p{index}.jpg").write_bytes(b"x")
    manifest = tmp_path / "rows.csv"
    manifest.write_text("path,title\n" + "".join(f"p{i}.jpg,t{i}\n" for i in range(7)))
    tar_path = tmp_path / "shard.tar"
    with tarfile.open(tar_path, "w") as tar:
        for key in ("a", "b", "c"):
            for ext in ("jpg", "json"):
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = 2
                tar.addfile(info, io.BytesIO(b"{}"))

    assert count_items(InputSpec(path=str(folder)), 100) == 5
    assert count_items(InputSpec(path=str(folder)), 3) == 3
    assert count_items(InputSpec(path=str(manifest)), 100) == 7
    assert count_items(InputSpec(path=str(manifest)), 4) == 4
    assert count_items(InputSpec(path=str(tar_path)), 100) == 3
    assert count_items(InputSpec(path=str(tmp_path / "missing.csv")), 100) == 0


def test_the_kind_comes_from_the_suffix_unless_given():
    assert input_kind(InputSpec(path="/in/rows.CSV")) == "manifest"
    assert input_kind(InputSpec(path="/in/rows.parquet")) == "manifest"
    assert input_kind(InputSpec(path="/in/shard-0.tar")) == "webdataset"
    assert input_kind(InputSpec(path="/in/photos/*.jpg")) == "files"
    assert input_kind(InputSpec(path="/in/rows.csv", kind="files")) == "files"


def test_a_pattern_roots_at_the_folder_before_its_first_wildcard(tmp_path):
    assert pattern_roots(InputSpec(path="/in/photos/*/a?.jpg")) == ("/in/photos",)
    assert pattern_roots(InputSpec(path="gs://bucket/photos/*.jpg")) == ("gs://bucket/photos",)
    assert pattern_roots(InputSpec(path=str(tmp_path))) == (str(tmp_path),)
    assert pattern_roots(InputSpec(path="/in/*.jpg", roots=["/in", "/shared"])) == ("/in", "/shared")


def test_sidecars_are_not_items_and_an_image_knows_its_sidecars_whatever_their_case():
    config, spec = IngestConfig(), InputSpec(path="/in/*", domain="factory")
    (item,) = stem_items((b"/in/a", [b"/in/a.TXT", b"/in/a.jpg", b"/in/a.json"]), spec, config)
    assert (item.source, item.sidecar, item.sidecar_suffixes) == ("/in/a.jpg", "/in/a", (".json", ".TXT"))
    assert (item.domain, item.roots, dict(item.metadata)) == ("factory", ("/in",), {})
    (alone,) = stem_items((b"/in/b", [b"/in/b.png"]), spec, config)
    assert (alone.sidecar, alone.sidecar_suffixes) == (None, ())
    (looked_up,) = stem_items((b"/in/b", [b"/in/b.png"]), InputSpec(path="/in/*.png"), config)
    assert (looked_up.sidecar, looked_up.sidecar_suffixes) == ("/in/b", ())  # read looks for /in/b.json, .txt
    assert stem_key(FileMetadata("/in/x.y/c.jpeg", 10)) == (b"/in/x.y/c", b"/in/x.y/c.jpeg")
    latin = os.fsdecode(b"/in/caf\xe9.jpg")  # not UTF-8: carried as its bytes
    assert stem_key(FileMetadata(latin, 10)) == (b"/in/caf\xe9", b"/in/caf\xe9.jpg")


def test_a_sidecar_no_image_takes_is_an_item_marked_orphan_with_what_to_do():
    config, spec = IngestConfig(), InputSpec(path="/in/*")
    (orphan,) = stem_items((b"/in/notes", [b"/in/notes.txt"]), spec, config)
    assert orphan.source == "/in/notes.txt"
    assert "no image named notes." in orphan.metadata[ORPHAN]
    image, second = stem_items((b"/in/a", [b"/in/a.jpg", b"/in/a.txt", b"/in/a.TXT"]), spec, config)
    assert (image.source, image.sidecar_suffixes) == ("/in/a.jpg", (".TXT",))
    assert second.source == "/in/a.txt" and "a.TXT" in second.metadata[ORPHAN]


def test_a_sidecar_named_after_the_whole_image_name_goes_to_that_image_only():
    """Google Takeout and gallery-dl write ``photo.jpg.json``: it was an orphan, and its photo had no metadata."""
    config, spec = IngestConfig(), InputSpec(path="/in/*")
    assert stem_key(FileMetadata("/in/a.JPG.json", 10)) == (b"/in/a", b"/in/a.JPG.json")
    assert stem_key(FileMetadata("/in/v1.2.json", 10)) == (b"/in/v1.2", b"/in/v1.2.json")  # .2 is no image suffix
    group = [b"/in/a.jpg", b"/in/a.png", b"/in/a.jpg.json", b"/in/a.json", b"/in/a.gif.txt", b"/in/a.jpg.JSON"]
    jpg, png, *orphans = stem_items((b"/in/a", group), spec, config)
    assert (jpg.source, jpg.sidecar, jpg.sidecar_suffixes) == ("/in/a.jpg", "/in/a", (".jpg.JSON", ".json"))
    assert (png.source, png.sidecar_suffixes) == ("/in/a.png", (".json",))
    assert {orphan.source: orphan.metadata[ORPHAN] for orphan in orphans} == {
        "/in/a.gif.txt": (
            "sidecar /in/a.gif.txt: no image named a.gif or a.gif.<image extension> sits beside it, so its text "
            "reaches no sample"
        ),
        "/in/a.jpg.json": (
            "sidecar /in/a.jpg.json: a.jpg already takes a sidecar of this kind (a.jpg.JSON); merge the two files "
            "into one"
        ),
    }


def test_an_image_with_two_extensions_meets_the_sidecar_named_after_its_stem():
    config, spec = IngestConfig(), InputSpec(path="/in/*")
    keys = {stem_key(FileMetadata(path, 10))[0] for path in ("/in/b.jpg.webp", "/in/b.jpg.txt", "/in/b.jpg")}
    assert keys == {b"/in/b"}
    (webp,) = stem_items((b"/in/b", [b"/in/b.jpg.txt", b"/in/b.jpg.webp"]), spec, config)
    assert (webp.source, webp.sidecar, webp.sidecar_suffixes) == ("/in/b.jpg.webp", "/in/b.jpg", (".txt",))
    # Beside b.jpg, b.jpg.txt is named after that image's whole name, so it is b.jpg's alone; b.txt is b.jpg's stem's.
    group = [b"/in/b.jpg", b"/in/b.jpg.webp", b"/in/b.jpg.txt", b"/in/b.txt"]
    jpg, webp = stem_items((b"/in/b", group), spec, config)
    assert (jpg.sidecar, jpg.sidecar_suffixes) == ("/in/b", (".jpg.txt", ".txt"))
    assert (webp.sidecar, webp.sidecar_suffixes) == (None, ())


def test_an_earlier_output_s_record_names_the_files_it_wrote_and_a_legacy_one_its_names(tmp_path):
    out = tmp_path / "out"
    (out / "_run").mkdir(parents=True)
    (out / "_run" / "files.json").write_text(json.dumps({"files": ["_run/files.json", "report/index.html"]}))
    (found,) = earlier_output(str(out / "_run" / "files.json"))
    assert found == EarlierOutput(str(out), frozenset({"_run/files.json", "report/index.html"}))
    assert list(earlier_output(str(out / "report" / "index.html"))) == []
    written = [str(out / name) for name in ("report/index.html", "_staging/x/shard.tar", "_lock")]
    assert all(written_earlier(path, [found]) for path in written)
    assert not written_earlier(str(out / "report" / "mine.jpg"), [found])  # a person's file: still an input
    assert not written_earlier(str(tmp_path / "outside.jpg"), [found])
    legacy = EarlierOutput("gs://bucket/old", None)  # before _run/files.json: unishard's names
    assert written_earlier("gs://bucket/old/ledger/part-00000.parquet", [legacy])
    assert not written_earlier("gs://bucket/old/photos/a.jpg", [legacy])
    assert not written_earlier("gs://bucket/older/ledger/part-00000.parquet", [legacy])


def test_manifest_rows_come_as_dicts_and_a_bad_json_line_as_an_error_row(tmp_path):
    (tmp_path / "m.csv").write_text("path,title\na.jpg,first\nb.jpg,\n")
    assert list(manifest_rows(str(tmp_path / "m.csv"))) == [
        {"path": "a.jpg", "title": "first"},
        {"path": "b.jpg", "title": ""},
    ]
    (tmp_path / "m.jsonl").write_text('{"path": "a.jpg"}\n\n[1, 2]\nnot json\n')
    rows = list(manifest_rows(str(tmp_path / "m.jsonl")))
    assert rows[0] == {"path": "a.jpg"}
    assert rows[1] == {"__error__": "line 3 is not a JSON object"}
    assert rows[2]["__error__"].startswith("line 4 is not valid JSON")
    pq.write_table(pa.Table.from_pylist([{"path": "a.jpg", "n": 1}]), tmp_path / "m.parquet")
    assert list(manifest_rows(str(tmp_path / "m.parquet"))) == [{"path": "a.jpg", "n": 1}]


def _tar(path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_tar_sample_is_located_not_read_and_its_text_members_become_metadata(tmp_path):
    path = str(tmp_path / "shard.tar")
    meta = json.dumps({"title": "t", "domain": "marketing"}).encode()
    _tar(path, {"s0.jpg": b"JPEGDATA", "s0.json": meta, "s0.txt": b" a caption ", "s1.json": b"{not json"})
    first, second = tar_items(FileMetadata(path, os.path.getsize(path)), InputSpec(path=path), IngestConfig())
    assert (first.source, first.domain, first.data, first.path) == (f"{path}#s0", "marketing", None, path)
    assert first.metadata == {"title": "t", "caption": "a caption"}
    with open(path, "rb") as handle:
        handle.seek(first.member[0])
        assert handle.read(first.member[1]) == b"JPEGDATA"
    assert second.data == b"" and "__sidecar_error__" in second.metadata


def test_a_tar_sample_s_dotted_text_members_are_text_and_a_sample_without_an_image_says_so(tmp_path):
    path = str(tmp_path / "shard.tar")
    members = {
        "a/s1.JPG": b"JPEG1", "a/s1.caption.txt": b"dotted", "a/s1.cls": b"3",  # the image sorts after the text
        "s2.png": b"PNG2", "s2.jpg": b"JPEG2", "s2.TXT": b"two images",
        "s3.txt": b"text alone",
    }  # fmt: skip
    _tar(path, members)
    first, second, third = tar_items(FileMetadata(path, os.path.getsize(path)), InputSpec(path=path), IngestConfig())
    with open(path, "rb") as handle:
        handle.seek(first.member[0])
        assert handle.read(first.member[1]) == b"JPEG1"
        handle.seek(second.member[0])
        assert handle.read(second.member[1]) == b"JPEG2"  # jpg before png; the png is named, not dropped unseen
    assert first.metadata == {"caption": "dotted", "cls": "3"}
    assert second.metadata == {"caption": "two images", "unused_members": ["s2.png"]}
    assert "s3 of" in third.metadata[NO_IMAGE] and "only s3.txt" in third.metadata[NO_IMAGE]


@pytest.mark.parametrize(
    "text",
    [
        "\ufeffpath,title\r\na.jpg,Café\r\n",  # Excel's "CSV UTF-8": a byte-order mark and CRLF
        "path;title\na.jpg;Café\n",  # Excel where the decimal mark is a comma
        "path\ttitle\na.jpg\tCafé\n",
        "sep=;\r\npath;title\r\na.jpg;Café\r\n",  # Excel's line naming the delimiter: was read as the header
        "SEP=|\npath|title\na.jpg|Café\n",
        "path , title\na.jpg,Café\n",  # spaces around column names
    ],
)
def test_a_csv_manifest_is_read_with_a_byte_order_mark_and_its_header_s_delimiter(tmp_path, text):
    (tmp_path / "m.csv").write_bytes(text.encode("utf-8"))
    assert list(manifest_rows(str(tmp_path / "m.csv"))) == [{"path": "a.jpg", "title": "Café"}]


def test_a_row_that_is_not_utf8_is_an_error_row_and_the_rows_around_it_are_read(tmp_path):
    (tmp_path / "m.csv").write_bytes("path,title\na.jpg,Café\nb.jpg,fine\n".encode("cp1252"))
    error, fine = manifest_rows(str(tmp_path / "m.csv"))
    assert "row 1 is not UTF-8" in error["__error__"] and fine == {"path": "b.jpg", "title": "fine"}
    (tmp_path / "m.jsonl").write_bytes('{"path": "a.jpg", "title": "Café"}\n{"path": "b.jpg"}\n'.encode("cp1252"))
    error, fine = manifest_rows(str(tmp_path / "m.jsonl"))
    assert "line 1 is not UTF-8" in error["__error__"] and fine == {"path": "b.jpg"}


def test_a_path_taken_literally_matches_itself_and_no_sibling_its_brackets_describe(tmp_path):
    for name in ("out [12]", "out 1", "out 2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "part-0.parquet").write_bytes(b"x")
    found = FileSystems.match([pattern(str(tmp_path / "out [12]"), "part-*.parquet")])[0].metadata_list
    assert [m.path for m in found] == [str(tmp_path / "out [12]" / "part-0.parquet")]
    assert literal("gs://bucket/a*b?/[x]") == "gs://bucket/a[*]b[?]/[[]x]"
    assert pattern_roots(InputSpec(path=str(tmp_path / "out [12]"))) == (str(tmp_path / "out [12]"),)
