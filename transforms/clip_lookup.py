"""``LookupClipModel``: a deterministic stand-in for ``transforms.clip_model.ClipModel``, for tests and benchmarks.

The same interface (``model_id``, ``embed_dim``, ``encode_images``, ``encode_texts``), no torch, no weights.
"""

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np


class LookupClipModel:
    """A deterministic stand-in for ``ClipModel``: texts from a lookup table, images from their mean colour.

    A text in ``texts`` gets its vector (zero-padded to ``dim``); any other text a pseudo-random one seeded by its
    SHA-256. An image's vector is its mean RGB (in 0..1, centred on 0.5) in the first three dimensions, plus a small
    constant, so solid red, green and blue pictures are near the axes. Every output row is L2-normalised.
    ``image_encodes`` and ``text_encodes`` count the inputs encoded by this instance.
    """

    def __init__(self, texts: dict[str, Sequence[float]] | None = None, dim: int = 8, model_id: str = "clip_lookup"):
        self.model_id = model_id
        self.embed_dim = dim
        self._texts = {text: _unit(_padded(v, dim)) for text, v in (texts or {}).items()}
        self.image_encodes = 0
        self.text_encodes = 0

    def encode_images(self, images: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        self.image_encodes += len(images)
        rows = []
        for image in images:
            mean = np.asarray(image.convert("RGB"), np.float32).reshape(-1, 3).mean(axis=0) / 255.0 - 0.5
            vector = np.full(self.embed_dim, 0.01, np.float32)
            vector[:3] = mean
            rows.append(_unit(vector))
        return np.stack(rows) if rows else np.zeros((0, self.embed_dim), np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.text_encodes += len(texts)
        rows = [self._texts.get(text) if text in self._texts else _hashed(text, self.embed_dim) for text in texts]
        return np.stack(rows) if rows else np.zeros((0, self.embed_dim), np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return (vector / norm if norm > 0 else vector).astype(np.float32)


def _padded(values: Sequence[float], dim: int) -> np.ndarray:
    vector = np.zeros(dim, np.float32)
    vector[: min(dim, len(values))] = np.asarray(values, np.float32)[:dim]
    return vector


def _hashed(text: str, dim: int) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")
    return _unit(np.random.default_rng(seed).standard_normal(dim).astype(np.float32))
