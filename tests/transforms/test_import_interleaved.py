"""Importing MMC4 and OBELICS-style JSONL: parsing, image resolution and the ingest hand-over of text rows."""

import json
from pathlib import Path

import pytest

from schemas import reasons
from schemas.records import RejectItem
from tests.documents_run import documents_run
from transforms.import_interleaved import parse_mmc4, parse_obelics, resolve_image

REAL_MMC4 = Path("/work/shared/corpora/interleaved/mmc4_readme_example.jsonl")


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


@pytest.fixture(scope="module")
def out():
    return documents_run()


def test_imports_and_text_rows_reach_the_ledger_only_as_image_items_or_rejections(out):
    by_name = {Path(row["source"]).name: row for row in out.ledger}
    assert (by_name["mmc4.jsonl#1:image0000"]["status"], by_name["mmc4.jsonl#1:image0000"]["domain"]) == (
        "kept",
        "web",
    )
    missing = by_name["mmc4.jsonl#1:image0001"]
    assert (missing["stage"], missing["reason"]) == ("import_interleaved", reasons.UNRESOLVABLE_IMAGE)
    assert json.loads(missing["detail"])["doc_id"] == "mmc4.jsonl#1"
    assert (by_name["mmc4.jsonl#2"]["stage"], by_name["mmc4.jsonl#2"]["reason"]) == (
        "import_interleaved",
        reasons.MALFORMED_DOCUMENT,
    )
    # A row with no image and no document stays a malformed row; rows with a document are text rows, no items.
    manifest_rows = sorted(int(name.split("#")[1]) for name in by_name if name.startswith("products.csv#"))
    assert manifest_rows == [1, 3, 4, 6, 8, 12, 13, 14]
    assert by_name["products.csv#14"]["reason"] == reasons.MALFORMED_MANIFEST_ROW


@pytest.mark.skipif(not REAL_MMC4.exists(), reason="the shared MMC4 example is not on this machine")
def test_the_real_mmc4_readme_document_parses_and_its_url_images_are_unresolvable():
    line = json.loads(REAL_MMC4.read_text(encoding="utf-8").splitlines()[0])
    parsed = parse_mmc4(line, "mmc4_readme_example.jsonl#1")
    assert len(parsed.texts) == 3
    assert sorted(position for position, _, _ in parsed.images) == [2, 4]
    for _, name, _ in parsed.images:
        with pytest.raises(RejectItem) as caught:
            resolve_image(name, str(REAL_MMC4), [])
        assert caught.value.reason == reasons.UNRESOLVABLE_IMAGE
