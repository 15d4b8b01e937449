"""Importing MMC4 and OBELICS-style JSONL: parsing, image resolution and the ingest hand-over of text rows."""

import json
import os
from pathlib import Path

import pytest
from apache_beam import pvalue

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.documents import TextRow
from schemas.records.inputs import InputItem
from schemas.records.ledger import LedgerRow, RejectItem
from tests.documents_run import documents_run
from transforms.import_interleaved import ListInterleavedFn, parse_mmc4, parse_obelics, resolve_image, with_document

# CI checks out ../shared beside the repository: the real MMC4 README document lives there, never in the repo.
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
REAL_MMC4 = SHARED / "corpora" / "interleaved" / "mmc4_readme_example.jsonl"
OPT_IN = "ingest.follow_symlinks = true"


def _mmc4_line(names: list[str]) -> dict:
    """A document in MMC4's layout (the README example's keys) with local image names."""
    return {
        "image_info": [
            {"image_name": names[0], "matched_text_index": 2, "matched_sim": 0.277, "raw_url": "http://x/a.jpg"},
            {"image_name": names[1], "matched_text_index": 1, "matched_sim": 0.323, "raw_url": "http://x/b.jpg"},
        ],
        "similarity_matrix": [[0.24, 0.31, 0.277], [0.22, 0.323, 0.26]],
        "text_list": ["Lock the door with the tab.", "Press the master switch.", "All doors lock at once."],
        "url": "http://example.com/page.html",
        "could_have_url_duplicate": 0,
    }


def test_mmc4_puts_each_image_before_its_matched_sentence_and_keeps_the_similarity():
    parsed = parse_mmc4(_mmc4_line(["a.jpg", "b.jpg"]), "docs.jsonl#1")
    assert parsed.doc_id == "docs.jsonl#1"
    assert parsed.texts == [
        (1, "Lock the door with the tab."),
        (3, "Press the master switch."),
        (5, "All doors lock at once."),
    ]
    assert [(position, name) for position, name, _ in parsed.images] == [(4, "a.jpg"), (2, "b.jpg")]
    assert parsed.images[1][2]["placement_similarity"] == pytest.approx(0.323)
    assert parsed.metadata["url"] == "http://example.com/page.html"


def test_mmc4_rejects_a_matched_index_outside_the_text_list():
    line = _mmc4_line(["a.jpg", "b.jpg"])
    line["image_info"][0]["matched_text_index"] = 7
    with pytest.raises(ValueError, match="matched_text_index"):
        parse_mmc4(line, "x#1")


def test_obelics_reads_parallel_lists_with_nulls_and_json_text_metadata():
    line = {
        "texts": ["Title", None, "Body text.", None],
        "images": [None, "img/one.png", None, "https://cdn.example.com/p/two.jpg?x=1"],
        "metadata": json.dumps([None, {"alt": "first"}, None, {"alt": "second"}]),
        "general_metadata": json.dumps({"url": "https://example.com/doc"}),
    }
    parsed = parse_obelics(line, "o.jsonl#3")
    assert parsed.texts == [(0, "Title"), (2, "Body text.")]
    assert [(p, ref, meta["alt"]) for p, ref, meta in parsed.images] == [
        (1, "img/one.png", "first"),
        (3, "https://cdn.example.com/p/two.jpg?x=1", "second"),
    ]
    assert parsed.metadata == {"url": "https://example.com/doc"}


def test_obelics_rejects_a_position_holding_both_a_text_and_an_image():
    with pytest.raises(ValueError, match="exactly one"):
        parse_obelics({"texts": ["a"], "images": ["b.jpg"]}, "x#1")


def test_resolution_finds_local_files_by_name_path_or_url_segment(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "one.png").write_bytes(b"x")
    (tmp_path / "two.jpg").write_bytes(b"x")
    document = str(tmp_path / "docs.jsonl")
    assert resolve_image("img/one.png", document, []) == str(tmp_path / "img" / "one.png")
    assert resolve_image("https://cdn.example.com/p/two.jpg?x=1", document, []) == str(tmp_path / "two.jpg")
    assert resolve_image(f"file://{tmp_path}/two.jpg", document, []) == str(tmp_path / "two.jpg")
    assert resolve_image("one.png", document, [str(tmp_path / "img")]) == str(tmp_path / "img" / "one.png")


def test_resolution_rejects_missing_urls_and_escapes_with_reasons(tmp_path):
    document = str(tmp_path / "docs.jsonl")
    with pytest.raises(RejectItem) as missing:
        resolve_image("http://www.example.com/gone/index.90.jpg", document, [])
    assert missing.value.reason == reasons.UNRESOLVABLE_IMAGE
    assert missing.value.detail["tried"] == [str(tmp_path / "index.90.jpg")]
    with pytest.raises(RejectItem) as escape:
        resolve_image("../../etc/passwd", document, [])
    assert escape.value.reason == reasons.OUTSIDE_ROOT


