"""Ingest: manifests in three formats, sidecars, WebDataset tars, and path checks, through real pipeline runs."""

import hashlib
import io
import json
import os
import pickle
import tarfile

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from schemas import reasons
from schemas.config.ingest import IngestConfig
from schemas.config.load import load_config
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from tests.helpers import jpeg_bytes, make_photo, write_sidecar
from transforms._folder_metadata import matched_spelling
from transforms._reading import read_bytes
from transforms.ingest import ReadInputs, _first_listing, resolve_manifest_path

OPT_IN = "ingest.follow_symlinks = true"


@pytest.fixture
def linked(tmp_path):
    """A manifest folder and a file folder holding symbolic links into and out of them, and a photo outside both.

    ``data/img/link-in.jpg`` -> ``p0.jpg`` beside it, ``data/img/link-out.jpg`` -> ``outside/secret.jpg``,
    ``data/linked`` -> ``outside/`` (a folder), ``files/link-out.jpg`` -> the secret, ``files/own.json`` -> the
    secret's sidecar (the sidecar of ``files/own.jpg``).
    """
    data, outside, files = tmp_path / "data", tmp_path / "outside", tmp_path / "files"
    (data / "img").mkdir(parents=True)
    outside.mkdir()
    files.mkdir()
    make_photo(200, 160, seed=0).save(data / "img" / "p0.jpg")
    make_photo(200, 160, seed=1).save(outside / "secret.jpg")
    write_sidecar(outside / "secret.jpg", title="outside the roots")
    (data / "img" / "link-in.jpg").symlink_to("p0.jpg")
    (data / "img" / "link-out.jpg").symlink_to(outside / "secret.jpg")
    (data / "linked").symlink_to(outside, target_is_directory=True)
    make_photo(200, 160, seed=2).save(files / "own.jpg")
    (files / "own.json").symlink_to(outside / "secret.json")
    (files / "link-out.jpg").symlink_to(outside / "secret.jpg")
    make_photo(200, 160, seed=3).save(files / "plain.jpg")
    write_sidecar(files / "plain.jpg", title="plain")
    return tmp_path


@pytest.mark.parametrize(
    "value",
    [
        "img/link-out.jpg",  # a file link leading out
        "linked/secret.jpg",  # a folder link on the way
        "{root}/data/img/../../outside/secret.jpg",  # an absolute path with ..
        "file://{root}/outside/secret.jpg",  # a file:// URL
        "file://{root}/data/%2e%2e/outside/secret.jpg",  # a file:// URL's percent-encoded ..
        "{root}/data/img/link-out.jpg",  # an absolute path through a link
    ],
)
def test_manifest_paths_leading_out_of_the_root_by_name_or_link_are_rejected(linked, value):
    manifest = str(linked / "data" / "m.csv")
    with pytest.raises(RejectItem) as caught:
        resolve_manifest_path(value.format(root=linked), manifest, [])
    assert caught.value.reason == reasons.OUTSIDE_ROOT
    detail = caught.value.detail
    assert detail["resolved"] == os.path.realpath(linked / "outside" / "secret.jpg")
    assert value.format(root=linked) in detail["message"] and detail["resolved"] in detail["message"]
    through_link = "link-out" in value or "linked" in value
    assert (OPT_IN in detail["message"]) == through_link


def test_manifest_paths_through_links_are_kept_when_they_stay_inside_or_links_are_followed(linked):
    manifest = str(linked / "data" / "m.csv")
    inside = str(linked / "data" / "img" / "link-in.jpg")
    assert resolve_manifest_path("img/link-in.jpg", manifest, []) == inside
    assert resolve_manifest_path(f"file://{linked}/data/img/p0.jpg", manifest, []) == str(
        linked / "data" / "img" / "p0.jpg"
    )
    assert resolve_manifest_path("img/link-out.jpg", manifest, [], follow_symlinks=True) == str(
        linked / "data" / "img" / "link-out.jpg"
    )
    assert resolve_manifest_path("linked/secret.jpg", manifest, [], follow_symlinks=True) == str(
        linked / "data" / "linked" / "secret.jpg"
    )
    with pytest.raises(RejectItem) as caught:  # following links never lets a name itself leave
        resolve_manifest_path("../outside/secret.jpg", manifest, [], follow_symlinks=True)
    assert caught.value.reason == reasons.OUTSIDE_ROOT and OPT_IN not in caught.value.detail["message"]


def test_a_percent_encoded_dot_dot_in_a_plain_path_is_a_folder_name_not_a_parent(linked):
    resolved = resolve_manifest_path("%2e%2e/outside/secret.jpg", str(linked / "data" / "m.csv"), [])
    assert resolved == str(linked / "data" / "%2e%2e" / "outside" / "secret.jpg")


def _save(rows: list, path: str) -> None:
    with open(path, "wb") as handle:
        pickle.dump(rows, handle)


def read_inputs(inputs: list[dict], out, **config) -> tuple[dict, dict]:
    """Run ``ReadInputs`` alone on the DirectRunner: the read items and the rejections, by source base name."""
    ingest = IngestConfig.model_validate({"inputs": inputs, **config})
    with beam.Pipeline(runner="DirectRunner") as pipeline:
        result = pipeline | ReadInputs(ingest)
        for name, pcoll in (("items", result.items), ("rejected", result.rejected)):
            _ = pcoll | f"List{name}" >> beam.combiners.ToList() | f"Save{name}" >> beam.Map(_save, str(out / name))
    loaded = {name: pickle.loads((out / name).read_bytes()) for name in ("items", "rejected")}
    return tuple({os.path.basename(row.source): row for row in loaded[name]} for name in ("items", "rejected"))


