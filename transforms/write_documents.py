"""Write the ``docs`` view: one WebDataset sample per interleaved document.

Inputs: ``Document`` records from ``transforms/documents.py`` (no bytes) and the split samples (``Sample``, with
``document_id``), which carry the image bytes. Outputs (``DocumentWriteOutputs``): ``ledger``,
``DocumentLedgerRow``s (kept: the shard written; rejected: ``document_split_conflict`` when a document's images
went to two splits, ``document_not_sampled`` outside ``views.docs.share``), and ``shards`` (``ShardStats``).

Layout: ``OUT/shards/docs/<split>/shard-NNNNNN.tar`` with ``KEY.json`` (``DocumentRecord``: OBELICS-style
``texts``/``images`` parallel lists, schema version, per-image metadata) and ``KEY.0.jpg``, ``KEY.1.jpg``... in
reading order (``transforms/document_record.py``); a Parquet sidecar (one row per document), ``_stats.json`` and
``index.json``, written by ``transforms/shard_writer.py`` as for every view. ``KEY`` is ``document_key(doc_id)``.
Shard membership is a pure function of the document key (shard count from the split's document count and bytes,
at least ``views.loader_workers * views.nodes``); image bytes cross one shuffle, straight into their shard.

The ledger rows go to ``transforms/document_ledger.py`` (``OUT/ledger_documents/``). Config sections: ``views``
(``docs``), ``shards``.
Metrics: ``write_documents/documents``, ``write_documents/shards``.
"""

import dataclasses
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue

from schemas import reasons
from schemas.config.shards import ShardsConfig
from schemas.config.views import ViewConfig
from schemas.documents import Document, DocumentLedgerRow, LeftImage, document_key
from schemas.records.samples import Sample
from transforms._common import REJECTED
from transforms.document_record import SIDECAR_SCHEMA, document_item
from transforms.documents import rejected_document
from transforms.shard_writer import (
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
        slots = {"totals": totals, "config": self._shards, "share": self._view.share}
        written = (
            {
                "documents": documents | "AssignDocs" >> beam.FlatMap(_slot_document, **slots),
                "images": samples | "AssignImages" >> beam.FlatMap(_slot_image, **slots),
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


def _slot_document(document: Document, totals: dict, config: ShardsConfig, share: float) -> Iterator:
    if document.split in totals:
        yield slot_of(document.split, document.key, totals, config, share), document


def _slot_image(sample: Sample, totals: dict, config: ShardsConfig, share: float) -> Iterator:
    # Routed by its document's key: the images meet their document in its shard, with no other shuffle.
    if sample.document_id and sample.split in totals:
        yield slot_of(sample.split, document_key(sample.document_id), totals, config, share), sample


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
