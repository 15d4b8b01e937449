"""The interleaved document model: records that flow through the pipeline and the versioned JSON in ``docs`` shards.

A document is an ordered sequence of text and image segments with a document id, a domain and metadata: a product
page (title, description, several images of one SKU) or an inspection record (a note and several camera views).

Pipeline records (frozen dataclasses): ``TextRow`` (a manifest or import row holding text, not an image),
``DocumentImage`` (the light view of a curated sample inside a document, no image bytes), ``Segment``,
``Document`` and ``DocumentLedgerRow`` (one per document: kept, or rejected with a reason).

Shard JSON (pydantic, ``KEY.json`` of the ``docs`` view): ``DocumentRecord``, OBELICS-style parallel lists
``texts``/``images``/``image_metadata`` where each position holds either a text or an image member name. Readers call
``parse_document``, which accepts every version in ``SUPPORTED_DOCUMENT_VERSIONS`` and upgrades older ones through
``UPGRADES``; a change to the fields bumps ``DOCUMENT_SCHEMA_VERSION`` and adds the upgrade from the previous one.
``EditRecord`` is ``KEY.json`` of the ``edit`` view.
"""

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

import pydantic

from schemas import reasons
from schemas.records.ledger import detail_json
from schemas.records.samples import ImageInfo

DOCUMENT_SCHEMA_VERSION = 1
SUPPORTED_DOCUMENT_VERSIONS = (1,)
EDIT_SCHEMA_VERSION = 1

# The name ``Sample.document_id`` (the id of the document a sample belongs to) has in a shard's ``annotations`` and
# in the split stage's group tokens.
DOCUMENT_ANNOTATION = "document_id"