@pytest.fixture
def linked(tmp_path):
    """A document folder ``docs/`` with links into and out of it, and a photo (with its folder) outside it."""
    docs, outside = tmp_path / "docs", tmp_path / "outside"
    docs.mkdir()
    outside.mkdir()
    (docs / "p0.jpg").write_bytes(b"inside")
    (outside / "secret.jpg").write_bytes(b"secret")
    (tmp_path / "secret.jpg").write_bytes(b"secret beside the folder")
    (docs / "link-in.jpg").symlink_to("p0.jpg")
    (docs / "link-out.jpg").symlink_to(outside / "secret.jpg")
    (docs / "linked").symlink_to(outside, target_is_directory=True)
    return tmp_path


@pytest.mark.parametrize(
    ("reference", "resolves_to"),
    [
        ("link-out.jpg", "outside/secret.jpg"),  # a file link leading out
        ("linked/secret.jpg", "outside/secret.jpg"),  # a folder link on the way
        ("https://cdn.example.com/p/link-out.jpg", "outside/secret.jpg"),  # a URL's last segment, then a link
        ("{root}/docs/../outside/secret.jpg", "outside/secret.jpg"),  # an absolute path with ..
        ("{root}/docs/../secret.jpg", "secret.jpg"),
        ("file://{root}/outside/secret.jpg", "outside/secret.jpg"),  # a file:// URL
        ("file://{root}/docs/%2e%2e/secret.jpg", "secret.jpg"),  # a file:// URL's percent-encoded ..
        ("https://cdn.example.com/p/%2e%2e%2fsecret.jpg", "secret.jpg"),  # an encoded ../ in the last segment
        ("../outside/secret.jpg", "outside/secret.jpg"),
    ],
)
def test_references_leading_out_of_the_root_by_name_or_link_are_rejected(linked, reference, resolves_to):
    with pytest.raises(RejectItem) as caught:
        resolve_image(reference.format(root=linked), str(linked / "docs" / "d.jsonl"), [])
    assert caught.value.reason == reasons.OUTSIDE_ROOT
    detail = caught.value.detail
    assert detail["resolved"] == os.path.realpath(linked / resolves_to)
    assert detail["reference"] == reference.format(root=linked) and detail["resolved"] in detail["message"]
    assert (OPT_IN in detail["message"]) == ("link" in reference)


def test_references_through_links_are_kept_when_they_stay_inside_or_links_are_followed(linked):
    document = str(linked / "docs" / "d.jsonl")
    assert resolve_image("link-in.jpg", document, []) == str(linked / "docs" / "link-in.jpg")
    assert resolve_image("link-out.jpg", document, [], follow_symlinks=True) == str(linked / "docs" / "link-out.jpg")
    followed = resolve_image("linked/secret.jpg", document, [], follow_symlinks=True)
    assert followed == str(linked / "docs" / "linked" / "secret.jpg")
    with pytest.raises(RejectItem) as caught:  # following links never lets a name itself leave
        resolve_image(f"{linked}/docs/../secret.jpg", document, [], follow_symlinks=True)
    assert caught.value.reason == reasons.OUTSIDE_ROOT


def test_a_percent_encoded_dot_dot_in_a_plain_reference_is_a_folder_name(linked):
    with pytest.raises(RejectItem) as caught:
        resolve_image("%2e%2e/secret.jpg", str(linked / "docs" / "d.jsonl"), [])
    assert caught.value.reason == reasons.UNRESOLVABLE_IMAGE
    assert caught.value.detail["tried"] == [str(linked / "docs" / "%2e%2e" / "secret.jpg")]


def _listed(linked, follow_symlinks: bool) -> tuple[dict, dict]:
    """The items and rejections ``ListInterleavedFn`` emits for one OBELICS document of four images."""
    document = linked / "docs" / "d.jsonl"
    images = ["p0.jpg", "link-in.jpg", "link-out.jpg", "linked/secret.jpg"]
    document.write_text(json.dumps({"texts": [None] * 4, "images": images}) + "\n")
    spec = InputSpec(path=str(document), kind="obelics")
    fn = ListInterleavedFn(IngestConfig(inputs=[spec], follow_symlinks=follow_symlinks))
    items, dropped = {}, {}
    for output in fn.process(spec):
        if isinstance(output, pvalue.TaggedOutput):
            dropped[output.value.source.rsplit(":", 1)[1]] = output.value
        elif isinstance(output, InputItem):
            items[output.source.rsplit(":", 1)[1]] = output
    return items, dropped


