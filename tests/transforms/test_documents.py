"""Documents: assembly in order, images leaving after curation, placement, dropped documents, and a real run."""

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from schemas import reasons
from schemas.config.documents import DocumentsConfig
from schemas.documents import DOCUMENT_ANNOTATION, Document, DocumentImage, DocumentLedgerRow, document_key
from schemas.records.samples import ImageInfo
from tests.documents_run import MMC4_DOC, documents_run, source_name
from transforms.document_order import TextPiece
from transforms.documents import assemble

FACTS = ImageInfo(width=64, height=48, format="JPEG", mode="RGB", bytes=1000)
CONFIG = DocumentsConfig()


def _image(source: str, position: float | None, embedding: list[float] | None = None, **metadata) -> DocumentImage:
    vector = None
    if embedding is not None:
        array = np.asarray(embedding, np.float32)
        vector = (array / np.linalg.norm(array)).astype(np.float16).tobytes()
    return DocumentImage(
        key=source.replace("/", "")[-8:].rjust(8, "0"),
        source=source,
        domain="marketing",
        position=position,
        caption=f"caption of {source}",
        caption_source="metadata.title",
        image_ext="jpg",
        sha256="0" * 64,
        image=FACTS,
        original=FACTS,
        metadata=metadata,
        embedding=vector,
        embedding_model="clip_fake" if vector else "",
    )


def _text(source: str, position: float | None, text: str, **metadata) -> TextPiece:
    return TextPiece(source, "marketing", position, text, metadata)


def _sequence(document: Document) -> list[str]:
    return [s.text if s.kind == "text" else f"<{s.image.source}>" for s in document.segments]