@pytest.fixture
def opened(monkeypatch):
    """Every path ingest opens, recorded."""
    from apache_beam.io.filesystems import FileSystems

    paths, real_open = [], FileSystems.open

    def recording_open(path, *args, **kwargs):
        paths.append(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(FileSystems, "open", staticmethod(recording_open))
    return paths


def test_links_out_of_the_roots_are_rejected_and_never_read(linked, opened):
    manifest = linked / "data" / "m.csv"
    manifest.write_text(
        "path\nimg/p0.jpg\nimg/link-in.jpg\nimg/link-out.jpg\nlinked/secret.jpg\n%2e%2e/outside/secret.jpg\n"
    )
    items, dropped = read_inputs([{"path": str(manifest)}, {"path": str(linked / "files")}], linked)
    assert set(items) == {"m.csv#1", "m.csv#2", "plain.jpg"}
    assert items["m.csv#2"].data == (linked / "data" / "img" / "p0.jpg").read_bytes()
    assert items["plain.jpg"].metadata["title"] == "plain"
    secret, secret_sidecar = (os.path.realpath(linked / "outside" / name) for name in ("secret.jpg", "secret.json"))
    expected = {
        "m.csv#3": (reasons.OUTSIDE_ROOT, secret),
        "m.csv#4": (reasons.OUTSIDE_ROOT, secret),
        "m.csv#5": (reasons.MISSING_FILE, None),  # the literal folder "%2e%2e", never decoded to ..
        "link-out.jpg": (reasons.OUTSIDE_ROOT, secret),
        "own.jpg": (reasons.OUTSIDE_ROOT, secret_sidecar),  # its sidecar is the link
    }
    assert {name: (row.stage, row.reason) for name, row in dropped.items()} == {
        name: ("ingest", reason) for name, (reason, _) in expected.items()
    }
    for name, (reason, resolved) in expected.items():
        detail = json.loads(dropped[name].detail)
        if reason == reasons.OUTSIDE_ROOT:
            assert detail["resolved"] == resolved and resolved in detail["message"] and OPT_IN in detail["message"]
    outside = os.path.realpath(linked / "outside")
    assert opened and not [path for path in opened if os.path.realpath(path).startswith(outside + os.sep)]


def test_following_symlinks_is_an_opt_in_that_reads_them(linked, opened):
    manifest = linked / "data" / "m.csv"
    manifest.write_text("path\nimg/link-out.jpg\nlinked/secret.jpg\n")
    inputs = [{"path": str(manifest)}, {"path": str(linked / "files")}]
    items, dropped = read_inputs(inputs, linked, follow_symlinks=True)
    assert dropped == {}
    assert set(items) == {"m.csv#1", "m.csv#2", "link-out.jpg", "own.jpg", "plain.jpg"}
    secret = (linked / "outside" / "secret.jpg").read_bytes()
    assert items["m.csv#1"].data == items["m.csv#2"].data == items["link-out.jpg"].data == secret
    assert items["own.jpg"].metadata["title"] == "outside the roots"


def test_a_folder_linked_in_from_outside_is_one_named_rejection_or_with_the_opt_in_its_files(linked, opened):
    """Beam's matching never enters a linked folder: its photos had no ledger row, even with the opt-in."""
    (linked / "data" / "img" / "loop").symlink_to("..", target_is_directory=True)  # back inside: listed already
    (linked / "outside" / "back").symlink_to(linked / "data" / "linked", target_is_directory=True)  # a loop
    items, dropped = read_inputs([{"path": str(linked / "data")}], linked)
    assert set(items) == {"p0.jpg", "link-in.jpg"} and set(dropped) == {"link-out.jpg", "linked"}
    detail = json.loads(dropped["linked"].detail)
    assert dropped["linked"].reason == reasons.OUTSIDE_ROOT and OPT_IN in detail["message"]
    assert detail["resolved"] == os.path.realpath(linked / "outside")
    assert not [path for path in opened if "outside" in os.path.realpath(path)]

    # a pattern that lists no subfolder's files lists no linked folder either
    items, dropped = read_inputs([{"path": str(linked / "data" / "*.jpg")}], linked)
    assert items == {} and dropped == {}

    items, dropped = read_inputs([{"path": str(linked / "data")}], linked, follow_symlinks=True)
    assert dropped == {}
    assert sorted(row.source for row in items.values()) == sorted(
        str(linked / "data" / name)
        for name in ("img/p0.jpg", "img/link-in.jpg", "img/link-out.jpg", "linked/secret.jpg")
    )
    assert items["secret.jpg"].metadata["title"] == "outside the roots"


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

    texts = out.texts_by_name()
    assert texts["f0.jpg"] == "From a JSON sidecar"
    assert texts["f1.jpg"] == "From a text sidecar"
    assert texts["input.tar#s0"] == "A caption from a tar"
    assert texts["m.jsonl#1"] == "scratch"
    domains = {name: json.loads(sample["json"])["domain"] for name, sample in out.samples_by_name().items()}
    assert domains == {
        "m.csv#1": "marketing",
        "m.jsonl#1": "factory",
        "m.parquet#1": "factory",
        "f0.jpg": "factory",
        "f1.jpg": "factory",
        "input.tar#s0": "marketing",
    }


def test_transient_read_errors_are_retried_and_the_attempts_recorded(tmp_path, run, flaky):
    images = tmp_path / "images"
    images.mkdir()
    for name, seed in (("flaky.jpg", 1), ("dead.jpg", 2), ("fine.jpg", 3)):
        make_photo(200, 160, seed=seed).save(images / name)
        (images / name.replace(".jpg", ".txt")).write_text(f"photo {name}")
    flaky.update({"flaky.jpg": 2, "dead.jpg": 99})
    rows = run([images]).ledger_by_name()
    assert rows["flaky.jpg"]["status"] == "kept"
    assert json.loads(rows["flaky.jpg"]["detail"])["read_attempts"] == 3
    assert rows["dead.jpg"]["reason"] == reasons.UNREADABLE_INPUT
    assert json.loads(rows["dead.jpg"]["detail"])["attempts"] == 3
    assert "read_attempts" not in json.loads(rows["fine.jpg"]["detail"])


def test_sidecars_of_any_case_are_merged_and_one_that_no_image_takes_is_in_the_ledger(tmp_path, run):
    files = tmp_path / "files"
    files.mkdir()
    make_photo(200, 160, seed=30).save(files / "upper.jpg")
    (files / "upper.TXT").write_text("A caption in an upper-case TXT file")
    make_photo(200, 160, seed=31).save(files / "both.png")
    (files / "both.json").write_text(json.dumps({"title": "A title from JSON"}))
    (files / "both.txt").write_text("A caption beside the JSON")
    make_photo(200, 160, seed=32).save(files / "twice.jpg")
    (files / "twice.TXT").write_text("The first caption file in sorted order")
    (files / "twice.txt").write_text("A second caption file of the same photo")
    (files / "notes.txt").write_text("Text for a photo that is not in the folder")

    out = run([files], text={"fields": ["caption", "title"]})

    rows = out.ledger_by_name()
    assert len(out.ledger) == 5  # three photos and the two text files no photo takes
    assert rows["upper.jpg"]["status"] == rows["both.png"]["status"] == rows["twice.jpg"]["status"] == "kept"
    assert rows["notes.txt"]["reason"] == rows["twice.txt"]["reason"] == reasons.ORPHAN_SIDECAR
    assert "no image named notes." in json.loads(rows["notes.txt"]["detail"])["message"]
    assert "twice.TXT" in json.loads(rows["twice.txt"]["detail"])["message"]
    samples = out.samples_by_name()
    assert samples["upper.jpg"]["txt"].decode() == "A caption in an upper-case TXT file"
    assert samples["twice.jpg"]["txt"].decode() == "The first caption file in sorted order"
    metadata = json.loads(samples["both.png"]["json"])["metadata"]
    assert (metadata["caption"], metadata["title"]) == ("A caption beside the JSON", "A title from JSON")


def test_manifests_as_spreadsheets_save_them_are_read_or_each_problem_is_a_named_ledger_row(tmp_path, run):
    images = tmp_path / "img"
    images.mkdir()
    for seed in (50, 51, 52, 57):
        make_photo(200, 160, seed=seed).save(images / f"p{seed}.jpg")
    (tmp_path / "excel.csv").write_bytes("\ufeffpath;title\r\nimg/p50.jpg;Café sign\r\n".encode())
    (tmp_path / "legacy.csv").write_bytes("path,title\nimg/p51.jpg,Crème\nimg/p52.jpg,plain\n".encode("cp1252"))
    (tmp_path / "hub.csv").write_text("file_name,text\nimg/p51.jpg,a photo of a sign\n")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not a parquet file")
    (tmp_path / "tabs.TSV").write_text("path\ttitle\nimg/p57.jpg\tTab-separated\n")

    out = run([tmp_path / name for name in ("excel.csv", "legacy.csv", "hub.csv", "broken.parquet", "tabs.TSV")])

    rows = out.ledger_by_name()
    assert len(out.ledger) == 6  # 1 + 2 + 1 + 1 rows, and the Parquet file that could not be read
    assert rows["excel.csv#1"]["status"] == rows["legacy.csv#2"]["status"] == "kept"
    messages = {name: json.loads(row["detail"])["message"] for name, row in rows.items() if row["status"] != "kept"}
    assert {rows[name]["reason"] for name in messages if name != "hub.csv#1"} == {reasons.MALFORMED_MANIFEST_ROW}
    assert "row 1 is not UTF-8" in messages["legacy.csv#1"]
    # Hugging Face's file_name column is read; its text column is no default text field, and the rejection says so.
    assert rows["hub.csv#1"]["reason"] == reasons.NO_TEXT and "words under 'text'" in messages["hub.csv#1"]
    assert "broken.parquet" in messages["broken.parquet#1"]
    texts = out.texts_by_name()
    assert texts == {"excel.csv#1": "Café sign", "legacy.csv#2": "plain", "tabs.TSV#1": "Tab-separated"}


def test_manifests_made_on_windows_in_utf16_or_with_backslashes_are_read_as_meant(tmp_path, run):
    """PowerShell's Out-File and Excel's "Unicode Text" write UTF-16: one row read as three malformed ones before;
    a relative path with ``\\`` was a missing file."""
    images = tmp_path / "img"
    images.mkdir()
    for seed in (53, 54, 55):
        make_photo(200, 160, seed=seed).save(images / f"p{seed}.jpg")
    row = {"path": "img/p53.jpg", "title": "Kühlschrank, Seitenansicht"}
    (tmp_path / "shell.jsonl").write_bytes((json.dumps(row, ensure_ascii=False) + "\r\n").encode("utf-16"))
    (tmp_path / "unicode.csv").write_bytes("path\ttitle\r\nimg/p54.jpg\tStahlblech\r\n".encode("utf-16"))
    (tmp_path / "paths.csv").write_text("path,title\nimg\\p55.jpg,relative\nC:\\data\\p56.jpg,absolute\n")

    out = run([tmp_path / name for name in ("shell.jsonl", "unicode.csv", "paths.csv")], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == ["paths.csv#1", "paths.csv#2", "shell.jsonl#1", "unicode.csv#1"]
    assert out.texts_by_name() == {
        "shell.jsonl#1": "Kühlschrank, Seitenansicht",
        "unicode.csv#1": "Stahlblech",
        "paths.csv#1": "relative",
    }
    assert rows["paths.csv#2"]["reason"] == reasons.MISSING_FILE
    assert "a Windows path? give it relative to the manifest's folder" in rows["paths.csv#2"]["detail"]


def test_a_tar_sample_with_a_dotted_caption_is_kept_and_one_without_an_image_is_named(tmp_path, run):
    tar_path = tmp_path / "input.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, payload in (
            ("s1.jpg", jpeg_bytes(make_photo(200, 160, seed=60))),
            ("s1.caption.txt", b"A caption in a dotted member"),  # sorts before jpg: it was taken for the image
            ("s2.txt", b"A caption whose image is missing"),
            (
                "s3.depth.png",
                jpeg_bytes(make_photo(200, 160, seed=61).convert("L")),
            ),  # sorts first: it was shipped as the photo
            ("s3.jpg", jpeg_bytes(make_photo(200, 160, seed=62))),
            ("s3.txt", b"A photo beside its depth map"),
            ("s4.caption", b"Sorts first: it was taken for the image, and the photo rejected as not_an_image"),
            ("s4.jpg", jpeg_bytes(make_photo(200, 160, seed=63))),
            ("s4.txt", b"A photo beside an unknown member"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

    out = run([tar_path], quality={"enabled": False})  # a smooth generated photo; sharpness is not the point here

    rows = out.ledger_by_name()
    assert len(out.ledger) == 4 and rows["input.tar#s1"]["status"] == "kept"
    assert rows["input.tar#s2"]["reason"] == reasons.MISSING_FILE
    assert "no image member" in json.loads(rows["input.tar#s2"]["detail"])["message"]
    samples = out.samples_by_name()
    assert samples["input.tar#s1"]["txt"].decode() == "A caption in a dotted member"
    for key, unused, seed in (("s3", "s3.depth.png", 62), ("s4", "s4.caption", 63)):
        sample = samples[f"input.tar#{key}"]
        record = json.loads(sample["json"])
        assert record["metadata"]["unused_members"] == [unused] and record["original"]["format"] == "JPEG"
        assert record["sha256"] == hashlib.sha256(jpeg_bytes(make_photo(200, 160, seed=seed))).hexdigest()


def test_a_compressed_tar_is_a_webdataset_input_and_a_tar_inside_a_folder_says_how_to_give_it(tmp_path, run):
    """A .tgz input was one not_an_image row advising to convert it to JPEG or PNG."""
    folder = tmp_path / "shots"
    folder.mkdir()
    for name, mode in (("shards.tgz", "w:gz"), ("shots/inner.tar", "w")):
        with tarfile.open(tmp_path / name, mode) as tar:
            for member, payload in (("s1.jpg", jpeg_bytes(make_photo(200, 160, seed=64))), ("s1.txt", b"a coil")):
                info = tarfile.TarInfo(member)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    make_photo(200, 160, seed=65).save(folder / "plain.jpg")

    out = run([tmp_path / "shards.tgz", folder], quality={"enabled": False}, text={"required": False})

    rows = out.ledger_by_name()
    assert rows["shards.tgz#s1"]["status"] == "kept" and out.texts_by_name()["shards.tgz#s1"] == "a coil"
    assert rows["inner.tar"]["reason"] == reasons.NOT_AN_IMAGE
    assert "a tar archive" in rows["inner.tar"]["detail"] and "its own input" in rows["inner.tar"]["detail"]


def test_file_and_member_names_that_are_not_utf8_are_read_and_shown_with_their_bytes_escaped(tmp_path, run):
    """Latin-1 names (an old Windows share, a zip): the run reads them and names them as ``caf\\xe9.jpg``."""
    files = tmp_path / "files"
    files.mkdir()
    latin = os.fsdecode(b"caf\xe9")  # the byte 0xE9 alone is not UTF-8: Python keeps it as a surrogate
    make_photo(200, 160, seed=80).save(files / f"{latin}.jpg", format="JPEG")
    (files / f"{latin}.txt").write_text("A caption beside a Latin-1 file name")
    (files / f"{latin} notes.txt").write_text("Text no photo takes")
    (tmp_path / "elsewhere").mkdir()
    make_photo(200, 160, seed=82).save(tmp_path / "elsewhere" / "secret.jpg")
    (files / f"{latin} link.jpg").symlink_to(tmp_path / "elsewhere" / "secret.jpg")  # its message names it
    tar_path = tmp_path / "input.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, payload in (
            (f"{latin}.jpg", jpeg_bytes(make_photo(200, 160, seed=81))),
            (f"{latin}.txt", b"In a tar"),
        ):
            info = tarfile.TarInfo(name)  # written as the raw bytes, as a tool that kept them would
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

    out = run([files, tar_path], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == ["caf\\xe9 link.jpg", "caf\\xe9 notes.txt", "caf\\xe9.jpg", "input.tar#caf\\xe9"]
    assert rows["caf\\xe9 link.jpg"]["reason"] == reasons.OUTSIDE_ROOT
    assert "caf\\xe9 link.jpg" in json.loads(rows["caf\\xe9 link.jpg"]["detail"])["message"]
    assert rows["caf\\xe9.jpg"]["status"] == rows["input.tar#caf\\xe9"]["status"] == "kept"
    assert rows["caf\\xe9 notes.txt"]["reason"] == reasons.ORPHAN_SIDECAR
    samples = out.samples_by_name()
    assert samples["caf\\xe9.jpg"]["txt"].decode() == "A caption beside a Latin-1 file name"
    assert samples["input.tar#caf\\xe9"]["txt"].decode() == "In a tar"
    assert json.loads(samples["caf\\xe9.jpg"]["json"])["path"] == str(files / "caf\\xe9.jpg")

    # An incremental run reads a new item's file again by its real name.
    make_photo(200, 160, seed=83).save(files / f"{latin} 2.jpg", format="JPEG")
    (files / f"{latin} 2.txt").write_text("A second photo with a Latin-1 name")
    again = run([files, tar_path], quality={"enabled": False})
    assert again.ledger_by_name()["caf\\xe9 2.jpg"]["status"] == "kept"


def test_metadata_with_half_an_emoji_is_kept_with_a_replacement_character(tmp_path, run):
    """A JSON sidecar or manifest row escaping one half of a surrogate pair alone (``\\ud83d``) stopped the run."""
    files = tmp_path / "files"
    files.mkdir()
    make_photo(200, 160, seed=90).save(files / "sidecar.jpg")
    (files / "sidecar.json").write_text('{"title": "Steel coil \\ud83d, grade A", "label": "dent\\udce9"}')
    make_photo(200, 160, seed=91).save(tmp_path / "row.jpg")
    (tmp_path / "rows.jsonl").write_text('{"path": "row.jpg", "title": "Blue mug \\ude00 on white"}\n')

    out = run([files, tmp_path / "rows.jsonl"], quality={"enabled": False}, text={"fields": ["title"]})

    assert [row["status"] for row in out.ledger] == ["kept", "kept"]
    texts = out.texts_by_name()
    assert texts == {"sidecar.jpg": "Steel coil \ufffd, grade A", "rows.jsonl#1": "Blue mug \ufffd on white"}
    (sidecar,) = [s for s in out.samples() if json.loads(s["json"])["source"].endswith("sidecar.jpg")]
    assert json.loads(sidecar["json"])["metadata"]["label"] == "dent\ufffd"


def test_a_link_whose_target_is_gone_is_a_missing_file_row_not_silence(tmp_path, run):
    """Beam's matching skips a file it cannot size: a stale link left no trace before."""
    files = tmp_path / "files"
    (files / "sub").mkdir(parents=True)
    make_photo(200, 160, seed=95).save(files / "here.jpg")
    write_sidecar(files / "here.jpg", title="a photo that is here")
    make_photo(200, 160, seed=96).save(files / "sub" / "also.jpg")
    write_sidecar(files / "sub" / "also.jpg", title="a photo in the sub-folder")
    (files / "sub" / "gone.jpg").symlink_to(tmp_path / "moved-away" / "gone.jpg")
    (files / "note.txt").symlink_to(tmp_path / "moved-away" / "note.txt")

    out = run([files, {"path": str(files / "sub" / "*.jpg")}])

    rows = out.ledger_by_name()
    assert sorted(rows) == ["also.jpg", "gone.jpg", "here.jpg", "note.txt"]  # one row per file both inputs match
    assert rows["here.jpg"]["status"] == rows["also.jpg"]["status"] == "kept"
    assert rows["gone.jpg"]["reason"] == rows["note.txt"]["reason"] == reasons.MISSING_FILE
    message = json.loads(rows["gone.jpg"]["detail"])["message"]
    assert f"symbolic link to {tmp_path / 'moved-away' / 'gone.jpg'}, which does not exist" in message


def test_a_tar_cut_short_keeps_the_samples_before_the_break_and_a_non_tar_is_one_row(tmp_path, run):
    """An interrupted copy, or a file that is no tar, stopped the whole run."""
    whole = io.BytesIO()
    with tarfile.open(fileobj=whole, mode="w") as tar:
        for number in range(4):
            for name, payload in (
                (f"s{number}.jpg", jpeg_bytes(make_photo(200, 160, seed=100 + number))),
                (f"s{number}.txt", f"Sample {number} of a tar that was cut".encode()),
            ):
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    data = whole.getvalue()
    cut = data.index(b"s2.jpg") + 2000  # inside the third sample's image
    (tmp_path / "cut.tar").write_bytes(data[:cut])
    (tmp_path / "notes.tar").write_bytes(b"meeting notes, not a tar\n" * 40)

    out = run([tmp_path / "cut.tar", tmp_path / "notes.tar"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == ["cut.tar#s0", "cut.tar#s1", "cut.tar#s2", "notes.tar"]
    assert rows["cut.tar#s0"]["status"] == rows["cut.tar#s1"]["status"] == "kept"
    assert rows["cut.tar#s2"]["reason"] == rows["notes.tar"]["reason"] == reasons.UNREADABLE_INPUT
    assert "breaks off at sample s2" in json.loads(rows["cut.tar#s2"]["detail"])["message"]
    assert "cannot be read as a tar" in json.loads(rows["notes.tar"]["detail"])["message"]
    assert sorted(sample["txt"].decode() for sample in out.samples()) == [
        "Sample 0 of a tar that was cut",
        "Sample 1 of a tar that was cut",
    ]


def test_captions_saved_by_notepad_are_read_and_one_in_a_legacy_encoding_is_named(tmp_path, run):
    """UTF-16 (Notepad's "Unicode") read as UTF-8 made a caption of every other character a NUL, without a word."""
    files = tmp_path / "files"
    files.mkdir()
    captions = {
        "utf16": "A caption saved as UTF-16 by Notepad".encode("utf-16"),
        "bom": "\ufeffA caption saved as UTF-8 with a byte-order mark".encode(),
        "legacy": "Un café crème, saved as Windows-1252".encode("cp1252"),
        # UTF-16 without a byte-order mark: its ASCII text is valid UTF-8, every other character a NUL
        "nobom_le": "a steel plate".encode("utf-16-le"),
        "nobom_be": "a steel plate".encode("utf-16-be"),
    }
    for seed, (name, data) in enumerate(captions.items()):
        make_photo(200, 160, seed=110 + seed).save(files / f"{name}.jpg")
        (files / f"{name}.txt").write_bytes(data)
    tar_path = tmp_path / "input.tar"
    with tarfile.open(tar_path, "w") as tar:
        for name, payload in (
            ("t.jpg", jpeg_bytes(make_photo(200, 160, seed=113))),
            ("t.txt", "A tar member in UTF-16".encode("utf-16")),
            ("u.jpg", jpeg_bytes(make_photo(200, 160, seed=114))),
            ("u.txt", "A tar member in UTF-16 without its mark".encode("utf-16-le")),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

    out = run([files, tar_path], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["utf16.jpg"]["status"] == rows["bom.jpg"]["status"] == rows["input.tar#t"]["status"] == "kept"
    assert rows["legacy.jpg"]["reason"] == reasons.MALFORMED_SIDECAR
    assert "is not UTF-8 text" in json.loads(rows["legacy.jpg"]["detail"])["message"]
    for name in ("nobom_le.jpg", "nobom_be.jpg", "input.tar#u"):
        assert rows[name]["reason"] == reasons.MALFORMED_SIDECAR, name
        assert "UTF-16 text without a byte-order mark" in json.loads(rows[name]["detail"])["message"], name
    texts = out.texts_by_name()
    assert texts == {
        "utf16.jpg": "A caption saved as UTF-16 by Notepad",
        "bom.jpg": "A caption saved as UTF-8 with a byte-order mark",
        "input.tar#t": "A tar member in UTF-16",
    }


def test_a_sidecar_named_in_another_unicode_form_than_its_image_is_named_as_such(tmp_path, run):
    """macOS writes names decomposed (NFD); a caption file typed elsewhere is composed (NFC). The orphan row said no
    image of that name sat beside it, while one did."""
    import unicodedata

    files = tmp_path / "files"
    files.mkdir()
    make_photo(200, 160, seed=120).save(files / unicodedata.normalize("NFD", "café.jpg"))
    (files / unicodedata.normalize("NFC", "café.txt")).write_text("a café terrace", encoding="utf-8")

    out = run([files], quality={"enabled": False})

    rows = {unicodedata.normalize("NFC", name): row for name, row in out.ledger_by_name().items()}
    assert rows["café.txt"]["reason"] == reasons.ORPHAN_SIDECAR
    assert "differ only in how their letters are encoded (Unicode NFC and NFD" in rows["café.txt"]["detail"]
    assert rows["café.jpg"]["reason"] == reasons.NO_TEXT


def test_a_pattern_that_matches_only_images_still_reads_their_sidecars(tmp_path, run):
    files = tmp_path / "files"
    files.mkdir()
    make_photo(200, 160, seed=70).save(files / "a.jpg")
    (files / "a.txt").write_text("A caption the pattern does not match")

    out = run([files / "*.jpg"], quality={"enabled": False})

    assert [row["status"] for row in out.ledger] == ["kept"]
    assert [s["txt"].decode() for s in out.samples()] == ["A caption the pattern does not match"]


def _captioned_photos(folder, seeds):
    """``folder`` with ``pSEED.jpg`` and its caption ``pSEED.txt`` for each seed."""
    folder.mkdir()
    for seed in seeds:
        make_photo(200, 160, seed=seed).save(folder / f"p{seed}.jpg")
        (folder / f"p{seed}.txt").write_text(f"photo {seed}")
    return folder


def test_an_output_folder_inside_the_input_folder_is_not_listed_as_input(tmp_path, run):
    photos = _captioned_photos(tmp_path / "photos", (80, 81))

    first = run([photos], output=photos / "out", quality={"enabled": False})
    second = run([photos], output=photos / "out", quality={"enabled": False})

    # the second listing sees the first run's shards, ledger, report and eval images under photos/out
    assert sorted(row["source"] for row in second.ledger) == [str(photos / "p80.jpg"), str(photos / "p81.jpg")]
    assert second.ledger == first.ledger


def test_an_earlier_output_inside_the_input_folder_is_not_read_back_but_a_person_s_file_there_is(tmp_path, run):
    """A run into ``photos/out``, then a run of ``photos`` into another folder: the first run's shards, ledger, report
    and run record were inputs of the second, rejected as ``not_an_image`` and ``orphan_sidecar``."""
    photos = _captioned_photos(tmp_path / "photos", (82, 83))
    run([photos], output=photos / "out", quality={"enabled": False})
    make_photo(200, 160, seed=84).save(photos / "out" / "added.jpg")
    (photos / "out" / "added.txt").write_text("a photo a person put beside the output")

    second = run([photos], output=tmp_path / "elsewhere", quality={"enabled": False})

    names = ("out/added.jpg", "p82.jpg", "p83.jpg")
    assert sorted(row["source"] for row in second.ledger) == [str(photos / name) for name in names]
    assert {row["status"] for row in second.ledger} == {"kept"}


def test_a_person_s_file_in_the_run_s_own_output_folder_inside_the_input_is_an_input(tmp_path, run):
    """Every file under the run's own output was skipped: two photos put into ``photos/out`` had no ledger row, and
    the rerun said nothing was new."""
    photos = _captioned_photos(tmp_path / "photos", (85, 86))
    assert len(run([photos], output=photos / "out", quality={"enabled": False}).samples()) == 2
    (photos / "out" / "sub").mkdir()
    for name, seed in (("added.jpg", 87), ("sub/added2.jpg", 88)):
        make_photo(200, 160, seed=seed).save(photos / "out" / name)
        (photos / "out" / name).with_suffix(".txt").write_text(f"a photo a person put into the output, {seed}")

    second = run([photos], output=photos / "out", quality={"enabled": False})

    names = ("out/added.jpg", "out/sub/added2.jpg", "p85.jpg", "p86.jpg")
    assert sorted(row["source"] for row in second.ledger) == [str(photos / name) for name in names]
    assert {row["status"] for row in second.ledger} == {"kept"}
    assert len(second.samples()) == 4


@pytest.mark.timeout(120)
def test_a_named_pipe_in_an_input_folder_is_rejected_at_once_instead_of_hanging_the_run(tmp_path, run):
    """Reading a FIFO waits for a writer: the run hung forever, holding its lock."""
    photos = _captioned_photos(tmp_path / "photos", (89,))
    os.mkfifo(photos / "camera_feed.jpg")

    out = run([photos], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["p89.jpg"]["status"] == "kept"
    assert rows["camera_feed.jpg"]["reason"] == reasons.UNREADABLE_INPUT
    assert "is a named pipe (FIFO), not a file" in rows["camera_feed.jpg"]["detail"]


def test_a_listed_file_deleted_before_it_is_read_is_missing_without_advice_about_manifests(tmp_path):
    with pytest.raises(RejectItem) as raised:
        read_bytes(str(tmp_path / "gone.jpg"), listed=True)
    assert raised.value.reason == reasons.MISSING_FILE and "manifest" not in str(raised.value.detail)


def test_overlapping_inputs_list_each_file_once_with_the_first_input_s_settings(tmp_path, run):
    photos = _captioned_photos(tmp_path / "photos", (90, 91))
    (tmp_path / "m.csv").write_text("path,title\nphotos/p90.jpg,from the manifest\n")
    inputs = [
        {"path": str(photos), "domain": "factory"},
        {"path": str(photos / "*.jpg"), "domain": "marketing"},  # the same two files again
        {"path": str(tmp_path / "m.csv")},
        {"path": str(tmp_path / "m.csv")},  # the same manifest again
    ]

    out = run(inputs, quality={"enabled": False})  # the run crashed: "ledger invariant broken"

    rows = out.ledger_by_name()
    assert sorted(rows) == ["m.csv#1", "p90.jpg", "p91.jpg"]
    assert rows["p90.jpg"]["domain"] == rows["p91.jpg"]["domain"] == "factory"
    # the manifest row names p90.jpg's bytes again: one of the two is the other's exact duplicate
    assert sorted(rows[name]["reason"] for name in ("m.csv#1", "p90.jpg")) == ["", reasons.EXACT_DUPLICATE]


def test_a_retried_read_is_in_the_ledger_only_and_changes_no_shard_byte(tmp_path, run, flaky):
    images = tmp_path / "images"
    images.mkdir()
    for name, seed in (("flaky.jpg", 4), ("fine.jpg", 5)):
        make_photo(200, 160, seed=seed).save(images / name)
        (images / name.replace(".jpg", ".txt")).write_text(f"photo {name}")
    clean = run([images], output=tmp_path / "clean", quality={"enabled": False})
    flaky.update({"flaky.jpg": 2})

    retried = run([images], output=tmp_path / "retried", quality={"enabled": False})

    assert json.loads(retried.ledger_by_name()["flaky.jpg"]["detail"])["read_attempts"] == 3
    shards = {name: data for name, data in retried.file_bytes().items() if name.startswith("shards/")}
    assert shards and shards == {name: data for name, data in clean.file_bytes().items() if name.startswith("shards/")}


def test_inputs_in_folders_named_with_wildcard_characters_are_read_as_named(tmp_path, run):
    """``Fotos [2024]`` matched no file (Beam reads ``[2024]`` as one of 2, 0, 4) or, worse, a sibling ``Fotos 2``."""
    fotos, decoy, batch = tmp_path / "Fotos [2024]", tmp_path / "Fotos 2", tmp_path / "Batch [B] (copy?)"
    for folder in (fotos / "sub", decoy, batch):
        folder.mkdir(parents=True)
    for path, seed in ((fotos / "a.jpg", 110), (fotos / "sub" / "b [1].jpg", 111), (decoy / "c.jpg", 112)):
        make_photo(200, 160, seed=seed).save(path)
        write_sidecar(path, title=f"photo {path.name}")
    make_photo(200, 160, seed=113).save(batch / "d.jpg")
    (batch / "rows.csv").write_text("path,title\nd.jpg,a row of a manifest\n", encoding="utf-8")
    tars = tmp_path / "Tars [1]"
    tars.mkdir()
    with tarfile.open(tars / "part*.tar", "w") as tar:
        for name, payload in (("e.jpg", jpeg_bytes(make_photo(200, 160, seed=114))), ("e.txt", b"In a tar")):
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))

    text = {"fields": ["title", "caption"]}
    out = run([fotos, batch / "rows.csv", tars / "part*.tar"], quality={"enabled": False}, text=text)

    rows = out.ledger_by_name()
    assert sorted(rows) == ["a.jpg", "b [1].jpg", "part*.tar#e", "rows.csv#1"]  # never the decoy's c.jpg
    assert {row["status"] for row in rows.values()} == {"kept"}
    assert out.texts_by_name() == {
        "a.jpg": "photo a.jpg",
        "b [1].jpg": "photo b [1].jpg",
        "rows.csv#1": "a row of a manifest",
        "part*.tar#e": "In a tar",
    }


def _strict(text: str):
    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_nan_and_infinity_in_metadata_are_missing_values_not_text_nor_invalid_json(tmp_path, run):
    """Python's json writes a pandas row's missing value as ``NaN``: it became the caption ``nan``, and the shards'
    Parquet sidecars carried ``NaN``, which strict JSON readers refuse."""
    files = tmp_path / "files"
    files.mkdir()
    make_photo(200, 160, seed=140).save(files / "a.jpg")
    (files / "a.json").write_text('{"title": NaN, "description": "Steel plate, side view", "weight": -Infinity}')
    make_photo(200, 160, seed=141).save(tmp_path / "b.jpg")
    make_photo(200, 160, seed=142).save(tmp_path / "c.jpg")
    (tmp_path / "rows.jsonl").write_text('{"path": "b.jpg", "title": NaN, "label": "dent"}\n{"path": NaN}\n')
    table = pa.table({"path": ["c.jpg"], "title": ["Blue mug"], "price": [float("nan")]})
    pq.write_table(table, tmp_path / "rows.parquet")

    out = run([files, tmp_path / "rows.jsonl", tmp_path / "rows.parquet"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["rows.jsonl#2"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert "no 'path' value" in rows["rows.jsonl#2"]["detail"]
    assert out.texts_by_name() == {
        "a.jpg": "Steel plate, side view",
        "rows.jsonl#1": "dent",
        "rows.parquet#1": "Blue mug",
    }
    metadata = {
        row["source"].rsplit("/", 1)[-1]: _strict(row["metadata"])
        for sidecar in sorted((out.path / "shards" / "pairs").rglob("*.parquet"))
        for row in pq.read_table(sidecar).to_pylist()
    }
    assert metadata["a.jpg"] == {"title": None, "description": "Steel plate, side view", "weight": None}
    assert metadata["rows.parquet#1"] == {"title": "Blue mug"}  # a manifest row drops its missing values


def test_sidecars_named_after_the_whole_image_name_are_read_as_a_takeout_export_writes_them(tmp_path, run):
    """Takeout writes ``IMG_0001.jpg.json`` beside each photo, its ``title`` the file name: the sidecar was an orphan,
    and a title that is only the file name is no caption."""
    takeout = tmp_path / "Takeout" / "Google Photos" / "Shop 2024"
    takeout.mkdir(parents=True)
    make_photo(200, 160, seed=150).save(takeout / "IMG_0001.jpg")
    (takeout / "IMG_0001.jpg.json").write_text(json.dumps({"title": "IMG_0001.jpg", "description": "Shelf, aisle 4"}))
    make_photo(200, 160, seed=151).save(takeout / "IMG_0002.png")
    (takeout / "IMG_0002.png.txt").write_text("Window display, spring")
    (takeout / "IMG_0003.jpg.json").write_text(json.dumps({"description": "a photo that was not exported"}))
    single = tmp_path / "single"
    single.mkdir()
    make_photo(200, 160, seed=152).save(single / "p.jpeg")
    (single / "p.jpeg.json").write_text(json.dumps({"description": "found by name beside a one-file input"}))

    out = run([takeout, single / "p.jpeg"], quality={"enabled": False})  # the default text fields: title first

    rows = out.ledger_by_name()
    assert sorted(rows) == ["IMG_0001.jpg", "IMG_0002.png", "IMG_0003.jpg.json", "p.jpeg"]
    assert rows["IMG_0003.jpg.json"]["reason"] == reasons.ORPHAN_SIDECAR
    assert "no image named IMG_0003.jpg or IMG_0003.jpg.<image extension> sits" in rows["IMG_0003.jpg.json"]["detail"]
    assert out.texts_by_name() == {
        "IMG_0001.jpg": "Shelf, aisle 4",
        "IMG_0002.png": "Window display, spring",
        "p.jpeg": "found by name beside a one-file input",
    }
    (record,) = [json.loads(s["json"]) for s in out.samples() if json.loads(s["json"])["source"].endswith("0001.jpg")]
    caption = record["annotations"]["caption"]
    assert caption["source_text"]["source"] == "metadata.description"  # not the title, which is the file name
    assert [c["text"] for c in caption["candidates"]] == ["Shelf, aisle 4"]


def test_takeout_supplemental_metadata_sidecars_are_read_even_when_their_names_are_cut_short(tmp_path, run):
    """Takeout's newer exports write ``IMG.jpg.supplemental-metadata.json`` and cut the tag short where the name would
    pass 51 characters: each was an ``orphan_sidecar``, and its photo lost its description."""
    takeout = tmp_path / "Takeout" / "Google Photos" / "Line 3"
    takeout.mkdir(parents=True)
    long_name = "PXL_20240317_101112345.PORTRAIT.jpg"
    sidecars = {
        "IMG_0001.jpg": "IMG_0001.jpg.supplemental-metadata.json",
        long_name: f"{long_name}.supplement.json",  # 51 characters, as Takeout cuts it
        "IMG_0003.png": "IMG_0003.png.SUPP.json",
    }
    for seed, (image, sidecar) in enumerate(sidecars.items()):
        make_photo(200, 160, seed=160 + seed).save(takeout / image)
        (takeout / sidecar).write_text(json.dumps({"title": image, "description": f"Press {seed}, station B"}))
    (takeout / "IMG_0009.jpg.supplemental-metadata.json").write_text(json.dumps({"description": "not exported"}))
    single = tmp_path / "single"
    single.mkdir()
    make_photo(200, 160, seed=170).save(single / "p.jpeg")
    (single / "p.jpeg.supplemental-metadata.json").write_text(json.dumps({"description": "beside a one-file input"}))

    out = run([takeout, single / "p.jpeg"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert len(sidecars[long_name]) == 51
    assert sorted(rows) == sorted([*sidecars, "IMG_0009.jpg.supplemental-metadata.json", "p.jpeg"])
    orphan = rows["IMG_0009.jpg.supplemental-metadata.json"]
    assert orphan["reason"] == reasons.ORPHAN_SIDECAR
    assert "no image named IMG_0009.jpg or IMG_0009.jpg.<image extension> sits" in orphan["detail"]
    assert out.texts_by_name() == {
        "IMG_0001.jpg": "Press 0, station B",
        long_name: "Press 1, station B",
        "IMG_0003.png": "Press 2, station B",
        "p.jpeg": "beside a one-file input",
    }


def test_an_image_with_two_extensions_takes_the_sidecar_named_after_its_stem(tmp_path, run):
    """``banner.jpg.webp`` (a converted download) and its ``banner.jpg.txt``: the caption was an orphan, the image
    rejected as having no text."""
    folder = tmp_path / "converted"
    folder.mkdir()
    make_photo(200, 160, seed=153).save(folder / "banner.jpg.webp")
    (folder / "banner.jpg.txt").write_text("Autumn banner, converted to WebP")
    make_photo(200, 160, seed=154).save(folder / "poster.png.jpg")
    (folder / "poster.png.json").write_text(json.dumps({"title": "Poster for the spring fair"}))
    one = tmp_path / "one"
    one.mkdir()
    make_photo(200, 160, seed=155).save(one / "flyer.gif.png")
    (one / "flyer.gif.txt").write_text("found by name beside a one-file input")

    out = run([folder, one / "flyer.gif.png"], quality={"enabled": False})

    assert {name: row["status"] for name, row in out.ledger_by_name().items()} == {
        "banner.jpg.webp": "kept",
        "poster.png.jpg": "kept",
        "flyer.gif.png": "kept",
    }
    assert out.texts_by_name() == {
        "banner.jpg.webp": "Autumn banner, converted to WebP",
        "poster.png.jpg": "Poster for the spring fair",
        "flyer.gif.png": "found by name beside a one-file input",
    }


def test_ignored_names_leave_a_nas_share_s_thumbnails_and_hidden_files_out_of_the_inputs(tmp_path, run):
    """A Synology share holds five thumbnails of every photo under @eaDir: each was an input of its own."""
    share = tmp_path / "share"
    thumbs = share / "@eaDir" / "a.jpg"
    for folder in (thumbs, share / "sub", share / ".trash", share / "#recycle"):
        folder.mkdir(parents=True)
    for path, seed in ((share / "a.jpg", 160), (share / "sub" / "b.jpg", 161), (share / ".trash" / "c.jpg", 162)):
        make_photo(200, 160, seed=seed).save(path)
        write_sidecar(path, title=f"photo {path.stem}")
    make_photo(120, 96, seed=160).save(thumbs / "SYNOPHOTO_THUMB_M.jpg")
    make_photo(200, 160, seed=163).save(share / "#recycle" / "d.jpg")
    (share / "THUMBS.DB").write_bytes(b"\xd0\xcf\x11\xe0" + bytes(300))
    ignore = ["@eaDir", "#recycle", ".*", "thumbs.db"]

    out = run([share, {"path": str(share / "**.jpg")}], ingest={"ignore": ignore}, quality={"enabled": False})

    assert sorted(out.ledger_by_name()) == ["a.jpg", "b.jpg"]
    assert out.summary.counts["items"] == 2
    everything = run([share], output=tmp_path / "all", quality={"enabled": False})
    assert len(everything.ledger) == 6  # without ignore, each is an input with a row


def test_a_json_file_of_rows_is_a_manifest_not_an_orphan_caption(tmp_path, run):
    """``--input products.json`` (an array of rows, as most exporters write) was one orphan_sidecar row."""
    for seed in (170, 171, 172):
        make_photo(200, 160, seed=seed).save(tmp_path / f"p{seed}.jpg")
    (tmp_path / "array.json").write_text(json.dumps([{"path": "p170.jpg", "title": "from an array"}, "stray"]))
    (tmp_path / "export.json").write_text(
        json.dumps({"count": 1, "products": [{"path": "p171.jpg", "title": "from an export"}]})
    )
    (tmp_path / "lines.json").write_text('{"path": "p172.jpg", "title": "JSON Lines"}\n{"path": "p170.jpg"}\n')
    (tmp_path / "two.json").write_text(json.dumps({"photos": [{"path": "p170.jpg"}], "videos": []}))

    names = ("array.json", "export.json", "lines.json", "two.json")
    out = run([tmp_path / name for name in names], quality={"enabled": False}, text={"required": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == [
        "array.json#1",
        "array.json#2",
        "export.json#1",
        "lines.json#1",
        "lines.json#2",
        "two.json#1",
    ]
    assert rows["array.json#2"]["reason"] == rows["two.json#1"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert "item 2 of the array is not a JSON object" in rows["array.json#2"]["detail"]
    assert "an object with keys photos, videos" in rows["two.json#1"]["detail"]
    assert rows["lines.json#2"]["reason"] == reasons.EXACT_DUPLICATE  # p170.jpg again
    assert out.texts_by_name() == {
        "array.json#1": "from an array",
        "export.json#1": "from an export",
        "lines.json#1": "JSON Lines",
    }


def test_a_folders_metadata_file_gives_its_images_text_and_every_row_ends_in_the_ledger(tmp_path, run, photo):
    # Hugging Face's ImageFolder layout: metadata.jsonl names each image by file_name, relative to its own folder.
    folder = tmp_path / "dataset"
    (folder / "train" / "scratches").mkdir(parents=True)
    for seed, name in enumerate(["a.jpg", "train/b.png", "train/scratches/c.jpg", "train/d.jpg", "e.jpg"]):
        photo(240, 180, seed=seed).save(folder / name)
    write_sidecar(folder / "train" / "d.jpg", caption="the sidecar's caption")
    top = [
        {"note": "exported 2026-11-30"},  # no image: the whole file was refused, judged by this first row
        {"file_name": "a.jpg", "caption": "a press brake, front view", "domain": "factory"},
        {"file_name": "./train/b.png", "caption": "a bracket on white"},
        {"file_name": "train/scratches/c.jpg", "caption": "the top file's caption for c"},
        {"file_name": "train/d.jpg", "caption": "the row's caption", "station": "line 4"},
        {"file_name": "train/missing.jpg", "caption": "no such file"},
        {"file_name": "a.jpg", "caption": "a second row for a"},
        {"file_name": "", "caption": "no file name"},
    ]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in top), encoding="utf-8")
    (folder / "train" / "scratches" / "metadata.csv").write_text(
        "file_name,caption\n../scratches/c.jpg,a scratch on steel\n", encoding="utf-8"
    )
    out = run([folder], quality={"enabled": False})

    rows = {row["source"][len(str(folder)) + 1 :]: row for row in out.ledger}
    assert sorted(rows) == sorted(
        ["a.jpg", "e.jpg", "train/b.png", "train/d.jpg", "train/scratches/c.jpg"]
        + [f"metadata.jsonl#{n}" for n in (1, 4, 6, 7, 8)]
    ), "each image once; the metadata files are no items, only their rows that name no image of their own"
    assert rows["a.jpg"]["domain"] == "factory" and rows["e.jpg"]["reason"] == "no_text"
    assert "metadata.jsonl#1 has no 'file_name' or 'path' key (it has note)" in rows["metadata.jsonl#1"]["detail"]
    assert (rows["metadata.jsonl#6"]["reason"], rows["metadata.jsonl#8"]["reason"]) == (
        "missing_file",
        "malformed_manifest_row",
    )
    assert "train/missing.jpg" in rows["metadata.jsonl#6"]["detail"]
    assert rows["metadata.jsonl#7"]["reason"] == "malformed_manifest_row"
    assert "metadata.jsonl#2 already does" in rows["metadata.jsonl#7"]["detail"]
    assert "metadata.csv#1 already does" in rows["metadata.jsonl#4"]["detail"], "the nearer file's row wins"
    assert out.texts_by_name() == {
        "a.jpg": "a press brake, front view",
        "b.png": "a bracket on white",
        "c.jpg": "a scratch on steel",
        "d.jpg": "the sidecar's caption",
    }
    record = json.loads(out.samples_by_name()["d.jpg"]["json"])
    assert record["metadata"]["station"] == "line 4", "the row's other keys stay where the sidecar gives none"


def test_a_metadata_file_without_a_file_name_column_is_one_named_row_and_its_folder_is_read(tmp_path, run, photo):
    folder = tmp_path / "shots"
    folder.mkdir()
    photo(240, 180, seed=1).save(folder / "mug.jpg")
    write_sidecar(folder / "mug.jpg", title="a red mug")
    (folder / "metadata.csv").write_text("sku,price\nMUG-1,4.50\nMUG-2,5.00\n", encoding="utf-8")
    out = run([folder], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == ["metadata.csv", "mug.jpg"]
    assert rows["mug.jpg"]["status"] == "kept"
    assert rows["metadata.csv"]["reason"] == "malformed_manifest_row"
    assert "'file_name'" in rows["metadata.csv"]["detail"] and "price, sku" in rows["metadata.csv"]["detail"]


def _csv_run(tmp_path, run, photo, names: list[str], body: str, as_input: bool):
    """A run over photos ``names`` described by a CSV ``body``: the folder's metadata.csv, or a manifest input."""
    folder = tmp_path / "shots"
    folder.mkdir()
    for seed, name in enumerate(names):
        photo(240, 180, seed=seed).save(folder / name)
    table = folder / ("list.csv" if as_input else "metadata.csv")
    table.write_text(body, encoding="utf-8")
    out = run([{"path": str(table), "kind": "manifest"} if as_input else folder], quality={"enabled": False})
    return out, table


@pytest.mark.parametrize("as_input", [False, True], ids=["folder metadata.csv", "manifest input"])
def test_a_csv_row_with_an_unquoted_delimiter_is_its_own_named_row_and_the_others_are_read(
    tmp_path, run, photo, as_input
):
    """A caption with an unquoted comma gave the row a field under the key None, and the whole job crashed."""
    body = 'file_name,caption\nmug.jpg,a red mug\nflag.jpg,red, white and blue\nlamp.jpg,"a lamp, lit"\n'
    out, table = _csv_run(tmp_path, run, photo, ["mug.jpg", "flag.jpg", "lamp.jpg"], body, as_input)

    rows = out.ledger_by_name()
    bad = rows[f"{table.name}#2"]
    assert bad["reason"] == "malformed_manifest_row"
    assert "row 2 (line 3) has 3 fields, the header 2" in bad["detail"] and "double quotes" in bad["detail"]
    assert sorted(out.texts_by_name().values()) == ["a lamp, lit", "a red mug"]
    items = [f"{table.name}#{n}" for n in (1, 3)] if as_input else ["mug.jpg", "lamp.jpg", "flag.jpg"]
    assert set(rows) == {*items, f"{table.name}#2"}, "each image once and the bad row once"
    if not as_input:
        assert rows["flag.jpg"]["reason"] == "no_text", "the image is still read, without the row's caption"


@pytest.mark.parametrize("as_input", [False, True], ids=["folder metadata.csv", "manifest input"])
def test_a_csv_quote_that_never_closes_is_its_own_named_row_and_the_rows_after_it_are_read(
    tmp_path, run, photo, as_input
):
    """The quote swallowed every later line into one caption: their images had no ledger row at all."""
    names = ["mug.jpg", "pipe.jpg", "lamp.jpg", "vase.jpg"]
    body = 'file_name,caption\nmug.jpg,a red mug\npipe.jpg,"12 inch pipe\nlamp.jpg,a lamp\n\nvase.jpg,a vase\n'
    out, table = _csv_run(tmp_path, run, photo, names, body, as_input)

    rows = out.ledger_by_name()
    bad = rows[f"{table.name}#2"]
    assert bad["reason"] == "malformed_manifest_row"
    assert "row 2 (line 3) opens a double quote that never closes" in bad["detail"], bad["detail"]
    assert sorted(out.texts_by_name().values()) == ["a lamp", "a red mug", "a vase"]
    items = [f"{table.name}#{n}" for n in (1, 3, 4)] if as_input else names
    assert set(rows) == {*items, f"{table.name}#2"}, "each image once and the bad row once"


@pytest.mark.parametrize(
    ("path", "top", "spelled"),
    [
        ("./photos/train/../a.jpg", "./photos", "./photos/a.jpg"),
        ("photos//sub/./b.jpg", "photos/", "photos/sub/b.jpg"),
        ("/data/x/../photos/c.jpg", "/data/photos", "/data/photos/c.jpg"),
        ("gs://bucket/set/./d.jpg", "gs://bucket/set", "gs://bucket/set/d.jpg"),
        ("/elsewhere/e.jpg", "/data/photos", "/elsewhere/e.jpg"),
    ],
)
def test_a_metadata_rows_path_is_spelled_as_the_match_spells_the_folder(path, top, spelled):
    assert matched_spelling(path, top) == spelled


def test_a_manifest_whose_image_column_is_file_name_is_read_without_configuration(tmp_path, run, photo):
    # Hugging Face's name for the column; the manifest's own is path (path_column).
    photo(240, 180, seed=7).save(tmp_path / "weld.jpg")
    (tmp_path / "list.jsonl").write_text(
        json.dumps({"file_name": "weld.jpg", "caption": "a weld seam"}) + "\n" + json.dumps({"caption": "no file"}),
        encoding="utf-8",
    )
    out = run([tmp_path / "list.jsonl"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["list.jsonl#1"]["status"] == "kept" and out.texts_by_name() == {"list.jsonl#1": "a weld seam"}
    assert rows["list.jsonl#2"]["reason"] == "malformed_manifest_row"
    assert "has no 'path' or 'file_name' column" in rows["list.jsonl#2"]["detail"]


def test_class_folders_name_their_images_label_when_asked_and_a_sidecar_or_row_still_wins(tmp_path, run, photo):
    folder = tmp_path / "inspection"
    for seed, name in enumerate(["scratches/a.jpg", "dents/b.jpg", "dents/c.jpg", "dents/d.jpg"]):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        photo(240, 180, seed=20 + seed).save(folder / name)
    write_sidecar(folder / "dents" / "c.jpg", label="dent, 3 mm")
    (folder / "metadata.csv").write_text("file_name,label\ndents/d.jpg,a shallow dent\n", encoding="utf-8")

    out = run([folder], ingest={"folder_field": "label"}, quality={"enabled": False})
    assert out.texts_by_name() == {
        "a.jpg": "scratches",
        "b.jpg": "dents",
        "c.jpg": "dent, 3 mm",
        "d.jpg": "a shallow dent",
    }

    plain = run([folder], output=tmp_path / "plain", quality={"enabled": False})
    assert plain.texts_by_name() == {"c.jpg": "dent, 3 mm", "d.jpg": "a shallow dent"}, "off by default"


def test_a_coco_annotation_file_is_a_manifest_with_captions_labels_and_boxes_joined_in(tmp_path, run, photo):
    # As CVAT or Label Studio export a defect annotation job: images, categories, boxes; one file has captions too.
    (tmp_path / "images").mkdir()
    for seed, name in enumerate(["plate-1.jpg", "plate-2.jpg", "plate-3.jpg"]):
        photo(320, 240, seed=40 + seed).save(tmp_path / "images" / name)
    coco = {
        "info": {"description": "line 3 inspection"},
        "images": [
            {"id": 1, "file_name": "images/plate-1.jpg", "width": 320, "height": 240},
            {"id": 2, "file_name": "images/plate-2.jpg"},  # no size: its boxes' shares come from the decoded image
            {"id": 3, "file_name": "images/plate-3.jpg", "width": 320, "height": 240},
            {"id": 4, "width": 320},
        ],
        "categories": [{"id": 2, "name": "scratch"}, {"id": 1, "name": "dent"}],
        "annotations": [
            {"id": 12, "image_id": 1, "category_id": 2, "bbox": [40, 30, 60, 8]},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [200, 100, 20, 20]},
            {"id": 13, "image_id": 1, "category_id": 2, "bbox": [10, 10, 5, 50]},
            {"id": 21, "image_id": 2, "caption": "a clean plate under raking light"},
            {"id": 20, "image_id": 2, "caption": "a steel plate with no defect"},
            {"id": 22, "image_id": 2, "category_id": 1, "bbox": [32, 24, 64, 48]},
            {"id": 30, "image_id": 9, "category_id": 1, "bbox": [0, 0, 1, 1]},
            {"id": 14, "image_id": 1, "category_id": 7, "bbox": [0, 0, 1, 1]},  # no such category
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(coco), encoding="utf-8")
    out = run([tmp_path / "instances.json"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == [f"instances.json#{n}" for n in range(1, 7)]
    assert rows["instances.json#3"]["reason"] == reasons.NO_TEXT  # no annotation
    assert rows["instances.json#4"]["reason"] == rows["instances.json#5"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert "images[3] has no file_name" in rows["instances.json#4"]["detail"]
    assert "1 annotation(s) name image_id 9" in rows["instances.json#5"]["detail"]
    assert rows["instances.json#6"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert "1 annotation(s) name category_id 7, which no entry of categories has" in rows["instances.json#6"]["detail"]
    assert out.texts_by_name() == {
        "instances.json#1": "dent, scratch",  # category id order
        "instances.json#2": "a steel plate with no defect",  # the first caption by annotation id
    }
    records = {name: json.loads(sample["json"]) for name, sample in out.samples_by_name().items()}
    plate = records["instances.json#1"]["metadata"]
    assert plate["coco_id"] == 1 and plate["label"] == ["dent", "scratch"]
    assert plate["objects"] == [  # shares of the 320x240 image, as the entry gives its size
        {"label": "dent", "bbox": [0.625, 0.416667, 0.0625, 0.083333]},
        {"label": "scratch", "bbox": [0.125, 0.125, 0.1875, 0.033333]},
        {"label": "scratch", "bbox": [0.03125, 0.041667, 0.015625, 0.208333]},
    ]
    assert records["instances.json#2"]["metadata"]["objects"] == [{"label": "dent", "bbox": [0.1, 0.1, 0.2, 0.2]}]
    assert records["instances.json#2"]["metadata"]["captions"] == [
        "a steel plate with no defect",
        "a clean plate under raking light",
    ]


def test_a_label_studio_json_export_says_to_export_as_coco(tmp_path, run):
    """Label Studio's own JSON export (tasks whose data.image is a path on its server) got the advice to rename a
    path column it does not have."""
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/upload/1/abc-plate.jpg"},
            "annotations": [{"result": [{"type": "choices", "value": {"choices": ["scratch"]}}]}],
        }
    ]
    (tmp_path / "project.json").write_text(json.dumps(tasks), encoding="utf-8")

    out = run([tmp_path / "project.json"], quality={"enabled": False})

    (row,) = out.ledger
    assert row["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert "Label Studio's own JSON export" in row["detail"] and "export the project as COCO" in row["detail"]


def test_a_coco_file_inside_a_folder_input_labels_its_images_or_says_how_to_give_it(tmp_path, run, photo):
    """Roboflow's _annotations.coco.json beside its images, in a folder input, was an orphan sidecar whose advice was
    to name it like an image, and every image it labels was no_text; CVAT's annotations/ file got the same advice."""
    roboflow = tmp_path / "roboflow" / "train"
    roboflow.mkdir(parents=True)
    photo(160, 120, seed=60).save(roboflow / "coil_jpg.rf.1.jpg")
    coco = {
        "images": [{"id": 0, "file_name": "coil_jpg.rf.1.jpg", "width": 160, "height": 120}],
        "categories": [{"id": 1, "name": "edge crack"}],
        "annotations": [{"id": 0, "image_id": 0, "category_id": 1, "bbox": [16, 12, 32, 24]}],
    }
    (roboflow / "_annotations.coco.json").write_text(json.dumps(coco), encoding="utf-8")
    cvat = tmp_path / "cvat"
    (cvat / "annotations").mkdir(parents=True)
    (cvat / "images").mkdir()
    photo(160, 120, seed=61).save(cvat / "images" / "coil-7.jpg")
    coco["images"][0]["file_name"] = "coil-7.jpg"
    (cvat / "annotations" / "instances_default.json").write_text(json.dumps(coco), encoding="utf-8")

    out = run([tmp_path / "roboflow", cvat], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["coil_jpg.rf.1.jpg"]["status"] == "kept"
    metadata = json.loads(out.samples_by_name()["coil_jpg.rf.1.jpg"]["json"])["metadata"]
    assert metadata["label"] == ["edge crack"] and metadata["objects"][0]["bbox"] == [0.1, 0.1, 0.2, 0.2]
    assert "_annotations.coco.json" not in rows  # a folder's metadata file, no item
    orphan = rows["instances_default.json"]
    assert orphan["reason"] == reasons.ORPHAN_SIDECAR
    message = json.loads(orphan["detail"])["message"]
    assert "is a COCO annotation file" in message and "--input FILE" in message and "base = FOLDER" in message
    assert rows["coil-7.jpg"]["reason"] == reasons.NO_TEXT


def test_a_cvat_export_reads_its_images_through_the_inputs_base_given_in_a_config_file(tmp_path, run, photo):
    # CVAT's COCO export: annotations/instances_default.json names images by their names inside images/.
    export = tmp_path / "export"
    (export / "annotations").mkdir(parents=True)
    (export / "images").mkdir()
    photo(320, 240, seed=50).save(export / "images" / "coil-7.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "coil-7.jpg"}],
        "categories": [{"id": 1, "name": "edge crack"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [5, 5, 40, 10]}],
    }
    (export / "annotations" / "instances_default.json").write_text(json.dumps(coco), encoding="utf-8")
    config = tmp_path / "job.toml"
    config.write_text(
        '[[ingest.inputs]]\npath = "export/annotations/instances_default.json"\nbase = "export/images"\n',
        encoding="utf-8",
    )
    spec = load_config(config).ingest.inputs[0].model_dump()
    assert spec["base"] == str(export / "images"), "relative to the config file's folder"

    out = run([spec], quality={"enabled": False})
    assert out.texts_by_name() == {"instances_default.json#1": "edge crack"}

    without = run([{"path": spec["path"]}], output=tmp_path / "without", quality={"enabled": False})
    (row,) = without.ledger
    assert row["reason"] == reasons.MISSING_FILE and "the folder its input's base names" in row["detail"]


def test_a_yolo_dataset_gives_each_image_its_labels_and_boxes_and_every_label_file_ends_somewhere(
    tmp_path, run, photo
):
    # Roboflow's YOLO export: data.yaml at the top, train/images/NAME.jpg and train/labels/NAME.txt.
    root = tmp_path / "defects"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labels").mkdir()
    (root / "data.yaml").write_text("train: train/images\nnc: 3\nnames: ['scratch', 'dent', 'rust']\n")
    for seed, name in enumerate(["a.jpg", "b.png", "c.jpg", "d.jpg", "e.jpg", "f.jpg"]):
        photo(320, 240, seed=60 + seed).save(root / "train" / "images" / name)
    labels = {
        "a.txt": "1 0.5 0.5 0.2 0.1\n0 0.25 0.3 0.1 0.1\n",
        "b.txt": "2 0.1 0.1 0.3 0.1 0.3 0.4\n",  # a polygon
        "d.txt": "0 0.5 0.5 0.1 0.1\nscratch 0.5 0.5 0.1 0.1\n0 nan 0.5 0.1 0.1\n",
        "e.txt": "",  # no object
        "f.txt": "7 0.5 0.5 0.2 0.2\n",  # no such class: it was a no_text rejection naming nothing
        "gone.txt": "0 0.5 0.5 0.1 0.1\n",
    }
    for name, text in labels.items():
        (root / "train" / "labels" / name).write_text(text)
    write_sidecar(root / "train" / "images" / "b.png", title="a rusty hinge")

    out = run([root], quality={"enabled": False})

    rows = out.ledger_by_name()
    # data.yaml is the dataset's description, read for the class names: it was a not_an_image row
    assert sorted(rows) == ["a.jpg", "b.png", "c.jpg", "d.jpg", "e.jpg", "f.jpg", "gone.txt"]
    assert rows["f.jpg"]["reason"] == reasons.MALFORMED_SIDECAR and "class id 7" in rows["f.jpg"]["detail"]
    assert rows["c.jpg"]["reason"] == rows["e.jpg"]["reason"] == reasons.NO_TEXT
    assert rows["d.jpg"]["reason"] == reasons.MALFORMED_SIDECAR and "d.txt line 2" in rows["d.jpg"]["detail"]
    assert rows["gone.txt"]["reason"] == reasons.ORPHAN_SIDECAR and "annotation file" in rows["gone.txt"]["detail"]
    assert out.texts_by_name() == {"a.jpg": "scratch, dent", "b.png": "a rusty hinge"}
    metadata = {name: json.loads(sample["json"])["metadata"] for name, sample in out.samples_by_name().items()}
    assert metadata["a.jpg"]["objects"] == [
        {"label": "dent", "bbox": [0.4, 0.45, 0.2, 0.1]},
        {"label": "scratch", "bbox": [0.2, 0.25, 0.1, 0.1]},
    ]
    assert metadata["b.png"]["label"] == ["rust"]
    assert metadata["b.png"]["objects"] == [{"label": "rust", "bbox": [0.1, 0.1, 0.2, 0.3]}]


def test_a_yolo_classes_txt_names_the_classes_and_is_no_item(tmp_path, run, photo):
    """Darknet's layout: classes.txt beside images/ and labels/. It was an orphan_sidecar whose detail advised moving
    it out of the input, which would have lost the class names."""
    root = tmp_path / "darknet"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("hole\nburr\n")
    photo(320, 240, seed=66).save(root / "images" / "f0.jpg")
    (root / "labels" / "f0.txt").write_text("1 0.5 0.5 0.2 0.2\n")

    out = run([root], quality={"enabled": False})

    assert {name: row["status"] for name, row in out.ledger_by_name().items()} == {"f0.jpg": "kept"}
    assert out.texts_by_name() == {"f0.jpg": "burr"}


def test_an_annotation_s_labels_win_over_the_folder_name_ingest_folder_field_gives(tmp_path, run, photo):
    """``folder_field = "label"`` named a YOLO image ``images`` and a VOC image ``bolts``: the folders' names."""
    root, voc = tmp_path / "darknet", tmp_path / "bolts"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    voc.mkdir()
    (root / "classes.txt").write_text("hole\nburr\n")
    photo(320, 240, seed=66).save(root / "images" / "f0.jpg")
    (root / "labels" / "f0.txt").write_text("1 0.5 0.5 0.2 0.2\n")
    photo(320, 240, seed=70).save(voc / "b0.jpg")
    (voc / "b0.xml").write_text(_voc("b0.jpg", [("bolt", (32, 24, 64, 48))]))
    photo(320, 240, seed=71).save(voc / "b1.jpg")  # no annotation: the folder names it

    out = run([root, voc], quality={"enabled": False}, ingest={"folder_field": "label"})

    metadata = {name: json.loads(sample["json"])["metadata"] for name, sample in out.samples_by_name().items()}
    assert {name: values["label"] for name, values in metadata.items()} == {
        "f0.jpg": ["burr"],
        "b0.jpg": ["bolt"],
        "b1.jpg": "bolts",
    }
    assert out.texts_by_name() == {"f0.jpg": "burr", "b0.jpg": "bolt", "b1.jpg": "bolts"}


def _voc(name: str, objects: list[tuple[str, tuple]], size: tuple[int, int] | None = (320, 240)) -> str:
    shown = f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>" if size else ""
    boxes = "".join(
        f"<object><name>{label}</name><bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax>"
        f"<ymax>{box[3]}</ymax></bndbox></object>"
        for label, box in objects
    )
    return f"<annotation><folder>x</folder><filename>{name}</filename>{shown}{boxes}</annotation>"


def test_pascal_voc_annotations_beside_or_in_a_twin_folder_label_their_images(tmp_path, run, photo):
    # LabelImg writes NAME.xml beside NAME.jpg; NEU-DET keeps ANNOTATIONS/ beside IMAGES/ (any case).
    labelimg, neu = tmp_path / "labelimg", tmp_path / "neu"
    labelimg.mkdir()
    (neu / "IMAGES").mkdir(parents=True)
    (neu / "ANNOTATIONS").mkdir()
    photo(320, 240, seed=70).save(labelimg / "weld.jpg")
    (labelimg / "weld.xml").write_text(_voc("weld.jpg", [("porosity", (32, 24, 64, 48)), ("crack", (0, 0, 160, 24))]))
    photo(320, 240, seed=71).save(labelimg / "bolt.jpg")
    write_sidecar(labelimg / "bolt.jpg", title="a bolt")
    (labelimg / "bolt.xml").write_text("<config><camera>7</camera></config>")  # some other XML: an input of its own
    photo(320, 240, seed=72).save(labelimg / "nut.jpg")
    (labelimg / "nut.xml").write_text(_voc("nut.jpg", [("dent", ("a", 1, 2, 3))]))
    photo(200, 200, seed=73).save(neu / "IMAGES" / "crazing_1.jpg")
    (neu / "ANNOTATIONS" / "crazing_1.xml").write_text(_voc("crazing_1.jpg", [("crazing", (10, 20, 110, 220))], None))
    (neu / "ANNOTATIONS" / "crazing_2.xml").write_text(_voc("crazing_2.jpg", [("crazing", (1, 1, 5, 5))]))

    out = run([labelimg, neu], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == ["bolt.jpg", "bolt.xml", "crazing_1.jpg", "crazing_2.xml", "nut.jpg", "weld.jpg"]
    assert rows["bolt.xml"]["reason"] == reasons.NOT_AN_IMAGE
    assert rows["nut.jpg"]["reason"] == reasons.MALFORMED_SIDECAR and "object 1 ('dent')" in rows["nut.jpg"]["detail"]
    assert rows["crazing_2.xml"]["reason"] == reasons.ORPHAN_SIDECAR
    assert out.texts_by_name() == {"weld.jpg": "porosity, crack", "bolt.jpg": "a bolt", "crazing_1.jpg": "crazing"}
    metadata = {name: json.loads(sample["json"])["metadata"] for name, sample in out.samples_by_name().items()}
    assert metadata["weld.jpg"]["objects"] == [
        {"label": "porosity", "bbox": [0.1, 0.1, 0.1, 0.1]},
        {"label": "crack", "bbox": [0.0, 0.0, 0.5, 0.1]},
    ]
    # no size in the XML: the decoded image's (200x200) makes the shares, and the box, 20 to 220 high, ends at its edge
    assert metadata["crazing_1.jpg"]["objects"] == [{"label": "crazing", "bbox": [0.05, 0.1, 0.5, 0.9]}]


def test_coco_entries_sharing_an_id_or_without_one_are_named_instead_of_taking_other_images_annotations(
    tmp_path, run, photo
):
    """Two entries with id 1 (exports merged) both took image 1's box, and two entries without an id both took the
    caption whose image_id is null: each image silently labelled with another's annotations."""
    for seed in range(4):
        photo(128, 96, seed=100 + seed).save(tmp_path / f"img{seed}.jpg")
    coco = {
        "images": [
            {"id": 1, "file_name": "img0.jpg", "width": 128, "height": 96},
            {"id": 1, "file_name": "img1.jpg", "width": 128, "height": 96},
            {"file_name": "img2.jpg", "width": 128, "height": 96},
            {"id": None, "file_name": "img3.jpg", "width": 128, "height": 96},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20]},
            {"id": 2, "image_id": None, "caption": "caption with null image_id"},
            {"id": 3, "caption": "caption with no image_id"},
        ],
        "categories": [{"id": 1, "name": "scratch"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco), encoding="utf-8")

    out = run([tmp_path / "ann.json"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert sorted(rows) == [f"ann.json#{n}" for n in range(1, 6)]
    assert rows["ann.json#1"]["status"] == "kept"
    assert out.texts_by_name() == {"ann.json#1": "scratch"}
    for number in (2, 3, 4, 5):
        assert rows[f"ann.json#{number}"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    repeated, no_id, other_no_id, unattached = (rows[f"ann.json#{n}"]["detail"] for n in (2, 3, 4, 5))
    assert "ann.json" in repeated and "images[1] ('img1.jpg') has id 1, as images[0] ('img0.jpg') has" in repeated
    assert "give each entry its own id" in repeated
    assert "images[2] ('img2.jpg') has no id" in no_id and "give the entry the id" in no_id
    assert "images[3] ('img3.jpg') has no id" in other_no_id
    assert "2 annotation(s) have no image_id (missing or null): their text reaches no image" in unattached


def test_coco_boxes_that_are_not_4_numbers_are_named_and_number_category_names_are_text_in_label_and_objects(
    tmp_path, run, photo
):
    """A 3-number bbox vanished without a word, a bbox holding a string passed into ``objects`` as it was, and a
    category named 1024 (a part number) was ``"1024"`` in ``label`` but ``1024`` in ``objects``."""
    photo(320, 240, seed=110).save(tmp_path / "plate.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "plate.jpg", "width": 320, "height": 240}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [32, 24, 64, 48]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [32, 24, 64]},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [32, "24", 64, 48]},
        ],
        "categories": [{"id": 1, "name": 1024}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco), encoding="utf-8")

    out = run([tmp_path / "ann.json"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["ann.json#1"]["status"] == "kept"
    assert rows["ann.json#2"]["reason"] == reasons.MALFORMED_MANIFEST_ROW
    assert "2 annotation(s) (ids 2, 3) have a bbox that is not 4 numbers" in rows["ann.json#2"]["detail"]
    metadata = json.loads(out.samples_by_name()["ann.json#1"]["json"])["metadata"]
    assert metadata["label"] == ["1024"]
    assert metadata["objects"] == [{"label": "1024", "bbox": [0.1, 0.1, 0.2, 0.2]}]


def test_boxes_reaching_past_the_image_are_clipped_and_boxes_with_no_area_in_it_dropped_with_a_note(
    tmp_path, run, photo
):
    """YOLO, VOC and COCO boxes wider than the image, outside it or inverted were shipped as they were: shares above
    1 and negative widths in ``objects``, which hold boxes as shares of the image."""
    yolo, voc = tmp_path / "yolo", tmp_path / "voc"
    (yolo / "images").mkdir(parents=True)
    (yolo / "labels").mkdir()
    voc.mkdir()
    (yolo / "data.yaml").write_text("names: ['scratch']\n")
    photo(128, 96, seed=120).save(yolo / "images" / "a.jpg")
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 1.6 0.2\n0 0.5 0.5 0.2 0.2\n")  # 1.6 wide; inside
    photo(128, 96, seed=121).save(yolo / "images" / "b.jpg")
    (yolo / "labels" / "b.txt").write_text("0 -0.2 1.3 0.2 0.2\n")  # wholly outside
    photo(128, 96, seed=122).save(voc / "c.jpg")
    inverted, past = ("dent", (50, 40, 10, 10)), ("dent", (100, 80, 300, 200))
    (voc / "c.xml").write_text(_voc("c.jpg", [inverted, past], (128, 96)))
    photo(128, 96, seed=123).save(tmp_path / "d.jpg")
    coco = {
        "images": [{"id": 1, "file_name": "d.jpg", "width": 128, "height": 96}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [64, 0, 128, 48]}],
        "categories": [{"id": 1, "name": "rust"}],
    }
    (tmp_path / "ann.json").write_text(json.dumps(coco), encoding="utf-8")

    out = run([yolo, voc, tmp_path / "ann.json"], quality={"enabled": False})

    assert {name: row["status"] for name, row in out.ledger_by_name().items()} == {
        "a.jpg": "kept",
        "b.jpg": "kept",
        "c.jpg": "kept",
        "ann.json#1": "kept",
    }
    records = {name: json.loads(sample["json"]) for name, sample in out.samples_by_name().items()}
    assert records["a.jpg"]["metadata"]["objects"] == [
        {"label": "scratch", "bbox": [0.0, 0.4, 1.0, 0.2]},
        {"label": "scratch", "bbox": [0.4, 0.4, 0.2, 0.2]},
    ]
    assert f"objects of {yolo / 'labels' / 'a.txt'}: 1 box(es) clipped to the image" in records["a.jpg"]["notes"]
    assert records["b.jpg"]["metadata"]["objects"] == []
    assert (
        f"objects of {yolo / 'labels' / 'b.txt'}: 1 box(es) dropped (outside the image or inverted: no area in it)"
        in records["b.jpg"]["notes"]
    )
    clipped = [0.78125, 0.833333, 0.21875, 0.166667]  # 100, 80 to the 128x96 image's corner; the inverted one gone
    assert records["c.jpg"]["metadata"]["objects"] == [{"label": "dent", "bbox": clipped}]
    assert (
        f"objects of {voc / 'c.xml'}: 1 box(es) clipped to the image, 1 box(es) dropped (outside the image or "
        "inverted: no area in it)" in records["c.jpg"]["notes"]
    )
    assert records["ann.json#1"]["metadata"]["objects"] == [{"label": "rust", "bbox": [0.5, 0.0, 0.5, 0.5]}]
    assert f"objects of {tmp_path / 'ann.json'}: 1 box(es) clipped to the image" in records["ann.json#1"]["notes"]


def test_a_yolo_names_file_saved_with_a_byte_order_mark_names_its_first_class_without_it(tmp_path, run, photo):
    """Windows Notepad's classes.txt starts with U+FEFF, which became part of the first class's name."""
    root = tmp_path / "notepad"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "labels" / "classes.txt").write_text("crack\nhole\n", encoding="utf-8-sig")
    photo(320, 240, seed=130).save(root / "images" / "b.jpg")
    (root / "labels" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")

    out = run([root], quality={"enabled": False})

    assert out.texts_by_name() == {"b.jpg": "crack"}
    metadata = json.loads(out.samples_by_name()["b.jpg"]["json"])["metadata"]
    assert metadata["label"] == ["crack"] and metadata["objects"][0]["label"] == "crack"


def test_any_yaml_naming_classes_is_a_yolo_names_file_and_one_that_names_none_is_in_the_ledger(tmp_path, run, photo):
    """Ultralytics names its dataset files coco8.yaml, VOC.yaml...: such a file was ignored for class names, and its
    not_an_image row claimed its names labelled the images."""
    coco8, both, loose = tmp_path / "coco8", tmp_path / "both", tmp_path / "loose"
    for root in (coco8, both):
        (root / "images" / "val").mkdir(parents=True)
        (root / "labels" / "val").mkdir(parents=True)
        (root / "labels" / "val" / "c.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    photo(320, 240, seed=140).save(coco8 / "images" / "val" / "c.jpg")
    photo(320, 240, seed=141).save(both / "images" / "val" / "c.jpg")
    (coco8 / "coco8.yaml").write_text("path: .\nval: images/val\nnames:\n  0: person\n")
    (coco8 / "hyp.yaml").write_text("lr0: 0.01\nmomentum: 0.937\n")  # no names: no names file
    (both / "VOC.yaml").write_text("val: images/val\nnames: ['aeroplane']\n")  # data.yaml comes first
    (both / "data.yaml").write_text("val: images/val\nnames: ['bolt']\n")
    loose.mkdir()
    photo(320, 240, seed=142).save(loose / "e.jpg")
    write_sidecar(loose / "e.jpg", title="a loose bolt")
    (loose / "VOC.yaml").write_text("val: images/val\nnames: ['aeroplane']\n")  # no labels/ folder reads it

    out = run([coco8, both, loose], quality={"enabled": False})

    rows = {os.path.relpath(row["source"], tmp_path): row for row in out.ledger}
    assert sorted(rows) == [
        "both/images/val/c.jpg",
        "coco8/hyp.yaml",  # coco8.yaml names the classes: no item
        "coco8/images/val/c.jpg",
        "loose/VOC.yaml",
        "loose/e.jpg",
    ]
    assert rows["coco8/hyp.yaml"]["reason"] == rows["loose/VOC.yaml"]["reason"] == reasons.NOT_AN_IMAGE
    assert "class names label no image here" in rows["loose/VOC.yaml"]["detail"]
    assert "YOLO" not in rows["coco8/hyp.yaml"]["detail"]
    records = [json.loads(sample["json"]) for sample in out.samples()]
    labels = {os.path.relpath(record["source"], tmp_path): record["metadata"].get("label") for record in records}
    assert labels == {"coco8/images/val/c.jpg": ["person"], "both/images/val/c.jpg": ["bolt"], "loose/e.jpg": None}


def test_labelimg_yolo_label_files_beside_their_images_give_boxes_not_captions(tmp_path, run, photo):
    """LabelImg's YOLO mode saves d.txt beside d.jpg, and classes.txt: the box line became the caption
    "0 0.5 0.5 0.2 0.2", and classes.txt was an orphan_sidecar advising to name it like its image."""
    folder, captions = tmp_path / "labelimg", tmp_path / "captions"
    folder.mkdir()
    captions.mkdir()
    (folder / "classes.txt").write_text("rust\nhole\n")
    photo(320, 240, seed=150).save(folder / "d.jpg")
    (folder / "d.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.25 0.25 0.1 0.1\n")
    photo(320, 240, seed=151).save(folder / "e.jpg")
    (folder / "e.txt").write_text("a rusty plate\n")  # a caption beside them stays one
    photo(320, 240, seed=152).save(captions / "g.jpg")
    (captions / "g.txt").write_text("0 0.5 0.5 0.2 0.2\n")  # no names file beside it: a caption, as before

    out = run([folder, captions], quality={"enabled": False})

    assert {name: row["status"] for name, row in out.ledger_by_name().items()} == {
        "d.jpg": "kept",
        "e.jpg": "kept",
        "g.jpg": "kept",
    }
    assert out.texts_by_name() == {"d.jpg": "rust, hole", "e.jpg": "a rusty plate", "g.jpg": "0 0.5 0.5 0.2 0.2"}
    metadata = json.loads(out.samples_by_name()["d.jpg"]["json"])["metadata"]
    assert metadata["objects"] == [
        {"label": "rust", "bbox": [0.4, 0.4, 0.2, 0.2]},
        {"label": "hole", "bbox": [0.2, 0.2, 0.1, 0.1]},
    ]


def test_a_hugging_face_parquet_file_with_its_images_in_the_rows_is_read_row_by_row(tmp_path, run, photo):
    # datasets' Image feature: a struct of the image's bytes and its file name, beside the text columns.
    shots = [photo(240, 180, seed=80 + seed) for seed in range(4)]
    rows = [
        {"image": {"bytes": jpeg_bytes(shots[0]), "path": "0001.jpg"}, "caption": "a hinge", "label": 1},
        {"image": {"bytes": jpeg_bytes(shots[1]), "path": "0002.jpg"}, "caption": "a bracket", "label": 0},
        {"image": {"bytes": None, "path": "0003.jpg"}, "caption": "bytes not embedded", "label": 2},
        {"image": {"bytes": jpeg_bytes(shots[3]), "path": "0004.jpg"}, "caption": None, "label": None},
    ]
    table = pa.Table.from_pylist(rows)
    table = table.append_column("mask", pa.array([{"bytes": b"\x89PNG", "path": None}] * 4))
    pq.write_table(table, tmp_path / "train-00000-of-00001.parquet", row_group_size=3)
    out = run([tmp_path / "train-00000-of-00001.parquet"], quality={"enabled": False})

    rows_by = {row["source"].rsplit("#", 1)[1]: row for row in out.ledger}
    assert sorted(rows_by) == ["1", "2", "3", "4"]
    assert rows_by["3"]["reason"] == reasons.MISSING_FILE and "'0003.jpg'" in rows_by["3"]["detail"]
    assert rows_by["4"]["reason"] == reasons.NO_TEXT
    assert out.texts_by_name() == {
        "train-00000-of-00001.parquet#1": "a hinge",
        "train-00000-of-00001.parquet#2": "a bracket",
    }
    samples = out.samples_by_name()
    record = json.loads(samples["train-00000-of-00001.parquet#2"]["json"])
    assert record["metadata"] == {
        "caption": "a bracket",
        "label": 0,
        "file_name": "0002.jpg",
        "unused_images": ["mask"],
    }
    shipped = np.asarray(Image.open(io.BytesIO(samples["train-00000-of-00001.parquet#2"]["jpg"])), np.float32)
    assert np.abs(shipped - np.asarray(shots[1], np.float32)).mean() < 6.0


def test_a_manifest_of_web_addresses_reads_downloaded_copies_and_names_the_rest(tmp_path, run, photo):
    # A product feed lists image URLs; one image was downloaded beside the manifest under its address's last name.
    photo(320, 240, seed=90).save(tmp_path / "mug red.jpg")
    (tmp_path / "feed.csv").write_text(
        "path,title\n"
        "https://cdn.example.com/img/mug%20red.jpg?v=3,a red mug\n"
        "https://cdn.example.com/img/mug-blue.jpg,a blue mug\n",
        encoding="utf-8",
    )
    out = run([tmp_path / "feed.csv"], quality={"enabled": False})

    rows = out.ledger_by_name()
    assert rows["feed.csv#1"]["status"] == "kept"
    assert rows["feed.csv#2"]["reason"] == reasons.WEB_URL
    assert "'mug-blue.jpg'" in rows["feed.csv#2"]["detail"] and "img2dataset" in rows["feed.csv#2"]["detail"]
    record = json.loads(out.samples_by_name()["feed.csv#1"]["json"])
    assert record["metadata"]["url"] == "https://cdn.example.com/img/mug%20red.jpg?v=3"


def test_a_file_two_inputs_list_is_named_with_the_inputs_counted_from_one(caplog):
    first, second = (InputItem("/data/a.jpg", "/data/a.jpg", domain) for domain in ("folder", "pattern"))
    with caplog.at_level("WARNING", logger="transforms.ingest"):
        assert _first_listing("/data/a.jpg", [(2, second), (0, first)]) is first
    assert "/data/a.jpg is listed by inputs 1, 3 (counted from 1); input 1's settings apply" in caplog.text
