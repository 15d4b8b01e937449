"""Write the ``docs`` view: one WebDataset sample per interleaved document, and the document ledger.

Inputs: ``Document`` records from ``transforms/documents.py`` (no bytes) and the split samples (``Sample``, with
``document_id``), which carry the image bytes. Outputs (``DocumentWriteOutputs``): ``ledger``,
``DocumentLedgerRow``s (kept: the shard written; rejected: ``document_split_conflict`` when a document's images
went to two splits, ``document_not_sampled`` outside ``views.docs.share``), and ``shards`` (``ShardStats``).

Layout: ``OUT/shards/docs/<split>/shard-NNNNNN.tar`` with ``KEY.json`` (``DocumentRecord``: OBELICS-style
``texts``/``images`` parallel lists, schema version, per-image metadata) and ``KEY.0.jpg``, ``KEY.1.jpg``... in
reading order; a Parquet sidecar (one row per document), ``_stats.json`` and ``index.json``, written by
``transforms/shard_writer.py`` as for every view. ``KEY`` is ``document_key(doc_id)``.
Shard membership is a pure function of the document key (shard count from the split's document count and bytes,
at least ``views.loader_workers * views.nodes``); image bytes cross one shuffle, straight into their shard.

``WriteDocumentLedger`` writes ``OUT/ledger_documents/part-NNNNN.parquet`` (one row per document, like the item
ledger) after filling in the stage and reason of every image that left a document from the item ledger, and
``OUT/_run/document_counts.json``. Config sections: ``views`` (``docs``), ``shards``.
Metrics: ``write_documents/documents``, ``write_documents/shards``.
"""

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from schemas import reasons
from schemas.config import ShardsConfig, ViewConfig
from schemas.documents import (
    Document,
    DocumentLedgerRow,
    DocumentRecord,
    ImageMetadata,
    LeftImage,
    Segment,
    document_key,
)
from schemas.records import LedgerRow, Sample
from transforms._common import REJECTED
from transforms._io import join, write_atomic
from transforms._parts import WriteParts
from transforms.documents import rejected_document
from transforms.image_store import image_sha256, read_image
from transforms.shard_writer import (
    ShardItem,
    canonical_json,
    sampled,
    shard_dir,
    shard_name,
    slot_of,
    split_totals,
    write_indexes,
    write_shard,
)

STAGE = "write_documents"
VIEW = "docs"
LEDGER_DIR = "ledger_documents"


class DocumentWriteOutputs(NamedTuple):
    ledger: beam.PCollection
    shards: beam.PCollection


class WriteDocuments(beam.PTransform):
    """Write kept documents with their images into deterministic ``docs`` shards, one split per folder."""

    def __init__(
        self, view: ViewConfig, shards: ShardsConfig, output: str, documents: beam.PCollection, generation: int = 0
    ):
        """Args:
        view: ``views.docs``.
        shards: The view's shard settings (``ViewsConfig.shards(config.shards, views.docs)``).
        output: The run's output (staging) folder.
        documents: ``Document`` records; the transform is applied to the split samples.
        generation: The run generation, carried in shard names as ``write_shards`` does.
        """
        super().__init__()
        self._view = view
        self._shards = shards
        self._output = output
        self._documents = documents
        self._generation = generation

    def expand(self, samples: beam.PCollection) -> DocumentWriteOutputs:
        placed = (
            {
                "documents": self._documents | "DocById" >> beam.Map(lambda d: (d.doc_id, d)),
                "splits": samples | "SplitByDoc" >> beam.FlatMap(_split_of_image),
            }
            | "JoinSplits" >> beam.CoGroupByKey()
            | "Place" >> beam.ParDo(_PlaceFn(self._view)).with_outputs(REJECTED, main="documents")
        )
        documents = placed.documents
        if not self._view.enabled:
            kept = documents | "KeptUnwritten" >> beam.Map(_kept_row, shard="")
            ledger = (kept, placed[REJECTED]) | "AllRows" >> beam.Flatten()
            return DocumentWriteOutputs(ledger=ledger, shards=samples.pipeline | "NoShards" >> beam.Create([]))
        totals = split_totals(documents, lambda document: (document.split, document.image_bytes))
        config = self._shards
        written = (
            {
                "documents": documents | "AssignDocs" >> beam.FlatMap(_slot_document, totals=totals, config=config),
                "images": samples | "AssignImages" >> beam.FlatMap(_slot_image, totals=totals, config=config),
            }
            | "GroupShard" >> beam.CoGroupByKey()
            | "Write" >> beam.ParDo(_WriteDocsFn(self._output, self._generation)).with_outputs(REJECTED, main="shards")
        )
        _ = write_indexes(written.shards, self._output, VIEW)
        ledger = (written[REJECTED], placed[REJECTED]) | "AllRows" >> beam.Flatten()
        return DocumentWriteOutputs(ledger=ledger, shards=written.shards)


