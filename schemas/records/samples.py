"""``Sample``: a decoded, normalised image with everything later stages attach, and ``ImageInfo`` about an
encoding."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from schemas.compact import hex_bytes, hex_map_bytes, hex_map_text, hex_text, packed, unpacked


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