def document_key(doc_id: str) -> str:
    """The shard key of a document: 32 lowercase hex digits of the SHA-256 of its id (never a dot)."""
    return hashlib.sha256(f"document:{doc_id}".encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class TextRow:
    """A row that holds a text segment of a document instead of an image (a manifest row without a path).

    Attributes:
        source: ``MANIFEST#ROW`` or ``FILE#LINE:textNNNN``; text rows are not items of the item ledger.
        domain: Data domain.
        metadata: The row's values (document id, position, text and anything else).
    """

    source: str
    domain: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class DocumentImage:
    """A curated sample as a document sees it: everything the ``docs`` JSON says about it, and no image bytes."""

    key: str
    source: str
    domain: str
    position: float | None
    caption: str
    caption_source: str
    image_ext: str
    sha256: str
    image: ImageInfo
    original: ImageInfo
    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    embedding: bytes | None = None
    embedding_model: str = ""


@dataclasses.dataclass(frozen=True)
class LeftImage:
    """An image that was part of a document and is not in it any more, with why (stage and reason code)."""

    source: str
    key: str | None
    stage: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Segment:
    """One step of a document: a text, or an image with the similarity that placed it (when placement did)."""

    kind: Literal["text", "image"]
    text: str = ""
    image: DocumentImage | None = None
    similarity: float | None = None


@dataclasses.dataclass(frozen=True)
class Document:
    """A document after curation, in order, without image bytes.

    Attributes:
        doc_id: The document id (metadata value or grouping rule).
        key: ``document_key(doc_id)``.
        domain: Domain of its first segment.
        origin: How its members were found: ``doc_id`` (a metadata field) or ``group:FIELD+FIELD`` (a rule).
        segments: Text and image segments in reading order.
        metadata: Document-level metadata (``documents.document_fields`` taken from its members).
        placement: How images were ordered: ``{"method": "position"}`` or the CLIP assignment with its model.
        left: Images that left the document during curation or placement.
        split: The split its images went to (set when the view is written).
    """

    doc_id: str
    key: str
    domain: str
    origin: str
    segments: tuple[Segment, ...]
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    placement: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    left: tuple[LeftImage, ...] = ()
    split: str = ""

    @property
    def images(self) -> list[DocumentImage]:
        return [segment.image for segment in self.segments if segment.image is not None]

    @property
    def text_chars(self) -> int:
        return sum(len(segment.text) for segment in self.segments if segment.kind == "text")

    @property
    def image_bytes(self) -> int:
        return sum(image.image.bytes for image in self.images)


@dataclasses.dataclass(frozen=True)
class DocumentLedgerRow:
    """Where one document ended: kept (written to a view) or rejected with a reason code.

    Attributes:
        doc_id: The document id; unique across the document ledger of a run.
        key: ``document_key(doc_id)``.
        status: ``kept``, ``rejected`` or ``failed``.
        stage: ``documents`` or ``write_documents``.
        reason: A code from ``schemas.reasons`` (empty for kept rows).
        notes: What a person needs to know about the decision besides the images that left: the shard written,
            the rule and its threshold, the error (JSON-compatible values).
        domain: Data domain.
        split: The split a kept document was written to.
        images: Images in the document as written (kept) or when it was dropped.
        texts: Text segments.
        left: The images that left the document, with the stage and reason once known; ``None`` where the row
            does not list them (a document whose assembly failed).
    """

    doc_id: str
    key: str
    status: str
    stage: str
    reason: str
    notes: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    domain: str = ""
    split: str = ""
    images: int = 0
    texts: int = 0
    left: tuple[LeftImage, ...] | None = ()

    def __post_init__(self):
        if self.status not in reasons.STATUSES:
            raise ValueError(f"document ledger status must be one of {reasons.STATUSES}, got {self.status!r}")

    @property
    def detail(self) -> str:
        """The ledger's ``detail`` column, JSON text for people: ``notes`` and ``images_left`` (source, key, stage,
        reason of each image that left)."""
        if self.left is None:
            return detail_json(**self.notes)
        return detail_json(**self.notes, images_left=[dataclasses.asdict(image) for image in self.left])


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class ImageMetadata(Model):
    """What ``KEY.json`` says about one image of a document."""

    member: str = pydantic.Field(description="The tar member suffix holding the image: ``0.jpg`` for ``KEY.0.jpg``.")
    key: str = pydantic.Field(description="The sample key of the image (the same key as in the pairs view).")
    source: str
    caption: str
    caption_source: str
    sha256: str = pydantic.Field(description="SHA-256 of the original file.")
    image_sha256: str = pydantic.Field(description="SHA-256 of the member's bytes, for validation.")
    image: ImageInfo
    original: ImageInfo
    scores: dict[str, float] = {}
    position: float | None = None
    placement_similarity: float | None = None
    metadata: dict[str, Any] = {}


class DocumentRecord(Model):
    """``KEY.json`` in a ``docs`` shard: one interleaved document, OBELICS-style.

    ``texts[i]`` and ``images[i]`` are parallel: exactly one of them is set at every position, and
    ``image_metadata[i]`` is set exactly where ``images[i]`` is. ``images[i]`` names the member under the sample key,
    so ``sample[images[i]]`` holds the image bytes in a webdataset sample.
    """

    schema_version: int = DOCUMENT_SCHEMA_VERSION
    key: str
    doc_id: str
    domain: str
    split: str
    origin: str
    texts: list[str | None]
    images: list[str | None]
    image_metadata: list[ImageMetadata | None]
    metadata: dict[str, Any] = {}
    placement: dict[str, Any] = {}

    @pydantic.field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value != DOCUMENT_SCHEMA_VERSION:
            raise ValueError(
                f"document schema version {value} is not {DOCUMENT_SCHEMA_VERSION}; read it with parse_document"
            )
        return value

    @pydantic.model_validator(mode="after")
    def _parallel(self) -> "DocumentRecord":
        if not len(self.texts) == len(self.images) == len(self.image_metadata):
            raise ValueError("texts, images and image_metadata must have the same length")
        for index, (text, image, meta) in enumerate(zip(self.texts, self.images, self.image_metadata, strict=True)):
            if (text is None) == (image is None):
                raise ValueError(f"position {index} must hold exactly one of a text and an image")
            if (image is None) != (meta is None):
                raise ValueError(f"position {index}: image_metadata must be set exactly where images is")
        return self

    def sequence(self) -> list[tuple[str, str]]:
        """The interleaved sequence as ``("text", text)`` and ``("image", member)`` steps, in order."""
        steps = zip(self.texts, self.images, strict=True)
        return [("text", text) if text is not None else ("image", image) for text, image in steps]


# Upgrades from an older schema version to the next one, applied in turn by ``parse_document``. When a change bumps
# DOCUMENT_SCHEMA_VERSION to N, add ``N - 1: upgrade_function`` here and N - 1 to SUPPORTED_DOCUMENT_VERSIONS.
UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


class UnsupportedDocumentVersion(ValueError):
    """A ``KEY.json`` written with a schema version this reader cannot read."""


def parse_document(data: Mapping[str, Any]) -> DocumentRecord:
    """Read a ``docs`` ``KEY.json`` of any supported version as the current ``DocumentRecord``.

    Raises:
        UnsupportedDocumentVersion: The version is newer than this reader or older than any upgrade it knows.
        pydantic.ValidationError: The JSON does not match its version's fields.
    """
    raw = dict(data)
    version = raw.get("schema_version", DOCUMENT_SCHEMA_VERSION)
    if version not in SUPPORTED_DOCUMENT_VERSIONS and version not in UPGRADES:
        raise UnsupportedDocumentVersion(
            f"document schema version {version!r} is not readable here (this reader writes {DOCUMENT_SCHEMA_VERSION} "
            f"and reads {sorted({*SUPPORTED_DOCUMENT_VERSIONS, *UPGRADES})}); upgrade unishard"
        )
    while version != DOCUMENT_SCHEMA_VERSION:
        if version not in UPGRADES:
            raise UnsupportedDocumentVersion(f"no upgrade from document schema version {version}")
        raw = UPGRADES[version](raw)
        version = raw["schema_version"]
    return DocumentRecord.model_validate(raw)


class EditImage(Model):
    member: str = pydantic.Field(description="``source.jpg`` or ``target.jpg``: the member suffix of the image.")
    key: str
    source: str
    caption: str
    image_sha256: str
    image: ImageInfo
    metadata: dict[str, Any] = {}


class EditRecord(Model):
    """``KEY.json`` in an ``edit`` shard: turn the source image into the target image following the instruction."""

    schema_version: int = EDIT_SCHEMA_VERSION
    key: str
    rule: str
    domain: str
    split: str
    instruction: str
    source: EditImage
    target: EditImage