def test_the_importer_rejects_links_out_of_the_root_unless_they_are_followed(linked):
    items, dropped = _listed(linked, follow_symlinks=False)
    assert sorted(items) == ["image0000", "image0001"]
    assert {name: (row.stage, row.reason) for name, row in dropped.items()} == {
        "image0002": ("import_interleaved", reasons.OUTSIDE_ROOT),
        "image0003": ("import_interleaved", reasons.OUTSIDE_ROOT),
    }
    assert all(item.roots == (str(linked / "docs"),) for item in items.values())  # ingest checks again on read
    items, dropped = _listed(linked, follow_symlinks=True)
    assert sorted(items) == ["image0000", "image0001", "image0002", "image0003"] and dropped == {}


def test_a_sentence_with_half_an_emoji_is_imported_with_a_replacement_character(tmp_path):
    """JSON can escape one half of a surrogate pair alone; no UTF-8 writer takes it, so it becomes U+FFFD."""
    document = tmp_path / "d.jsonl"
    line = _mmc4_line(["a.jpg", "b.jpg"])
    line["text_list"][0] = "Lock the door \ud83d with the tab."  # a cut emoji, as some exporters write
    document.write_text(json.dumps(line) + "\n")  # json.dumps writes the lone half as the escape \ud83d
    assert "\\ud83d" in document.read_text()
    spec = InputSpec(path=str(document), kind="mmc4")
    rows = [out for out in ListInterleavedFn(IngestConfig(inputs=[spec])).process(spec) if isinstance(out, TextRow)]
    texts = [row.metadata["text"] for row in rows]
    assert "Lock the door \ufffd with the tab." in texts
    assert all(text.encode("utf-8") for text in texts)


def test_two_files_of_one_name_in_different_folders_keep_their_documents_apart(tmp_path):
    """``x/docs.jsonl`` and ``y/docs.jsonl`` both gave their first line the id ``docs.jsonl#1`` (and now would both
    give ``docs.jsonl#`` and its url): one document with both files' sentences and images."""
    specs = []
    for folder, kind in (("x", "mmc4"), ("y", "mmc4"), ("z", "obelics")):
        (tmp_path / folder).mkdir()
        document = tmp_path / folder / "docs.jsonl"
        line = (
            _mmc4_line(["a.jpg", "b.jpg"]) if kind == "mmc4" else {"texts": ["Intro", None], "images": [None, "a.jpg"]}
        )
        document.write_text(json.dumps(line) + "\n")
        specs.append(InputSpec(path=str(document), kind=kind))
    (tmp_path / "solo.jsonl").write_text(json.dumps(_mmc4_line(["a.jpg", "b.jpg"])) + "\n")
    specs.append(InputSpec(path=str(tmp_path / "solo.jsonl"), kind="mmc4"))
    fn = ListInterleavedFn(IngestConfig(inputs=specs))
    ids = [{row.metadata["doc_id"] for row in fn.process(spec) if isinstance(row, TextRow)} for spec in specs]
    page = "http://example.com/page.html"
    assert ids[:2] + ids[3:] == [{f"x/docs.jsonl#{page}"}, {f"y/docs.jsonl#{page}"}, {f"solo.jsonl#{page}"}]
    assert len(ids[2]) == 1 and ids[2].pop().startswith("z/docs.jsonl#sha256:")  # no url: its images name it


def _document_sources(path, kind: str, lines: list[dict]) -> dict[str, tuple[str, str]]:
    """``{source: (doc_id, text or image reference)}`` of every text row and image (rejected: no file) that
    ``lines`` give in a file ``path``."""
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    spec = InputSpec(path=str(path), kind=kind)
    found = {}
    for output in ListInterleavedFn(IngestConfig(inputs=[spec])).process(spec):
        value = output.value if isinstance(output, pvalue.TaggedOutput) else output
        if isinstance(value, TextRow):
            found[value.source] = (value.metadata["doc_id"], value.metadata["text"])
        else:
            found[value.source] = (value.document_id, json.loads(value.detail)["reference"])
    return found


