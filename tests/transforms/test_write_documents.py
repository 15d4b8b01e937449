"""The docs and edit views: written by a real run, read back with webdataset; the document JSON's versioning."""

import hashlib
import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
from PIL import Image

from pipeline.sample_checks import document_problems
from schemas import documents as schema
from schemas import reasons
from schemas.config.views import ViewConfig
from schemas.documents import (
    Document,
    DocumentImage,
    DocumentRecord,
    EditRecord,
    Segment,
    UnsupportedDocumentVersion,
    parse_document,
)
from schemas.records.samples import ImageInfo
from tests.documents_run import MMC4_DOC, documents_run
from tests.helpers import make_photo, run_job
from transforms.write_documents import place_in_split


@pytest.fixture(scope="module")
def out():
    return documents_run()


def _by_doc(out) -> dict[str, dict]:
    return {json.loads(sample["json"])["doc_id"]: sample for sample in out.samples("docs")}


def test_docs_view_holds_one_sample_per_kept_document_with_images_in_reading_order(out):
    docs = _by_doc(out)
    assert sorted(docs) == ["PAGE-1", "SKU-A", "SKU-C", "inspection:R-1", MMC4_DOC]
    sample = docs["SKU-A"]
    record = parse_document(json.loads(sample["json"]))
    assert record.sequence() == [
        ("text", "Red mug"),
        ("image", "0.jpg"),
        ("image", "1.jpg"),
        ("text", "Dishwasher safe."),
    ]
    assert sorted(k for k in sample if k.endswith(".jpg")) == ["0.jpg", "1.jpg"]
    positions = [meta.position for meta in record.image_metadata if meta]
    assert positions == [3.0, 4.0]
    for meta in filter(None, record.image_metadata):
        assert hashlib.sha256(sample[meta.member]).hexdigest() == meta.image_sha256
        assert Image.open(io.BytesIO(sample[meta.member])).size == (meta.image.width, meta.image.height)
        assert meta.caption and meta.source.startswith(str(out.path.parent))
    assert record.metadata == {"category": "mug", "sku": "SKU-A", "title": "Red mug"}


def test_inspection_record_interleaves_each_camera_view_with_its_note(out):
    record = parse_document(json.loads(_by_doc(out)["inspection:R-1"]["json"]))
    assert [kind for kind, _ in record.sequence()] == ["image", "text", "image", "text"]
    assert [t for t in record.texts if t] == ["Camera 1.", "Camera 2."]
    assert record.origin == "group:record" and record.domain == "factory"


def test_mmc4_import_keeps_its_order_and_similarity(out):
    record = parse_document(json.loads(_by_doc(out)[MMC4_DOC]["json"]))
    assert record.sequence() == [("text", "Open the hood."), ("image", "0.jpg"), ("text", "Check the oil level.")]
    meta = record.image_metadata[1]
    assert meta.metadata["placement_similarity"] == meta.placement_similarity == pytest.approx(0.31)
    assert meta.metadata["caption"] == "Check the oil level."


def test_docs_keys_splits_shards_and_sidecars_agree(out):
    folder = out.path / "shards" / "docs" / "train"
    tars = sorted(folder.glob("*.tar"))
    assert len(tars) >= 2  # views.loader_workers = 2
    index = json.loads((folder / "index.json").read_text())
    assert [entry["url"] for entry in index["shardlist"]] == [t.name for t in tars]
    assert sum(entry["nsamples"] for entry in index["shardlist"]) == 5
    rows = [row for path in sorted(folder.glob("*.parquet")) for row in pq.read_table(path).to_pylist()]
    docs = _by_doc(out)
    for row in rows:
        record = parse_document(json.loads(docs[row["doc_id"]]["json"]))
        assert (row["key"], row["split"], row["images"]) == (record.key, "train", sum(1 for i in record.images if i))
        assert docs[row["doc_id"]]["__key__"] == row["key"] == schema.document_key(row["doc_id"])
        stats = json.loads((folder / (Path(docs[row["doc_id"]]["__url__"]).stem + "_stats.json")).read_text())
        assert stats["view"] == "docs" and stats["split"] == "train"
    pair_keys = {json.loads(s["json"])["key"]: json.loads(s["json"])["split"] for s in out.samples()}
    for sample in docs.values():
        record = parse_document(json.loads(sample["json"]))
        assert {pair_keys[meta.key] for meta in record.image_metadata if meta} == {record.split}


def test_document_problems_accepts_written_samples_and_names_tampering(out):
    sample = _by_doc(out)["SKU-A"]
    members = {name: value for name, value in sample.items() if not name.startswith("__")}
    assert document_problems(members) == []
    assert document_problems({**members, "0.jpg": b"other bytes"}) == [
        "image member 0.jpg does not match its image_sha256"
    ]
    assert document_problems({k: v for k, v in members.items() if k != "1.jpg"}) == ["image member 1.jpg is missing"]
    assert "not name" in document_problems({**members, "2.jpg": b"x"})[0]
    assert "does not parse" in document_problems({**members, "json": b"{}"})[0]


def test_kept_document_ledger_rows_name_their_docs_shard(out):
    rows = {row["doc_id"]: row for row in pq.read_table(out.path / "ledger_documents").to_pylist()}
    for doc_id, sample in _by_doc(out).items():
        detail = json.loads(rows[doc_id]["detail"])
        assert detail["shard"] == f"docs/train/{Path(sample['__url__']).name}"


