"""Typed records that flow through the pipeline's PCollections.

Records are frozen dataclasses; stages return updated copies with ``dataclasses.replace``. Mapping fields hold
JSON-compatible values only, so every record can be written into a shard's JSON and Parquet sidecar as it is. The
records that cross shuffles pickle compactly (``schemas.compact``): Beam's coder pickles them, having no type hint.

The flow is ``InputItem`` (ingest) -> ``Sample`` (normalise and later stages) -> shards, with a ``LedgerRow`` for
every item that leaves the flow (rejected or failed) and for every item written (kept). Deduplication works on
``Fingerprint`` records, which carry no image bytes, so only the final decisions meet the heavy samples.
"""

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from schemas import reasons
from schemas.compact import hex_bytes, hex_map_bytes, hex_map_text, hex_text, packed, unpacked


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One input item: an image to read plus the metadata known about it before decoding.

    Attributes:
        source: Unique identity of the item in this run: the image path for file patterns, ``MANIFEST#ROW`` for a
            manifest row, ``TAR#MEMBER`` for a WebDataset member. The ledger has exactly one row per source.
        path: Where the image bytes live (empty when ``data`` carries them inline: a compressed tar's members).
        domain: Data domain such as ``factory`` or ``marketing``.
        metadata: Metadata columns, sidecar fields and manifest values (JSON-compatible).
        data: Image bytes carried inline (members of a compressed tar); ``None`` when they are read from ``path``.
        sidecar: Path of a same-stem ``.json`` or ``.txt`` sidecar to merge into the metadata, if any.
        roots: Folders ``path`` and the sidecar must lead into when they are read (``ingest.follow_symlinks``
            decides whether symbolic links may lead out); empty when nothing is read from a path.
        member: ``(offset, size)`` of the image bytes inside ``path`` (a member of an uncompressed tar), read there
            by ingest, so the listing carries no bytes; ``None`` for a whole file.
    """

    source: str
    path: str
    domain: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: bytes | None = None
    sidecar: str | None = None
    roots: tuple[str, ...] = ()
    member: tuple[int, int] | None = None

    def __reduce__(self) -> tuple:
        # Compact pickling (schemas.compact); the path, the sidecar stem and the roots mostly begin the source.
        path = None if self.path == self.source else self.path
        within = tuple(_prefix_length(root, self.source) for root in self.roots)
        values = (self.source, path, self.domain, self.metadata, self.data, _prefix_length(self.sidecar, self.source))
        return _input_item, (packed((*values, within, self.member)),)


def _prefix_length(text: str | None, source: str) -> str | int | None:
    """``text`` as its length when it begins ``source``, so the source alone spells it."""
    return len(text) if text and source.startswith(text) else text


def _prefix_text(value: str | int | None, source: str) -> str | None:
    return source[:value] if isinstance(value, int) else value


def _input_item(blob: bytes) -> InputItem:
    source, path, domain, metadata, data, sidecar, roots, member = unpacked(blob)
    path = source if path is None else path
    roots = tuple(_prefix_text(root, source) for root in roots)
    return InputItem(source, path, domain, metadata, data, _prefix_text(sidecar, source), roots, member)


@dataclasses.dataclass(frozen=True)
class ImageInfo:
    """Facts about one image encoding: the original file or the normalised output."""

    width: int
    height: int
    format: str
    mode: str
    bytes: int
    frames: int = 1

    def as_tuple(self) -> tuple[int, int, str, str, int, int]:
        return self.width, self.height, self.format, self.mode, self.bytes, self.frames


@dataclasses.dataclass(frozen=True)
class Sample:
    """A decoded, normalised image with its text and everything later stages attach.

    Attributes:
        key: Lowercase hex derived from the original bytes (``sha256[:32]``); never contains a dot.
        source: The ``InputItem.source`` it came from.
        path: The image location it was read from.
        domain: Data domain.
        metadata: All metadata of the input item (private fields removed by the stages that own them).
        image: Normalised image bytes, EXIF-free, when carried inline; empty once ``normalise`` stored them in the
            run's image store (``image_ref``). Read them with ``transforms.image_store.read_image``.
        image_ext: Extension of the image in the shard (``jpg``, ``png`` or ``webp``).
        sha256: SHA-256 of the original bytes.
        pixel_sha256: SHA-256 of the normalised pixels, equal for lossless re-encodes of the same picture.
        original: Facts about the input encoding.
        normalised: Facts about ``image``.
        text: The text written to ``KEY.txt``.
        text_source: Where ``text`` came from (a metadata field name, a template or a model id).
        notes: Human-readable remarks about normalisation (``first frame of 12``, ``alpha composited``).
        hashes: Perceptual hashes as hex strings, by name (``phash``, ``dhash``...).
        scores: Scores by a name that names the model (``clip_vit_b_32_laion2b``).
        annotations: JSON-compatible results of later stages (caption provenance, face boxes, duplicates).
        embedding: Float16 image embedding bytes, when a model stage computed one.
        split: The split the sample is written to.
        image_ref: Path of the normalised image in the run's image store (named by its SHA-256), or empty when
            ``image`` carries the bytes.
        document_id: The id of the interleaved document the sample belongs to, set by the documents stage (empty
            when none); splits keep a document in one split by it. Shard JSON shows it as
            ``annotations["document_id"]``.
    """

    key: str
    source: str
    path: str
    domain: str
    metadata: Mapping[str, Any]
    image: bytes
    image_ext: str
    sha256: str
    pixel_sha256: str
    original: ImageInfo
    normalised: ImageInfo
    text: str = ""
    text_source: str = ""
    notes: tuple[str, ...] = ()
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)
    annotations: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    embedding: bytes | None = None
    split: str = "all"
    image_ref: str = ""
    document_id: str = ""

    def __reduce__(self) -> tuple:
        # Positional and hex as bytes (schemas.compact); the path is usually the source, the image reference a
        # folder and a SHA-256 name.
        values = (
            hex_bytes(self.key),
            self.source,
            None if self.path == self.source else self.path,
            self.domain,
            self.metadata,
            self.image,
            self.image_ext,
            hex_bytes(self.sha256),
            hex_bytes(self.pixel_sha256),
            self.original.as_tuple(),
            self.normalised.as_tuple(),
            self.text,
            self.text_source,
            self.notes,
            hex_map_bytes(self.hashes),
            self.scores,
            self.annotations,
            self.embedding,
            self.split,
            _ref_parts(self.image_ref),
            self.document_id,
        )
        return _sample, (packed(values),)


def _ref_parts(ref: str) -> str | tuple[str, bytes, str]:
    """An image store reference ``FOLDER/SHA256.EXT`` as ``(FOLDER/, digest bytes, EXT)``; other text unchanged."""
    folder, _, name = ref.rpartition("/")
    stem, dot, ext = name.partition(".")
    digest = hex_bytes(stem)
    return (folder + "/", digest, ext) if dot and isinstance(digest, bytes) and "." not in ext else ref


def _ref_text(parts: str | tuple[str, bytes, str]) -> str:
    return parts if isinstance(parts, str) else f"{parts[0]}{parts[1].hex()}.{parts[2]}"


def _sample(blob: bytes) -> Sample:
    key, source, path, domain, metadata, image, ext, sha, pixel_sha, original, normalised, *rest = unpacked(blob)
    text, text_source, notes, hashes, scores, annotations, embedding, split, ref, document_id = rest
    return Sample(
        hex_text(key),
        source,
        source if path is None else path,
        domain,
        metadata,
        image,
        ext,
        hex_text(sha),
        hex_text(pixel_sha),
        ImageInfo(*original),
        ImageInfo(*normalised),
        text,
        text_source,
        notes,
        hex_map_text(hashes),
        scores,
        annotations,
        embedding,
        split,
        _ref_text(ref),
        document_id,
    )


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """The light view of a sample that deduplication compares: no image bytes.

    Attributes:
        key: The sample key.
        source: The sample source; rejections are keyed by it.
        sha256: SHA-256 of the original bytes.
        pixel_sha256: SHA-256 of the normalised pixels.
        pixels: Original width times height, for survivor choice.
        file_size: Original file size in bytes.
        richness: Number of non-empty metadata fields, for survivor choice.
        domain: Data domain.
        metadata: Metadata values that scopes and label rules read.
        hashes: Perceptual hashes as hex strings.
        scores: Scores known so far (a CLIP score once model stages ran).
        shipped: True for a sample an earlier run already wrote to shards (incremental runs). Shipped fingerprints
            take part in deduplication so new images that duplicate them are rejected, are always preferred as
            survivors, and are never emitted again.
    """

    key: str
    source: str
    sha256: str
    pixel_sha256: str
    pixels: int
    file_size: int
    richness: int
    domain: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    hashes: Mapping[str, str] = dataclasses.field(default_factory=dict)
    scores: Mapping[str, float] = dataclasses.field(default_factory=dict)
    shipped: bool = False

    def __reduce__(self) -> tuple:
        values = (
            hex_bytes(self.key),
            self.source,
            hex_bytes(self.sha256),
            hex_bytes(self.pixel_sha256),
            self.pixels,
            self.file_size,
            self.richness,
            self.domain,
            self.metadata,
            hex_map_bytes(self.hashes),
            self.scores,
            self.shipped,
        )
        return _fingerprint, (packed(values),)


def _fingerprint(blob: bytes) -> Fingerprint:
    key, source, sha, pixel_sha, *middle, hashes, scores, shipped = unpacked(blob)
    return Fingerprint(
        hex_text(key), source, hex_text(sha), hex_text(pixel_sha), *middle, hex_map_text(hashes), scores, shipped
    )


def fingerprint(sample: Sample) -> Fingerprint:
    """Return the light view of ``sample`` used by deduplication."""
    richness = sum(1 for value in sample.metadata.values() if not blank(value))
    return Fingerprint(
        key=sample.key,
        source=sample.source,
        sha256=sample.sha256,
        pixel_sha256=sample.pixel_sha256,
        pixels=sample.original.width * sample.original.height,
        file_size=sample.original.bytes,
        richness=richness,
        domain=sample.domain,
        metadata=dict(sample.metadata),
        hashes=dict(sample.hashes),
        scores=dict(sample.scores),
    )


@dataclasses.dataclass(frozen=True)
class DuplicateCluster:
    """One group of near or semantic duplicates a dedup stage found, counted in images.

    Members are connected through verified pairs (a chain may link two members further apart than the threshold).
    Within a cluster, members whose ``keep_distinct`` labels differ are never removed in favour of each other, so a
    cluster can have several survivors; in ``report_only`` mode nothing is removed. Splits keep a cluster whole.

    Attributes:
        cluster_id: ``<stage>-<smallest member key>``; stable while the smallest member stays.
        stage: ``near_dedup`` or ``semantic_dedup``.
        scope: JSON list of the scope values all members share (``""`` when deduplicating globally).
        metric: What ``distances`` measure: ``phash_hamming`` (bits) or ``cosine_distance`` (1 - cosine).
        keys: Member keys, sorted (with ``sources`` as a tie-break).
        sources: Member sources, aligned with ``keys``.
        survivors: For each member, the key of the member that survives in its place (its own key for survivors).
        distances: For each member, its distance to that survivor (0 for survivors).
        removed: For each member, whether the stage rejected it (all false in ``report_only`` mode).
        report_only: The stage only reported this cluster.
        methods: For each member, what matched it on its way to its survivor (near dedup: ``phash``,
            ``keypoints``; empty for survivors); empty when the stage records none.
        evidence: For each member, that match's evidence as JSON text (``{"distance": 5}``, ``{"inliers": 48,
            "colour_distance": 3.1}``), aligned with ``methods``.
    """

    cluster_id: str
    stage: str
    scope: str
    metric: str
    keys: tuple[str, ...]
    sources: tuple[str, ...]
    survivors: tuple[str, ...]
    distances: tuple[float, ...]
    removed: tuple[bool, ...]
    report_only: bool = False
    methods: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def size(self) -> int:
        return len(self.keys)

    def links(self) -> list[tuple[str, str]]:
        """``(first kept key, kept key)`` for every other member not removed: a star joining what was kept."""
        kept = [key for key, removed in zip(self.keys, self.removed, strict=True) if not removed]
        return [(kept[0], key) for key in kept[1:] if key != kept[0]]

    def members(self) -> list[dict[str, Any]]:
        """One dict per member: ``key``, ``source``, ``survivor_key``, ``distance``, ``removed``, ``method`` and
        ``evidence`` (empty strings when the stage records no method)."""
        methods = self.methods or ("",) * self.size
        evidence = self.evidence or ("",) * self.size
        columns = (self.keys, self.sources, self.survivors, self.distances, self.removed, methods, evidence)
        names = ("key", "source", "survivor_key", "distance", "removed", "method", "evidence")
        return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


@dataclasses.dataclass(frozen=True)
class LedgerRow:
    """Where one input item ended: kept, rejected with a reason, or failed with the error.

    Attributes:
        source: The ``InputItem.source``; unique across the ledger of a run.
        key: The sample key, or ``None`` when the item never decoded.
        status: ``kept``, ``rejected`` or ``failed``.
        stage: The stage that decided (``ingest``, ``normalise``, ``exact_dedup``, ``write_shards``...).
        reason: A code from ``schemas.reasons`` (empty for kept rows).
        detail: JSON text with what a person needs: the survivor of a duplicate, the error, the shard written.
        domain: Data domain, for per-domain funnels.
        split: The split a kept item was written to (empty otherwise).
        document_id: The interleaved document an item dropped before it was read belonged to (an imported image
            that resolved to no file), so the documents stage lists it among the images that left; empty otherwise.
            Not a ledger column (``detail`` names it for people).
    """

    source: str
    key: str | None
    status: str
    stage: str
    reason: str
    detail: str = "{}"
    domain: str = ""
    split: str = ""
    document_id: str = ""

    def __post_init__(self):
        if self.status not in reasons.STATUSES:
            raise ValueError(f"ledger status must be one of {reasons.STATUSES}, got {self.status!r}")

    def __reduce__(self) -> tuple:
        values = (self.source, hex_bytes(self.key), self.status, self.stage, self.reason, self.detail, self.domain)
        return _ledger_row, (packed((*values, self.split, self.document_id)),)


def _ledger_row(blob: bytes) -> LedgerRow:
    source, key, *rest = unpacked(blob)
    return LedgerRow(source, hex_text(key), *rest)


def blank(value: Any) -> bool:
    """Whether a metadata or text value says nothing: ``None``, ``""``, ``[]`` or ``{}`` (``0`` and ``False`` say
    something). The one test of emptiness every stage uses."""
    return value is None or (isinstance(value, str | list | dict) and not value)


def detail_json(**fields: Any) -> str:
    """Serialise ledger detail fields canonically (sorted keys), so ledgers compare byte for byte."""
    return json.dumps(fields, sort_keys=True, ensure_ascii=False, default=str)


def rejected(
    stage: str, reason: str, source: str, key: str | None = None, domain: str = "", **detail: Any
) -> LedgerRow:
    """Build the ledger row of an item a stage rejected on purpose."""
    return LedgerRow(source, key, reasons.REJECTED, stage, reason, detail_json(**detail), domain)


def failed(stage: str, source: str, error: BaseException, key: str | None = None, domain: str = "") -> LedgerRow:
    """Build the ledger row of an item whose processing raised an unexpected exception."""
    detail = detail_json(error_type=type(error).__name__, error=str(error))
    return LedgerRow(source, key, reasons.FAILED, stage, reasons.EXCEPTION, detail, domain)


class RejectItem(Exception):
    """Raised by a stage's pure logic to reject the item it is working on with a reason code.

    The stage's DoFn turns it into a ``rejected`` ledger row; any other exception becomes a ``failed`` row.
    """

    def __init__(self, reason: str, message: str = "", **detail: Any):
        super().__init__(message or reason)
        self.reason = reason
        self.detail = {"message": message, **detail} if message else detail


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One possible caption and where it came from.

    Attributes:
        text: The cleaned caption.
        source: ``metadata.FIELD``, ``template:DOMAIN[i]``, ``captioner:MODEL`` or ``ocr:MODEL``.
        template: The template text, for template candidates.
    """

    text: str
    source: str
    template: str = ""


@dataclasses.dataclass(frozen=True)
class CaptionRequest:
    """A sample on its way through the caption stage with the candidates gathered so far."""

    sample: Sample
    candidates: tuple[Candidate, ...] = ()

    @property
    def source(self) -> str:
        return self.sample.source

    @property
    def domain(self) -> str:
        return self.sample.domain

    @property
    def key(self) -> str:
        return self.sample.key

    def adding(self, candidates: Iterable[Candidate]) -> "CaptionRequest":
        return dataclasses.replace(self, candidates=(*self.candidates, *candidates))