def test_a_document_inserted_above_others_changes_none_of_their_ids_or_sources(tmp_path):
    """Ids were line numbers (``docs.jsonl#2``): one document put first renamed every later one, an incremental run
    took them for changed content, and documents moved between splits."""
    mmc4 = [{**_mmc4_line([f"a{n}.jpg", f"b{n}.jpg"]), "url": f"http://x/{n}"} for n in range(3)]
    obelics = [
        {"texts": ["Intro", None], "images": [None, f"http://o/{n}.jpg"], "general_metadata": f'{{"url": "u{n}"}}'}
        for n in range(2)
    ] + [{"texts": ["No url here", None], "images": [None, "http://o/plain.jpg"]}]
    inserted = {
        "mmc4": {**_mmc4_line(["new.jpg", "new2.jpg"]), "url": "http://x/new"},
        "obelics": {"texts": ["No url either", None], "images": [None, "new.jpg"]},
    }
    before, after = {}, {}
    for kind, lines in (("mmc4", mmc4), ("obelics", obelics)):
        before[kind] = _document_sources(tmp_path / f"{kind}.jsonl", kind, lines)
        after[kind] = _document_sources(tmp_path / f"{kind}.jsonl", kind, [inserted[kind], *lines])
        assert before[kind].items() < after[kind].items(), kind
    assert {f"mmc4.jsonl#http://x/{n}" for n in range(3)} < {doc_id for doc_id, _ in after["mmc4"].values()}
    assert f"{tmp_path}/mmc4.jsonl#http://x/1:image0001" in after["mmc4"]
    ids = {doc_id for doc_id, _ in before["obelics"].values()}
    assert {"obelics.jsonl#u0", "obelics.jsonl#u1"} < ids
    assert len(ids) == 3 and any(doc_id.startswith("obelics.jsonl#sha256:") for doc_id in ids)


def test_lines_with_one_url_stay_apart_and_the_first_keeps_the_url_alone(tmp_path):
    first = {**_mmc4_line(["a.jpg", "b.jpg"]), "could_have_url_duplicate": 1}
    other = {**first, "text_list": ["Another page", "at the", "same address."]}
    listed = _document_sources(tmp_path / "docs.jsonl", "mmc4", [first, other, other])
    ids = sorted({doc_id for doc_id, _ in listed.values()})
    page = "docs.jsonl#http://example.com/page.html"
    assert len(ids) == 3 and ids[0] == page and all(doc_id.startswith(f"{page}~") for doc_id in ids[1:])
    assert len(listed) == 3 * 5  # 3 sentences and 2 images a line, none sharing a source


@pytest.fixture(scope="module")
def out():
    return documents_run()


def test_imports_and_text_rows_reach_the_ledger_only_as_image_items_or_rejections(out):
    by_name = {row["source"].split("/data/", 1)[1]: row for row in out.ledger}
    document = "mmc4.jsonl#http://example.com/car.html"
    assert (by_name[f"{document}:image0000"]["status"], by_name[f"{document}:image0000"]["domain"]) == ("kept", "web")
    missing = by_name[f"{document}:image0001"]
    assert (missing["stage"], missing["reason"]) == ("import_interleaved", reasons.UNRESOLVABLE_IMAGE)
    assert json.loads(missing["detail"])["doc_id"] == document
    assert (by_name["mmc4.jsonl#2"]["stage"], by_name["mmc4.jsonl#2"]["reason"]) == (
        "import_interleaved",
        reasons.MALFORMED_DOCUMENT,
    )
    assert json.loads(by_name["mmc4.jsonl#2"]["detail"])["message"] == (  # was json's "Expecting property name..."
        "line 2 is not JSON (Expecting property name enclosed in double quotes at column 2): each line of a mmc4 "
        "file is one JSON object; fix the line or remove it"
    )
    # A row with no image and no document stays a malformed row; rows with a document are text rows, no items.
    manifest_rows = sorted(int(name.split("#")[1]) for name in by_name if name.startswith("products.csv#"))
    assert manifest_rows == [1, 3, 4, 6, 8, 12, 13, 14]
    assert by_name["products.csv#14"]["reason"] == reasons.MALFORMED_MANIFEST_ROW


def test_the_real_mmc4_readme_document_parses_and_its_url_images_are_unresolvable():
    assert REAL_MMC4.is_file(), f"{REAL_MMC4} is missing: check out the shared corpora beside the repository"
    line = json.loads(REAL_MMC4.read_text(encoding="utf-8").splitlines()[0])
    parsed = parse_mmc4(line, "mmc4_readme_example.jsonl#1")
    assert len(parsed.texts) == 3
    assert sorted(position for position, _, _ in parsed.images) == [2, 4]
    for _, name, _ in parsed.images:
        with pytest.raises(RejectItem) as caught:
            resolve_image(name, str(REAL_MMC4), [])
        assert caught.value.reason == reasons.UNRESOLVABLE_IMAGE


def test_a_rejected_image_s_ledger_row_names_its_document_as_a_typed_field():
    row = LedgerRow("f.jsonl#1:image0000", None, "rejected", "import_interleaved", reasons.UNRESOLVABLE_IMAGE)
    tagged = with_document(pvalue.TaggedOutput("rejected", row), "f.jsonl#1")
    assert tagged.value.document_id == "f.jsonl#1" and tagged.value.detail == row.detail
    item = InputItem("f.jsonl#1:image0001", "/in/a.jpg", "d")
    assert with_document(item, "f.jsonl#1") is item
