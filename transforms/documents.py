"""Documents: assemble curated images and text rows into interleaved documents (product pages, inspection records).

Inputs: curated samples (``Sample``, after the model and safety stages), text rows (``TextRow`` from ingest: manifest
rows without an image, imported MMC4/OBELICS texts), the ingested items (``InputItem``, to know which images a
document had before curation) and ingest's rejections (an unresolvable import image names its document). Outputs
(``DocumentsOutputs``): ``samples``, every sample unchanged except ``document_id`` for those in a
document (splits keep a document in one split by it); ``documents``, the kept ``Document`` records (no image bytes);
``rejected``, ``DocumentLedgerRow``s of dropped documents.

A sample's document is its ``documents.id_field`` metadata value, else the first matching ``documents.groups``
rule (one document per SKU or inspection record; ``transforms/document_ids.py``). Segments are ordered by
``documents.position_field``, and images without a position placed MMC4's way or appended in source order
(``transforms/document_order.py``). Images removed by curation leave their document (the text stays) and are listed
with the stage and reason from the item ledger by ``WriteDocumentLedger`` (``transforms/document_ledger.py``).

Reason codes (document ledger): ``document_too_few_images``, ``document_too_little_text``; images leaving a
document: ``image_unplaced``, ``image_below_min_similarity``. Config section: ``documents``.
Metrics: ``documents/documents``, ``documents/rejected``, ``documents/placed_images``, ``documents/bad_positions``
(a position that is not a number: the segment is placed as one without a position, and a warning names it).
"""

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.utils.shared import Shared

from schemas import reasons
from schemas.config.documents import DocumentsConfig
from schemas.documents import Document, DocumentImage, DocumentLedgerRow, LeftImage, Segment, TextRow, document_key
from schemas.records.inputs import InputItem
from schemas.records.ledger import LedgerRow
from schemas.records.samples import Sample
from schemas.records.values import blank
from transforms import placement
from transforms._common import REJECTED
from transforms.document_ids import document_id, id_text, stamp
from transforms.document_order import (
    TextPiece,
    bad_position,
    deduplicated,
    first_text,
    image_segments,
    order,
    place_unpositioned,
    position_of,
)

STAGE = "documents"
_LOG = logging.getLogger(__name__)
_BAD_POSITIONS = beam.metrics.Metrics.counter(STAGE, "bad_positions")


class DocumentsOutputs(NamedTuple):
    samples: beam.PCollection
    documents: beam.PCollection
    rejected: beam.PCollection


class AssembleDocuments(beam.PTransform):
    """Group samples and text rows into ordered documents; drop documents left too thin by curation."""

    def __init__(
        self,
        config: DocumentsConfig,
        texts: beam.PCollection,
        items: beam.PCollection,
        text_encoder: Callable[[], placement.TextEncoder] | None = None,
        dropped: beam.PCollection | None = None,
        carried: beam.PCollection | None = None,
    ):
        """Args:
        config: The ``documents`` section.
        texts: ``TextRow`` records.
        items: The ingested ``InputItem``s, for the images each document had before curation.
        text_encoder: Builds the CLIP text encoder for placement, once per worker (``load_clip`` bound to its
            config, or a fake in tests); ``None`` leaves unpositioned images in source order.
        dropped: Item ledger rows of items dropped before they were read; those with a ``document_id``
            (unresolvable import images) are listed among the images that left their document.
        carried: The document ledger rows an incremental run carries from the earlier run (``DocumentLedgerRow``):
            those documents are decided and unchanged (else the run would have stopped), so none is assembled
            again from the text rows or dropped images this run lists for it.
        """
        super().__init__()
        self._config = config
        self._texts = texts
        self._items = items
        self._text_encoder = text_encoder
        self._dropped = dropped
        self._carried = carried

    def expand(self, samples: beam.PCollection) -> DocumentsOutputs:
        if not self._config.enabled:
            empty = samples.pipeline | "NoDocuments" >> beam.Create([])
            return DocumentsOutputs(samples=samples, documents=empty, rejected=empty)
        config = self._config
        stamped = samples | "Stamp" >> beam.Map(stamp, config=config)
        refs = [self._items | "Refs" >> beam.FlatMap(_ref_member, config=config)]
        if self._dropped is not None:
            refs.append(self._dropped | "DroppedRefs" >> beam.FlatMap(_dropped_ref))
        members = {
            "images": stamped | "Members" >> beam.FlatMap(_image_member, config=config),
            "texts": self._texts | "TextSegments" >> beam.FlatMap(_text_member, config=config),
            "refs": refs | "AllRefs" >> beam.Flatten(),
        }
        if self._carried is not None:
            members["carried"] = self._carried | "CarriedIds" >> beam.Map(lambda row: (row.doc_id, True))
        decided = (
            members
            | "ByDocument" >> beam.CoGroupByKey()
            | "Assemble" >> beam.ParDo(_AssembleFn(config, self._text_encoder)).with_outputs(REJECTED, main="kept")
        )
        return DocumentsOutputs(samples=stamped, documents=decided.kept, rejected=decided[REJECTED])