def _split_of_image(sample: Sample) -> Iterator[tuple[str, tuple[str, str]]]:
    if sample.document_id:
        yield sample.document_id, (sample.key, sample.split)


class _PlaceFn(beam.DoFn):
    """Give each document the split of its images; a document whose images straddle splits is not written."""

    def __init__(self, view: ViewConfig):
        self._view = view

    def process(self, element: tuple[str, dict]) -> Iterator:
        _, grouped = element
        splits = dict(grouped["splits"])
        for document in grouped["documents"]:
            yield from place_in_split(document, splits, self._view)


def place_in_split(document: Document, splits: dict[str, str], view: ViewConfig) -> Iterator:
    """Yield ``document`` with the split of its images (``splits``: image key -> split), or its rejected row.

    Images absent from ``splits`` (dropped after the documents stage) leave the document.
    """
    present = [segment for segment in document.segments if segment.image is None or segment.image.key in splits]
    missing = [
        LeftImage(s.image.source, s.image.key, "", "")
        for s in document.segments
        if s.image and s.image.key not in splits
    ]
    document = dataclasses.replace(document, segments=tuple(present), left=document.left + tuple(missing))
    found = sorted({splits[image.key] for image in document.images})
    if not found:
        yield pvalue.TaggedOutput(
            REJECTED, rejected_document(document, reasons.DOCUMENT_TOO_FEW_IMAGES, STAGE, images=0)
        )
    elif len(found) > 1:
        row = rejected_document(document, reasons.DOCUMENT_SPLIT_CONFLICT, STAGE, splits=found)
        yield pvalue.TaggedOutput(REJECTED, row)
    elif not sampled(document.key, view.share):
        row = rejected_document(document, reasons.DOCUMENT_NOT_SAMPLED, STAGE, share=view.share)
        yield pvalue.TaggedOutput(REJECTED, dataclasses.replace(row, split=found[0]))
    else:
        yield dataclasses.replace(document, split=found[0])


def _slot_document(document: Document, totals: dict, config: ShardsConfig) -> Iterator:
    if document.split in totals:
        yield slot_of(document.split, document.key, totals, config), document


def _slot_image(sample: Sample, totals: dict, config: ShardsConfig) -> Iterator:
    # Routed by its document's key: the images meet their document in its shard, with no other shuffle.
    if sample.document_id and sample.split in totals:
        yield slot_of(sample.split, document_key(sample.document_id), totals, config), sample


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
        metadata=dict(image.metadata),
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


def _kept_row(document: Document, shard: str) -> DocumentLedgerRow:
    return DocumentLedgerRow(
        doc_id=document.doc_id,
        key=document.key,
        status=reasons.KEPT,
        stage=STAGE,
        reason="",
        notes={"view": VIEW, "shard": shard} if shard else {"view": None},
        domain=document.domain,
        split=document.split,
        images=len(document.images),
        texts=sum(1 for segment in document.segments if segment.kind == "text"),
        left=document.left,
    )


class _WriteDocsFn(beam.DoFn):
    def __init__(self, output: str, generation: int):
        self._output = output
        self._generation = generation
        self._documents = beam.metrics.Metrics.counter(STAGE, "documents")
        self._shards = beam.metrics.Metrics.counter(STAGE, "shards")

    def process(self, element: tuple[tuple[str, int], dict]) -> Iterator:
        (split, slot), grouped = element
        documents = sorted(grouped["documents"], key=lambda d: d.key)
        if not documents:
            return
        images = {sample.key: sample for sample in grouped["images"]}
        name = shard_name(slot, self._generation)
        folder = shard_dir(self._output, VIEW, split)
        stats = write_shard(folder, name, VIEW, split, documents, lambda d: document_item(d, images), SIDECAR_SCHEMA)
        self._shards.inc()
        self._documents.inc(len(documents))
        yield stats
        for document in documents:
            yield pvalue.TaggedOutput(REJECTED, _kept_row(document, f"{VIEW}/{split}/{name}.tar"))