def test_edit_view_pairs_one_product_in_two_colours_within_a_split(out):
    samples = out.samples("edit")
    records = [EditRecord.model_validate_json(sample["json"]) for sample in samples]
    assert sorted(r.instruction for r in records) == [
        "Make the mug blue instead of red",
        "Make the mug red instead of blue",
    ]
    for sample, record in zip(samples, records, strict=True):
        assert sample["txt"].decode() == record.instruction
        assert hashlib.sha256(sample[record.source.member]).hexdigest() == record.source.image_sha256
        assert hashlib.sha256(sample[record.target.member]).hexdigest() == record.target.image_sha256
        assert {record.source.metadata["image_role"], record.target.metadata["image_role"]} == {"main"}
        assert record.split == "train"
    index = json.loads((out.path / "shards" / "edit" / "train" / "index.json").read_text())
    assert sum(entry["nsamples"] for entry in index["shardlist"]) == 2


def test_pairs_view_honours_loader_workers_too(out):
    assert len(out.shard_paths("pairs")) >= 2


def test_a_half_share_docs_view_still_has_a_shard_per_loader_worker_of_the_promised_size(tmp_path):
    """Shard slots were cut over the whole key space while a half share keeps the first half of it: the docs view had
    half the shards ``loader_workers`` asks for, each twice the size it should have."""
    rows = ["path,doc_id,position,text,title"]
    for n in range(48):
        make_photo(64, 48, seed=300 + n).save(tmp_path / f"p{n}.jpg")
        rows += [f",D{n},0,Inspection record {n} of line 3.,", f"p{n}.jpg,D{n},1,,Weld seam {n}"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    views = {"loader_workers": 4, "docs": {"share": 0.5, "samples_per_shard": 8}}

    out = run_job([tmp_path / "m.csv"], tmp_path / "out", views=views, quality={"enabled": False})

    per_shard = [sum(1 for _ in wds.WebDataset(str(path), shardshuffle=False)) for path in out.shard_paths("docs")]
    written = [row for row in pq.read_table(out.path / "ledger_documents").to_pylist() if row["status"] == "kept"]
    assert sum(per_shard) == len(written) and 14 <= len(written) <= 34  # about half of 48 (a hash's share)
    assert len(per_shard) == max(4, -(-len(written) // 8)), per_shard  # every slot holds documents
    assert max(per_shard) <= 2 * len(written) / len(per_shard), per_shard


def _two_image_document() -> Document:
    facts = ImageInfo(width=8, height=8, format="JPEG", mode="RGB", bytes=10)
    images = [
        DocumentImage(key, f"src-{key}", "d", 1.0, "c", "", "jpg", "0" * 64, facts, facts) for key in ("aa", "bb")
    ]
    segments = (Segment("text", text="t"), Segment("image", image=images[0]), Segment("image", image=images[1]))
    return Document("D", schema.document_key("D"), "d", "doc_id", segments)


def test_a_document_whose_images_went_to_two_splits_is_not_written():
    [row] = place_in_split(_two_image_document(), {"aa": "train", "bb": "test"}, ViewConfig())
    assert (row.tag, row.value.reason, row.value.stage) == (
        "rejected",
        reasons.DOCUMENT_SPLIT_CONFLICT,
        "write_documents",
    )
    assert json.loads(row.value.detail)["splits"] == ["test", "train"]


def test_a_document_takes_its_images_split_and_loses_images_dropped_after_assembly():
    [document] = place_in_split(_two_image_document(), {"bb": "test"}, ViewConfig())
    assert document.split == "test" and [i.key for i in document.images] == ["bb"]
    assert [(left.source, left.key) for left in document.left] == [("src-aa", "aa")]


def test_the_docs_share_keeps_a_stable_part_of_the_key_space():
    [row] = place_in_split(_two_image_document(), {"aa": "train", "bb": "train"}, ViewConfig(share=1e-9))
    assert row.value.reason == reasons.DOCUMENT_NOT_SAMPLED and row.value.split == "train"


def test_document_json_reader_upgrades_an_older_version(monkeypatch):
    current = {
        "key": "ab",
        "doc_id": "d",
        "domain": "x",
        "split": "train",
        "origin": "doc_id",
        "texts": ["hello", None],
        "images": [None, "0.jpg"],
        "image_metadata": [None, None],
    }
    with pytest.raises(ValueError, match="image_metadata"):
        parse_document(current)

    def upgrade_from_0(raw: dict) -> dict:
        # A hypothetical version 0 called the list "members" and had no origin.
        raw = dict(raw, schema_version=1, origin="unknown", images=raw.pop("members"))
        return raw

    old = {"schema_version": 0, "key": "ab", "doc_id": "d", "domain": "x", "split": "train", "texts": ["hi"]}
    old |= {"members": [None], "image_metadata": [None]}
    monkeypatch.setitem(schema.UPGRADES, 0, upgrade_from_0)
    record = parse_document(old)
    assert isinstance(record, DocumentRecord) and record.origin == "unknown" and record.sequence() == [("text", "hi")]
    with pytest.raises(UnsupportedDocumentVersion, match="99"):
        parse_document({**old, "schema_version": 99})
