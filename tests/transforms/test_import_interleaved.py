"""Importing MMC4 and OBELICS-style JSONL: parsing, image resolution and the ingest hand-over of text rows."""

import json
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from schemas import reasons
from schemas.config import IngestConfig, InputSpec
from schemas.records import RejectItem
from transforms.import_interleaved import parse_mmc4, parse_obelics, resolve_image
from transforms.ingest import ReadInputs

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


def _name(source: str) -> str:
    return Path(source).name.split(":")[0]


def _check_ingest(specs: list[InputSpec], expected: dict[str, list]) -> None:
    """Run ingest alone and compare its items, text rows and rejections, as (name, ...) tuples, to ``expected``.

    Sources are ``FILE#LINE:imageNNNN`` or ``MANIFEST#ROW``; ``_name`` keeps ``FILE#LINE`` or ``MANIFEST#ROW``.
    """
    plain = {
        "items": lambda i: (_name(i.source), i.metadata["doc_id"], i.metadata["position"]),
        "texts": lambda t: (_name(t.source), t.metadata["position"], t.metadata["text"]),
        "rejected": lambda r: (_name(r.source), r.stage, r.reason),
    }
    with BeamTestPipeline() as pipeline:
        out = pipeline | ReadInputs(IngestConfig(inputs=specs), text_rows_field="doc_id")
        for name, fn in plain.items():
            values = getattr(out, name) | f"Plain{name}" >> beam.Map(fn)
            assert_that(values, equal_to(expected[name]), label=f"Check{name}")


def test_imports_hand_text_rows_over_and_reject_unresolvable_images(tmp_path, photo):
    photo(seed=1).save(tmp_path / "a.jpg")
    with open(tmp_path / "mmc4.jsonl", "w", encoding="utf-8") as handle:
        handle.write(json.dumps(_mmc4_line(["a.jpg", "missing.jpg"])) + "\n")
        handle.write("{not json\n")
    obelics = {"texts": ["Hello.", None], "images": [None, "a.jpg"], "doc_id": "page-7"}
    (tmp_path / "obelics.jsonl").write_text(json.dumps(obelics) + "\n", encoding="utf-8")
    specs = [
        InputSpec(path=str(tmp_path / "mmc4.jsonl"), kind="mmc4", domain="web"),
        InputSpec(path=str(tmp_path / "obelics.jsonl"), kind="obelics", domain="web"),
    ]
    expected = {
        "items": [("mmc4.jsonl#1", "mmc4.jsonl#1", 4), ("obelics.jsonl#1", "page-7", 1)],
        "texts": [
            ("mmc4.jsonl#1", 1, "Lock the door with the tab."),
            ("mmc4.jsonl#1", 3, "Press the master switch."),
            ("mmc4.jsonl#1", 5, "All doors lock at once."),
            ("obelics.jsonl#1", 0, "Hello."),
        ],
        "rejected": [
            ("mmc4.jsonl#1", "import_interleaved", reasons.UNRESOLVABLE_IMAGE),
            ("mmc4.jsonl#2", "import_interleaved", reasons.MALFORMED_DOCUMENT),
        ],
    }
    _check_ingest(specs, expected)


def test_manifest_rows_without_a_path_are_text_rows_not_ledger_items(tmp_path, photo):
    photo(seed=2).save(tmp_path / "p.jpg")
    (tmp_path / "m.csv").write_text(
        "path,doc_id,position,text,title\np.jpg,SKU-1,2,,Mug\n,SKU-1,1,A mug for coffee.,\n,,,orphan text,\n",
        encoding="utf-8",
    )
    expected = {
        "items": [("m.csv#1", "SKU-1", "2")],
        "texts": [("m.csv#2", "1", "A mug for coffee.")],
        "rejected": [("m.csv#3", "ingest", reasons.MALFORMED_MANIFEST_ROW)],
    }
    _check_ingest([InputSpec(path=str(tmp_path / "m.csv"))], expected)


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