def document_image(sample: Sample, config: DocumentsConfig) -> DocumentImage:
    """The light view of a sample inside a document (no image bytes)."""
    return DocumentImage(
        key=sample.key,
        source=sample.source,
        domain=sample.domain,
        position=position_of(sample.metadata, config.position_field),
        caption=sample.text,
        caption_source=sample.text_source,
        image_ext=sample.image_ext,
        sha256=sample.sha256,
        image=sample.normalised,
        original=sample.original,
        scores=dict(sample.scores),
        metadata=dict(sample.metadata),
        embedding=sample.embedding,
        embedding_model=str(sample.annotations.get("embedding_model", "")),
    )


def _image_member(sample: Sample, config: DocumentsConfig) -> Iterator[tuple[str, DocumentImage]]:
    found = document_id(sample.metadata, sample.domain, config)
    if found is not None:
        _warn_bad_position(sample.source, found[0], sample.metadata, config)
        yield found[0], (found[1], document_image(sample, config))


def _text_member(row: TextRow, config: DocumentsConfig) -> Iterator[tuple[str, TextPiece]]:
    value = row.metadata.get(config.id_field)
    if blank(value):
        return
    doc_id = id_text(value)
    _warn_bad_position(row.source, doc_id, row.metadata, config)
    text = first_text(row.metadata, config.text_fields)
    position = position_of(row.metadata, config.position_field)
    yield doc_id, TextPiece(row.source, row.domain, position, text, dict(row.metadata))


def _warn_bad_position(source: str, doc_id: str, metadata: dict, config: DocumentsConfig) -> None:
    if problem := bad_position(metadata, config.position_field):
        _BAD_POSITIONS.inc()
        _LOG.warning("%s (document %s): its %s; fix the value to place it", source, doc_id, problem)


def _ref_member(item: InputItem, config: DocumentsConfig) -> Iterator[tuple[str, tuple[str, str]]]:
    found = document_id(item.metadata, item.domain, config)
    if found is not None:
        yield found[0], (item.source, item.domain)


def _dropped_ref(row: LedgerRow) -> Iterator[tuple[str, tuple[str, str]]]:
    if row.document_id:
        yield row.document_id, (row.source, row.domain)


