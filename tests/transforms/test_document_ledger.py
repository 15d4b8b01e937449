"""The document ledger: images that left take their stage and reason from the item ledger; detail is for people."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from schemas import reasons
from schemas.documents import DocumentLedgerRow, LeftImage
from tests.documents_run import MMC4_DOC, documents_run, source_name
from tests.helpers import make_photo, run_job
from transforms.document_ledger import LEDGER_SCHEMA, carried_row, explained


def test_images_that_left_take_their_stage_and_reason_from_the_item_ledger_by_source():
    left = (LeftImage("a.jpg", None, "", ""), LeftImage("b.jpg", "bb", "placement", "image_unplaced"))
    found = {"a.jpg": ("aa", "clip_filter", reasons.LOW_CLIP_SCORE), "b.jpg": ("bb", "other", "other")}
    assert list(explained(left, found)) == [
        LeftImage("a.jpg", "aa", "clip_filter", reasons.LOW_CLIP_SCORE),
        LeftImage("b.jpg", "bb", "placement", "image_unplaced"),
    ]


def test_the_ledger_detail_is_rendered_for_people_from_the_typed_row():
    kept = DocumentLedgerRow(
        "D",
        "k",
        "kept",
        "write_documents",
        "",
        {"view": "docs", "shard": "docs/train/shard-000000.tar"},
        left=(LeftImage("a.jpg", "aa", "clip_filter", "low_clip_score"),),
    )
    assert json.loads(kept.detail) == {
        "images_left": [{"key": "aa", "reason": "low_clip_score", "source": "a.jpg", "stage": "clip_filter"}],
        "shard": "docs/train/shard-000000.tar",
        "view": "docs",
    }
    failed = DocumentLedgerRow("D", "k", "failed", "documents", "exception", {"error": "x"}, left=None)
    assert failed.detail == '{"error": "x"}'


@pytest.fixture(scope="module")
def out():
    return documents_run()


def _doc_ledger(out) -> dict[str, dict]:
    return {row["doc_id"]: row for row in pq.read_table(out.path / "ledger_documents").to_pylist()}


def _left(row: dict) -> dict[str, tuple]:
    images = json.loads(row["detail"])["images_left"]
    return {source_name(image["source"]): (image["stage"], image["reason"]) for image in images}


def test_run_writes_one_document_ledger_row_per_document_with_reasons(out):
    ledger = _doc_ledger(out)
    assert sorted(ledger) == ["PAGE-1", "SKU-A", "SKU-B", "SKU-C", "TEXT-ONLY", "inspection:R-1", MMC4_DOC]
    kept = {doc_id: row["images"] for doc_id, row in ledger.items() if row["status"] == "kept"}
    assert kept == {"PAGE-1": 2, "SKU-A": 2, "SKU-C": 1, "inspection:R-1": 2, MMC4_DOC: 1}
    for doc_id in ("SKU-B", "TEXT-ONLY"):
        assert (ledger[doc_id]["status"], ledger[doc_id]["reason"]) == ("rejected", reasons.DOCUMENT_TOO_FEW_IMAGES)
    counts = json.loads((out.path / "_run" / "document_counts.json").read_text())
    assert counts["documents"] == 7
    assert counts["by_reason"]["rejected/documents/document_too_few_images"] == 2


def test_run_says_at_which_stage_and_why_each_image_left_its_document(out):
    ledger = _doc_ledger(out)
    assert _left(ledger["SKU-A"]) == {"products.csv#4": ("exact_dedup", reasons.EXACT_DUPLICATE)}
    assert _left(ledger["SKU-B"]) == {"products.csv#6": ("normalise", reasons.NOT_AN_IMAGE)}
    assert _left(ledger[MMC4_DOC]) == {f"{MMC4_DOC}:image0001": ("import_interleaved", reasons.UNRESOLVABLE_IMAGE)}
    assert _left(ledger["PAGE-1"]) == {}


def test_images_rejected_when_read_are_listed_among_those_that_left_their_document(tmp_path):
    """A manifest row whose file is missing, or whose path leads out of the manifest's folder, left its document
    without a trace: the document ledger showed a document of two images as one that never had the second."""
    (tmp_path / "in").mkdir()
    make_photo(seed=40).save(tmp_path / "in" / "mug.jpg")
    make_photo(seed=41).save(tmp_path / "elsewhere.jpg")
    rows = [
        "path,doc_id,position,text,title,record",
        ",D,0,A white mug.,,",
        "mug.jpg,D,1,,White mug,",
        "gone.jpg,D,2,,White mug from above,",
        ",E,0,A blue bowl.,,",
        "gone2.jpg,E,1,,Blue bowl,",
        "../elsewhere.jpg,,,,Weld seam,R-7",
        ",,,A note that names no document.,,",
    ]
    (tmp_path / "in" / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    documents = {"groups": [{"fields": ["record"], "prefix": "inspection:"}]}

    out = run_job([tmp_path / "in" / "m.csv"], tmp_path / "out", documents=documents, quality={"enabled": False})

    ledger = _doc_ledger(out)
    assert _left(ledger["D"]) == {"m.csv#3": ("ingest", reasons.MISSING_FILE)}
    assert ledger["D"]["status"] == "kept" and ledger["D"]["images"] == 1
    assert _left(ledger["E"]) == {"m.csv#5": ("ingest", reasons.MISSING_FILE)}
    assert (ledger["E"]["status"], ledger["E"]["reason"]) == ("rejected", reasons.DOCUMENT_TOO_FEW_IMAGES)
    assert _left(ledger["inspection:R-7"]) == {"m.csv#6": ("ingest", reasons.OUTSIDE_ROOT)}
    items = {Path(row["source"]).name: row["reason"] for row in out.ledger}
    assert items == {"m.csv#2": "", "m.csv#3": reasons.MISSING_FILE, "m.csv#5": reasons.MISSING_FILE} | {
        "m.csv#6": reasons.OUTSIDE_ROOT,
        "m.csv#7": reasons.MALFORMED_MANIFEST_ROW,
    }
    (note,) = [row for row in out.ledger if row["source"].endswith("#7")]
    assert "except a document's text row, which names its document in 'doc_id'" in note["detail"]


@pytest.mark.parametrize("left", [(LeftImage("/in/a.jpg", "aa", "quality", reasons.BLURRY),), (), None])
def test_a_row_an_earlier_run_wrote_is_carried_as_it_was(left):
    row = DocumentLedgerRow(
        "SKU-1", "k1", reasons.KEPT, "write_documents", "", {"shard": "docs/all/s.tar"}, "d", "all", 2, 1, left
    )
    written = {name: getattr(row, name) for name in LEDGER_SCHEMA.names}
    assert carried_row(written) == row