class FakeTextEncoder:
    model_id = "clip_fake"

    def __init__(self, table: dict[str, list[float]]):
        self._table = table

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        rows = np.asarray([self._table[t] for t in texts], np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_segments_assemble_in_position_order_whatever_the_row_order():
    images = [_image("m#5", 4), _image("m#2", 2)]
    texts = [_text("m#9", 5, "Care: wash cold."), _text("m#1", 1, "Classic shirt"), _text("m#7", 3, "Back view.")]
    refs = [("m#5", "marketing"), ("m#2", "marketing")]
    document = assemble("SHIRT", ["doc_id"], reversed(images), reversed(texts), refs, CONFIG)
    assert _sequence(document) == ["Classic shirt", "<m#2>", "Back view.", "<m#5>", "Care: wash cold."]
    assert document.key == document_key("SHIRT")
    assert document.placement == {"method": "position"}
    assert document.left == ()


def test_a_text_row_and_an_image_at_one_position_put_the_text_first():
    document = assemble("D", ["doc_id"], [_image("m#1", 1)], [_text("m#2", 1, "Title")], [("m#1", "m")], CONFIG)
    assert _sequence(document) == ["Title", "<m#1>"]


def test_images_removed_by_curation_leave_the_document_and_the_text_stays():
    refs = [("m#1", "marketing"), ("m#2", "marketing"), ("m#3", "marketing")]
    document = assemble("D", ["doc_id"], [_image("m#2", 2)], [_text("m#0", 0, "Title")], refs, CONFIG)
    assert _sequence(document) == ["Title", "<m#2>"]
    assert [(image.source, image.reason) for image in document.left] == [("m#1", ""), ("m#3", "")]


def test_a_document_whose_images_all_left_is_dropped_with_a_reason():
    row = assemble("D", [], [], [_text("m#0", 0, "Title")], [("m#1", "marketing")], CONFIG)
    assert isinstance(row, DocumentLedgerRow)
    assert (row.status, row.reason, row.domain) == ("rejected", reasons.DOCUMENT_TOO_FEW_IMAGES, "marketing")
    assert [(image.source, image.key, image.reason) for image in row.left] == [("m#1", None, "")]
    assert json.loads(row.detail)["images_left"][0]["source"] == "m#1"


def test_a_document_with_too_little_text_is_dropped_with_a_reason():
    config = DocumentsConfig(min_text_chars=20)
    row = assemble("D", ["doc_id"], [_image("m#1", 1)], [_text("m#0", 0, "Short")], [("m#1", "m")], config)
    assert (row.reason, json.loads(row.detail)["text_chars"]) == (reasons.DOCUMENT_TOO_LITTLE_TEXT, 5)


def test_min_images_is_configurable():
    config = DocumentsConfig(min_images=2)
    row = assemble("D", ["doc_id"], [_image("m#1", 1)], [_text("m#0", 0, "Title")], [("m#1", "m")], config)
    assert row.reason == reasons.DOCUMENT_TOO_FEW_IMAGES


def test_image_text_fields_follow_their_image_and_repeats_are_skipped():
    config = DocumentsConfig(image_text_fields=["inspection_note"])
    images = [_image("f/1", 1, inspection_note="Patch A, no defect."), _image("f/2", 2, inspection_note="Patch B.")]
    images.append(_image("f/3", 3, inspection_note="Patch B."))
    document = assemble("INSP", ["doc_id"], images, [], [], config)
    assert _sequence(document) == ["<f/1>", "Patch A, no defect.", "<f/2>", "Patch B.", "<f/3>"]


def test_unpositioned_images_are_placed_before_their_best_sentence_by_linear_assignment():
    texts = [_text("t#1", 1, "A red mug on a table. A blue mug in a kitchen. A green plant.")]
    # Image 0 is close to both "red" and "blue", image 1 only to "red": the optimum gives image 0 the blue one.
    images = [_image("i/0", None, [0.7, 0.7, 0.0]), _image("i/1", None, [1.0, 0.05, 0.0])]
    encoder = FakeTextEncoder(
        {"A red mug on a table.": [1, 0, 0], "A blue mug in a kitchen.": [0, 1, 0], "A green plant.": [0, 0, 1]}
    )
    config = DocumentsConfig(placement={"min_similarity": 0.5})
    document = assemble("MUG", ["group:sku"], images, texts, [], config, lambda: encoder)
    assert _sequence(document) == [
        "<i/1>",
        "A red mug on a table.",
        "<i/0>",
        "A blue mug in a kitchen.",
        "A green plant.",
    ]
    similarities = {s.image.source: s.similarity for s in document.segments if s.image}
    assert similarities["i/1"] == pytest.approx(0.9988, abs=1e-3)
    assert similarities["i/0"] == pytest.approx(0.7071, abs=1e-3)
    assert document.placement["method"] == "position+clip_linear_assignment"
    assert document.placement["model"] == "clip_fake"


def test_placement_below_min_similarity_removes_the_image_and_records_why():
    texts = [_text("t#1", 1, "A red mug.")]
    images = [_image("i/0", None, [0.0, 0.0, 1.0]), _image("i/1", 5, [1.0, 0.0, 0.0])]
    encoder = FakeTextEncoder({"A red mug.": [1, 0, 0]})
    document = assemble("MUG", ["doc_id"], images, texts, [], DocumentsConfig(), lambda: encoder)
    assert _sequence(document) == ["A red mug.", "<i/1>"]
    assert [(i.source, i.stage, i.reason) for i in document.left] == [
        ("i/0", "placement", reasons.IMAGE_BELOW_MIN_SIMILARITY)
    ]


def test_without_embeddings_unpositioned_images_follow_in_source_order_and_placement_says_why():
    images = [_image("i/2", None), _image("i/1", None)]
    document = assemble("D", ["doc_id"], images, [_text("t", 0, "Title.")], [], CONFIG, lambda: None)
    assert _sequence(document) == ["Title.", "<i/1>", "<i/2>"]
    assert "no embedding" in document.placement["unpositioned"]


@pytest.fixture(scope="module")
def out():
    return documents_run()


def _doc_ledger(out) -> dict[str, dict]:
    return {row["doc_id"]: row for row in pq.read_table(out.path / "ledger_documents").to_pylist()}


def test_run_keeps_one_item_ledger_row_per_image_and_none_for_text_rows(out):
    sources = [Path(row["source"]).name for row in out.ledger]
    # 7 manifest images, a row with neither image nor document, 2 MMC4 images, a bad MMC4 line, 2 tiles; the 8 text
    # rows and 2 MMC4 sentences are not items.
    assert len(sources) == len(set(sources)) == 13
    assert [row["source"] for row in out.ledger if row["reason"] == reasons.MALFORMED_MANIFEST_ROW] == [
        str(out.path.parent / "data" / "products.csv#14")
    ]


def test_run_places_unpositioned_images_with_the_real_model_and_records_similarity(out):
    row = _doc_ledger(out)["PAGE-1"]
    assert row["texts"] == 3  # the text row, split into its three sentences
    record = next(json.loads(s["json"]) for s in out.samples("docs") if json.loads(s["json"])["doc_id"] == "PAGE-1")
    assert record["placement"]["method"] == "position+clip_linear_assignment"
    assert "smoke" in record["placement"]["model"]
    placed = [meta for meta in record["image_metadata"] if meta is not None]
    assert all(isinstance(meta["placement_similarity"], float) for meta in placed)


def test_run_stamps_document_ids_on_samples_for_the_split(out):
    stamped = {}
    for sample in out.samples():
        record = json.loads(sample["json"])
        stamped[source_name(record["source"])] = record["annotations"].get(DOCUMENT_ANNOTATION)
    assert stamped["products.csv#1"] == "SKU-A"
    assert stamped["tile10.jpg"] == stamped["tile11.jpg"] == "inspection:R-1"
    assert stamped[f"{MMC4_DOC}:image0000"] == MMC4_DOC
