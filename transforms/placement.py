"""Placement: put images whose position is unknown into a document's text, MMC4's way.

MMC4 (Zhu et al., 2023) computes the CLIP similarity between every image and every sentence of a page and assigns
images to sentences with a linear assignment (``scipy.optimize.linear_sum_assignment``, maximising the total
similarity, each sentence taking at most one image); OpenFlamingo then inserts each image before its sentence and
drops images matched below a minimum similarity. This module is that method as pure functions, called by
``transforms/documents.py`` for documents whose images have no position. Measure, then decide: every placed image
records its similarity, and images left out say why (``image_below_min_similarity``, ``image_unplaced``).

Image embeddings are the float16 L2-normalised vectors in ``Sample.embedding`` (model id in
``Sample.annotations["embedding_model"]``); sentence embeddings come from ``ClipModel.encode_texts`` of the same
model (``transforms/clip_model.py``), or an injected object with the same method. Config: ``documents.placement``.
"""

import dataclasses
import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from schemas import reasons

STAGE = "placement"
METHOD = "clip_linear_assignment"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


class TextEncoder(Protocol):
    """What placement needs of a CLIP model: ``ClipModel`` or a fake with the same attributes."""

    model_id: str

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class Assignment:
    """Where one image went: the index of its sentence, or ``None`` with the reason it was left out."""

    image: int
    sentence: int | None
    similarity: float | None
    reason: str = ""


def split_sentences(text: str) -> list[str]:
    """Split text into sentences at ``.``, ``!`` or ``?`` followed by whitespace; empty pieces are dropped."""
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


def decode_embedding(data: bytes) -> np.ndarray:
    """A ``Sample.embedding`` (float16 bytes) as a float32 unit vector."""
    vector = np.frombuffer(data, dtype=np.float16).astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def similarity_matrix(image_embeddings: np.ndarray, text_embeddings: np.ndarray) -> np.ndarray:
    """Cosine similarity, images by sentences (rows are L2-normalised first, so any scale is accepted)."""

    def unit(rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        return rows / np.where(norms > 0, norms, 1.0)

    return unit(image_embeddings) @ unit(text_embeddings).T


def assign(similarity: np.ndarray, min_similarity: float) -> list[Assignment]:
    """Assign images (rows) to sentences (columns) maximising the total similarity, one image per sentence.

    Ties resolve the same way on every run (``linear_sum_assignment`` is deterministic). An image left without a
    sentence (more images than sentences) gets ``image_unplaced``; an assignment below ``min_similarity`` gets
    ``image_below_min_similarity`` and keeps its similarity, so the threshold can be re-tuned from the ledger.
    """
    similarity = np.asarray(similarity, dtype=np.float64)
    images = similarity.shape[0]
    matched: dict[int, int] = {}
    if similarity.size:
        rows, columns = linear_sum_assignment(similarity, maximize=True)
        matched = dict(zip(rows.tolist(), columns.tolist(), strict=True))
    result = []
    for image in range(images):
        if image not in matched:
            result.append(Assignment(image, None, None, reasons.IMAGE_UNPLACED))
            continue
        score = round(float(similarity[image, matched[image]]), 6)
        if score < min_similarity:
            result.append(Assignment(image, None, score, reasons.IMAGE_BELOW_MIN_SIMILARITY))
        else:
            result.append(Assignment(image, matched[image], score))
    return result


def place(
    image_embeddings: Sequence[bytes], sentences: list[str], encoder: TextEncoder, min_similarity: float
) -> list[Assignment]:
    """Embed ``sentences`` with ``encoder`` and assign the images (``Sample.embedding`` bytes) to them."""
    if not image_embeddings:
        return []
    if not sentences:
        return [Assignment(index, None, None, reasons.IMAGE_UNPLACED) for index in range(len(image_embeddings))]
    images = np.stack([decode_embedding(data) for data in image_embeddings])
    texts = np.asarray(encoder.encode_texts(list(sentences)), dtype=np.float32)
    if texts.shape[1] != images.shape[1]:
        raise ValueError(
            f"text embeddings have {texts.shape[1]} dimensions and image embeddings {images.shape[1]}: the text "
            f"encoder {encoder.model_id!r} is not the model that embedded the images"
        )
    return assign(similarity_matrix(images, texts), min_similarity)
