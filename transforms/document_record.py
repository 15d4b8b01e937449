"""What one document writes into a ``docs`` shard: its ``KEY.json``, its images in reading order, its sidecar row.

Pure functions of a ``Document`` and the ``Sample``s of its images (which carry the bytes), used by
``transforms/write_documents.py``: ``document_record`` (the ``DocumentRecord`` JSON, OBELICS-style parallel
``texts``/``images``/``image_metadata`` lists, and the image members ``0.jpg``, ``1.jpg``...), ``sidecar_row`` (one
Parquet row per document, ``SIDECAR_SCHEMA``) and ``document_item`` (both, as the ``ShardItem`` the shard writer
takes).
"""

from typing import Any

import pyarrow as pa

from schemas.documents import Document, DocumentRecord, ImageMetadata, Segment
from schemas.records.samples import Sample
from schemas.records.values import content_metadata
from transforms.image_store import image_sha256, read_image
from transforms.shard_writer import ShardItem, canonical_json


def document_record(document: Document, images: dict[str, Sample]) -> tuple[DocumentRecord, list[tuple[str, bytes]]]:
    """The ``KEY.json`` of a document and its image members (suffix, bytes) in reading order."""
    texts: list[str | None] = []
    members: list[str | None] = []
    metadata: list[ImageMetadata | None] = []
    files = []
    for segment in document.segments:
        if segment.image is None:
            texts.append(segment.text)
            members.append(None)
            metadata.append(None)
            continue
        sample = images[segment.image.key]
        member = f"{len(files)}.{sample.image_ext}"
        files.append((member, read_image(sample)))
        texts.append(None)
        members.append(member)
        metadata.append(_image_metadata(segment, member, sample))
    record = DocumentRecord(
        key=document.key,
        doc_id=document.doc_id,
        domain=document.domain,
        split=document.split,
        origin=document.origin,
        texts=texts,
        images=members,
        image_metadata=metadata,
        metadata=dict(document.metadata),
        placement=dict(document.placement),
    )
    return record, files


def _image_metadata(segment: Segment, member: str, sample: Sample) -> ImageMetadata:
    image = segment.image
    return ImageMetadata(
        member=member,
        key=image.key,
        source=image.source,
        caption=sample.text,
        caption_source=sample.text_source,
        sha256=image.sha256,
        image_sha256=image_sha256(sample),
        image=image.image,
        original=image.original,
        scores=dict(sample.scores),
        position=image.position,
        placement_similarity=segment.similarity,
        metadata=content_metadata(image.metadata),
    )


SIDECAR_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("doc_id", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
        ("origin", pa.string()),
        ("images", pa.int32()),
        ("texts", pa.int32()),
        ("text_chars", pa.int64()),
        ("image_bytes", pa.int64()),
        ("image_keys", pa.list_(pa.string())),
        ("image_sources", pa.list_(pa.string())),
        ("images_left", pa.int32()),
        ("metadata", pa.string()),
        ("placement", pa.string()),
    ]
)


def sidecar_row(document: Document) -> dict[str, Any]:
    images = document.images
    return {
        "key": document.key,
        "doc_id": document.doc_id,
        "domain": document.domain,
        "split": document.split,
        "origin": document.origin,
        "images": len(images),
        "texts": sum(1 for segment in document.segments if segment.kind == "text"),
        "text_chars": document.text_chars,
        "image_bytes": document.image_bytes,
        "image_keys": [image.key for image in images],
        "image_sources": [image.source for image in images],
        "images_left": len(document.left),
        "metadata": canonical_json(dict(document.metadata)).decode(),
        "placement": canonical_json(dict(document.placement)).decode(),
    }


def document_item(document: Document, images: dict[str, Sample]) -> ShardItem:
    """What a document writes: ``KEY.json``, then ``KEY.0.jpg``, ``KEY.1.jpg``... in reading order; its sidecar row."""
    record, files = document_record(document, images)
    members = [(f"{document.key}.json", canonical_json(record.model_dump(mode="json")))]
    members += [(f"{document.key}.{member}", data) for member, data in files]
    return ShardItem(document.key, document.domain, document.image_bytes, members, sidecar_row(document))