LEDGER_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
        ("images", pa.int32()),
        ("texts", pa.int32()),
    ]
)


class WriteDocumentLedger(beam.PTransform):
    """Write one Parquet row per document under ``output/ledger_documents/`` and ``_run/document_counts.json``."""

    def __init__(self, output: str, rows_per_part: int, items: beam.PCollection):
        """Args:
        output: The run's output (staging) folder.
        rows_per_part: Rows per Parquet part, as the item ledger.
        items: The item ledger rows (``LedgerRow``), to say at which stage and why each image left a document.
        """
        super().__init__()
        self._output = output
        self._rows_per_part = rows_per_part
        self._items = items

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        explained = (
            {
                "left": rows | "LeftBySource" >> beam.FlatMap(_left_sources),
                "items": self._items | "ItemBySource" >> beam.Map(lambda row: (row.source, row)),
            }
            | "JoinItems" >> beam.CoGroupByKey()
            | "Explain" >> beam.FlatMap(_explain)
        )
        completed = (
            {"rows": rows | "RowByDoc" >> beam.Map(lambda r: (r.doc_id, r)), "left": explained}
            | "JoinLeft" >> beam.CoGroupByKey()
            | "Complete" >> beam.FlatMap(_complete)
        )
        _ = completed | "Parts" >> WriteParts(
            self._output, LEDGER_DIR, LEDGER_SCHEMA, _doc_id, _as_row, "document ledger", self._rows_per_part
        )
        return (
            completed
            | "Tally" >> beam.Map(lambda row: f"{row.status}/{row.stage}/{row.reason}".rstrip("/"))
            | "CountTally" >> beam.combiners.Count.PerElement()
            | "AllTallies" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.Map(_write_counts, output=self._output)
        )


def _left_sources(row: DocumentLedgerRow) -> Iterator[tuple[str, str]]:
    for image in row.left or ():
        if not image.reason:
            yield image.source, row.doc_id


def _explain(element: tuple[str, dict]) -> Iterator[tuple[str, tuple[str, str | None, str, str]]]:
    source, grouped = element
    items: list[LedgerRow] = list(grouped["items"])
    for doc_id in grouped["left"]:
        for item in items:
            yield doc_id, (source, item.key, item.stage, item.reason or item.status)


def _complete(element: tuple[str, dict]) -> Iterator[DocumentLedgerRow]:
    doc_id, grouped = element
    rows = list(grouped["rows"])
    found = {source: (key, stage, reason) for source, key, stage, reason in grouped["left"]}
    for row in rows:
        yield row if row.left is None else dataclasses.replace(row, left=tuple(explained(row.left, found)))


def explained(left: Iterable[LeftImage], found: dict[str, tuple[str | None, str, str]]) -> Iterator[LeftImage]:
    """``left`` with the key, stage and reason ``found`` (by source, from the item ledger) of each image that
    left with no reason yet."""
    for image in left:
        if not image.reason and image.source in found:
            yield LeftImage(image.source, *found[image.source])
        else:
            yield image


def _doc_id(row: DocumentLedgerRow) -> str:
    return row.doc_id


def _as_row(row: DocumentLedgerRow) -> list[dict]:
    return [{name: getattr(row, name) for name in LEDGER_SCHEMA.names}]


def _write_counts(tallies: list[tuple[str, int]], output: str) -> dict:
    by_reason = dict(sorted(tallies))
    by_status: Counter = Counter()
    for name, count in tallies:
        by_status[name.split("/", 1)[0]] += count
    counts = {
        "documents": sum(by_status.values()),
        "by_status": dict(sorted(by_status.items())),
        "by_reason": by_reason,
    }
    write_atomic(join(output, "_run", "document_counts.json"), json.dumps(counts, indent=2).encode() + b"\n")
    return counts