def assemble(
    doc_id: str,
    origins: Iterable[str],
    images: Iterable[DocumentImage],
    texts: Iterable[TextPiece],
    refs: Iterable[tuple[str, str]],
    config: DocumentsConfig,
    encoder_of: Callable[[], placement.TextEncoder | None] = lambda: None,
) -> Document | DocumentLedgerRow:
    """Build one document from its curated images, text rows and pre-curation ``(source, domain)`` image refs.

    Returns:
        The ``Document``, or the rejected ``DocumentLedgerRow`` when too few images or too little text remain.
    """
    images = sorted(images, key=lambda image: (order(image.position, 1, image.source), image.key))
    texts = sorted(texts, key=lambda piece: order(piece.position, 0, piece.source))
    refs = sorted(set(refs))
    kept_sources = {image.source for image in images}
    left = [LeftImage(source, None, "", "") for source, _ in refs if source not in kept_sources]
    positioned = [image for image in images if image.position is not None]
    unpositioned = [image for image in images if image.position is None]
    placed = None
    placement_detail: dict[str, Any] = {"method": "position"}
    if unpositioned:
        placed, placement_left, extra = place_unpositioned(unpositioned, texts, config, encoder_of)
        left += placement_left
        placement_detail.update(extra)
    entries: list[tuple[tuple, Segment]] = []
    if placed is None:
        entries += [(order(piece.position, 0, piece.source), Segment("text", text=piece.text)) for piece in texts]
        positioned += unpositioned
    else:
        entries += placed
        placement_detail = {**placement_detail, "method": "position+" + placement.METHOD}
    for image in positioned:
        for offset, segment in enumerate(image_segments(image, config)):
            entries.append((order(image.position, 1, image.source, offset), segment))
    segments = deduplicated([segment for _, segment in sorted(entries, key=lambda entry: entry[0])])
    members = [*images, *texts]
    domain = (images or texts)[0].domain if members else (refs[0][1] if refs else "")
    metadata = {}
    for field in config.document_fields:
        value = next((m.metadata[field] for m in members if not blank(m.metadata.get(field))), None)
        if value is not None:
            metadata[field] = value
    document = Document(
        doc_id=doc_id,
        key=document_key(doc_id),
        domain=domain,
        origin="+".join(sorted(set(origins))) or ("text" if texts else "unknown"),
        segments=tuple(segments),
        metadata=metadata,
        placement=placement_detail,
        left=tuple(left),
    )
    image_count = len(document.images)
    if image_count < config.min_images:
        return rejected_document(
            document, reasons.DOCUMENT_TOO_FEW_IMAGES, images=image_count, min_images=config.min_images
        )
    if document.text_chars < config.min_text_chars:
        return rejected_document(
            document,
            reasons.DOCUMENT_TOO_LITTLE_TEXT,
            text_chars=document.text_chars,
            min_text_chars=config.min_text_chars,
        )
    return document


def rejected_document(document: Document, reason: str, stage: str = STAGE, **detail: Any) -> DocumentLedgerRow:
    """The document ledger row of a document dropped by ``reason`` at ``stage``."""
    return DocumentLedgerRow(
        doc_id=document.doc_id,
        key=document.key,
        status=reasons.REJECTED,
        stage=stage,
        reason=reason,
        notes=detail,
        domain=document.domain,
        images=len(document.images),
        texts=sum(1 for segment in document.segments if segment.kind == "text"),
        left=document.left,
    )


class _AssembleFn(beam.DoFn):
    def __init__(self, config: DocumentsConfig, text_encoder: Callable[[], placement.TextEncoder] | None):
        self._config = config
        self._factory = text_encoder
        self._documents = beam.metrics.Metrics.counter(STAGE, "documents")
        self._rejected = beam.metrics.Metrics.counter(STAGE, "rejected")
        self._placed = beam.metrics.Metrics.counter(STAGE, "placed_images")
        # One handle made here and pickled with the DoFn: every instance in a worker process shares the model.
        self._shared = Shared()

    def setup(self):
        self._encoder = None

    def _encoder_of(self) -> placement.TextEncoder | None:
        # Loaded on first need: most runs place nothing and never pay for a text model.
        if self._encoder is None and self._factory is not None:
            self._encoder = self._shared.acquire(self._factory)
        return self._encoder

    def process(self, element: tuple[str, dict]) -> Iterator:
        doc_id, grouped = element
        if any(grouped.get("carried", ())):
            return
        images = list(grouped["images"])
        try:
            result = assemble(
                doc_id,
                [origin for origin, _ in images],
                [image for _, image in images],
                grouped["texts"],
                grouped["refs"],
                self._config,
                self._encoder_of,
            )
        except Exception as error:  # noqa: BLE001 - one bad document becomes a failed ledger row, never a crashed run
            _LOG.warning("documents failed on %s: %s: %s", doc_id, type(error).__name__, error)
            notes = {"error_type": type(error).__name__, "error": str(error)}
            row = DocumentLedgerRow(
                doc_id, document_key(doc_id), reasons.FAILED, STAGE, reasons.EXCEPTION, notes, left=None
            )
            yield pvalue.TaggedOutput(REJECTED, row)
            return
        if isinstance(result, DocumentLedgerRow):
            self._rejected.inc()
            yield pvalue.TaggedOutput(REJECTED, result)
            return
        self._documents.inc()
        self._placed.inc(sum(1 for s in result.segments if s.similarity is not None))
        yield result
