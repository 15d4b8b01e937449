"""What one document writes into a docs shard: its JSON in reading order, its image members and its sidecar row."""

import hashlib
import json

from schemas.documents import Document, DocumentImage, LeftImage, Segment, document_key, parse_document
from schemas.records.samples import ImageInfo, Sample
from transforms.document_record import SIDECAR_SCHEMA, document_item, document_record, sidecar_row

FACTS = ImageInfo(width=8, height=6, format="JPEG", mode="RGB", bytes=3)


def _image(key: str, position: float) -> DocumentImage:
    return DocumentImage(key, f"src-{key}", "marketing", position, "", "", "jpg", key * 32, FACTS, FACTS)


def _sample(key: str) -> Sample:
    data = f"jpg-{key}".encode()
    return Sample(
        key, f"src-{key}", "", "marketing", {}, data, "jpg", key * 32, key * 32, FACTS, FACTS, text=f"caption {key}"
    )


def _document() -> Document:
    segments = (
        Segment("text", text="Red mug"),
        Segment("image", image=_image("bb", 2.0), similarity=0.3),
        Segment("image", image=_image("aa", 3.0)),
        Segment("text", text="Dishwasher safe."),
    )
    left = (LeftImage("src-cc", "cc", "exact_dedup", "exact_duplicate"),)
    return Document("SKU-A", document_key("SKU-A"), "marketing", "doc_id", segments, {"sku": "SKU-A"}, left=left)


def test_the_record_interleaves_texts_and_image_members_in_reading_order():
    record, files = document_record(_document(), {"aa": _sample("aa"), "bb": _sample("bb")})
    assert record.sequence() == [
        ("text", "Red mug"),
        ("image", "0.jpg"),
        ("image", "1.jpg"),
        ("text", "Dishwasher safe."),
    ]
    assert files == [("0.jpg", b"jpg-bb"), ("1.jpg", b"jpg-aa")]
    first = record.image_metadata[1]
    assert (first.key, first.caption, first.position, first.placement_similarity) == ("bb", "caption bb", 2.0, 0.3)
    assert first.image_sha256 == hashlib.sha256(b"jpg-bb").hexdigest()
    assert parse_document(record.model_dump(mode="json")) == record


def test_the_shard_item_holds_the_json_then_the_images_and_the_sidecar_row():
    document = _document()
    item = document_item(document, {"aa": _sample("aa"), "bb": _sample("bb")})
    names = [name for name, _ in item.members]
    assert names == [f"{document.key}.json", f"{document.key}.0.jpg", f"{document.key}.1.jpg"]
    assert json.loads(item.members[0][1])["doc_id"] == "SKU-A"
    assert (item.key, item.domain, item.image_bytes) == (document.key, "marketing", 6)
    assert item.row == sidecar_row(document)


def test_the_sidecar_row_counts_images_texts_and_images_that_left():
    row = sidecar_row(_document())
    assert set(row) == set(SIDECAR_SCHEMA.names)
    assert (row["images"], row["texts"], row["images_left"], row["text_chars"]) == (2, 2, 1, 23)
    assert row["image_keys"] == ["bb", "aa"] and row["metadata"] == '{"sku":"SKU-A"}'
