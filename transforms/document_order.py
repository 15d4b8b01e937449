"""How a document's segments are ordered: positions, MMC4-style placement, and texts that repeat.

Pure functions used by ``transforms/documents.py``. A segment's sort key (``order``) puts positioned segments first
by ``documents.position_field`` and, at one position, text rows before images, then sources in order. Images
without a position are placed MMC4's way (``place_unpositioned``, linear assignment of CLIP similarities in
``transforms/placement.py``) before the sentence they match best, when the document has text rows and the images
have embeddings of the text encoder's model; otherwise the caller appends them in source order and the reason is
recorded in the document's ``placement``. ``deduplicated`` drops empty texts and a text equal to the one before it.
"""

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from schemas.config.documents import DocumentsConfig
from schemas.documents import DocumentImage, LeftImage, Segment
from schemas.records.values import blank
from transforms import placement
from transforms.text import clean_text

MAX_TEXT_CHARS = 100_000


@dataclasses.dataclass(frozen=True)
class TextPiece:
    """A text row as a document sees it."""

    source: str
    domain: str
    position: float | None
    text: str
    metadata: Mapping[str, Any]


def position_of(metadata: Mapping[str, Any], field: str) -> float | None:
    """The numeric position of a segment, or ``None`` when absent or not a finite number (``bad_position`` says
    which values are not)."""
    value = metadata.get(field)
    if blank(value) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def bad_position(metadata: Mapping[str, Any], field: str) -> str:
    """A message when ``field`` holds a value that is not a position (``2,5``, ``3a``), else ``""``: such a segment
    is placed as one without a position, so a person must hear of it."""
    value = metadata.get(field)
    if blank(value) or position_of(metadata, field) is not None:
        return ""
    hint = f" (write {str(value).replace(',', '.')})" if re.fullmatch(r"-?\d+,\d+", str(value).strip()) else ""
    return f"{field} {str(value)!r} is not a number{hint}, so it is placed as a segment without a position"


def first_text(metadata: Mapping[str, Any], fields: list[str]) -> str:
    """The first of ``fields`` holding text, cleaned and cut at ``MAX_TEXT_CHARS``; ``""`` when none does."""
    for field in fields:
        if text := clean_text(metadata.get(field) or "", MAX_TEXT_CHARS):
            return text
    return ""


def order(position: float | None, rank: int, source: str, sub: int = 0) -> tuple:
    """The sort key of a segment: positioned first, by position; at one position texts (rank 0) before images
    (rank 1), then in source order (``source_order``) and by ``sub`` (a sentence's or a note's place within its
    row)."""
    return (position is None, position if position is not None else 0.0, rank, source_order(source), sub)


def source_order(source: str) -> tuple:
    """``source`` as a person orders sources: numbers by value, so row ``m.csv#10`` comes after ``m.csv#9`` and
    ``view10.jpg`` after ``view9.jpg`` (as text, 10 came first)."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(re.split(r"(\d+)", source)))


def image_segments(image: DocumentImage, config: DocumentsConfig, similarity: float | None = None) -> list[Segment]:
    """An image's segment, followed by its own note (``documents.image_text_fields``) when it has one."""
    if similarity is None and isinstance(image.metadata.get("placement_similarity"), int | float):
        # Placed before unishard saw it (MMC4's matched_sim): the similarity travels with the image.
        similarity = float(image.metadata["placement_similarity"])
    segments = [Segment("image", image=image, similarity=similarity)]
    if note := first_text(image.metadata, config.image_text_fields):
        segments.append(Segment("text", text=note))
    return segments


def place_unpositioned(
    unpositioned: list[DocumentImage],
    texts: list[TextPiece],
    config: DocumentsConfig,
    encoder_of: Callable[[], placement.TextEncoder | None],
) -> tuple[list[tuple[tuple, Segment]] | None, list[LeftImage], dict[str, Any]]:
    """Place images without a position into the document's sentences; ``None`` when placement cannot run."""
    why = ""
    models = {image.embedding_model for image in unpositioned}
    if not config.placement.enabled:
        why = "documents.placement.enabled is false"
    elif not any(piece.text for piece in texts):
        why = "the document has no text rows to place images into"
    elif any(image.embedding is None for image in unpositioned) or len(models) != 1:
        why = "the images have no embedding from one model (no embed stage ran)"
    if not why:
        encoder = encoder_of()
        if encoder is None:
            why = "no text encoder is configured"
        elif encoder.model_id != next(iter(models)):
            why = f"the text encoder {encoder.model_id!r} is not the image embedding model {next(iter(models))!r}"
    if why:
        return None, [], {"unpositioned": f"appended in source order: {why}"}
    sentences: list[tuple[tuple, str]] = []
    for piece in texts:
        for index, sentence in enumerate(placement.split_sentences(piece.text)):
            sentences.append((order(piece.position, 0, piece.source, 2 * index + 1), sentence))
    assignments = placement.place(
        [image.embedding for image in unpositioned],
        [s for _, s in sentences],
        encoder,
        config.placement.min_similarity,
    )
    entries = [(order, Segment("text", text=sentence)) for order, sentence in sentences]
    left = []
    for assignment, image in zip(assignments, unpositioned, strict=True):
        if assignment.sentence is None:
            left.append(LeftImage(image.source, image.key, placement.STAGE, assignment.reason))
            continue
        # Before its sentence, as OpenFlamingo reads MMC4; the image's own note follows it.
        *where, sub = sentences[assignment.sentence][0]
        for offset, segment in enumerate(image_segments(image, config, assignment.similarity)):
            entries.append(((*where, sub - 1, offset), segment))
    detail = {
        "method": placement.METHOD,
        "model": encoder.model_id,
        "min_similarity": config.placement.min_similarity,
        "sentences": len(sentences),
    }
    return entries, left, detail


def deduplicated(segments: list[Segment]) -> list[Segment]:
    """Drop empty texts and a text equal to the previous text (one note repeated for each camera view)."""
    result: list[Segment] = []
    previous = None
    for segment in segments:
        if segment.kind == "text":
            if not segment.text or segment.text == previous:
                continue
            previous = segment.text
        result.append(segment)
    return result
