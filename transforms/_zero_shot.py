"""CLIP zero-shot classification on stored image embeddings, for the safety filter and the bias audit.

Image embeddings are never recomputed here: they come from ``Sample.embedding`` (float16 bytes of an L2-normalised
vector, written by the embed stage). Prompt embeddings come from ``ClipModel.encode_texts`` of the same model, once
per worker: the ``PromptBank`` is built in ``DoFn.setup`` through a ``Shared`` handle, and the model is released
once the prompts are encoded. A class with several prompts is their ensemble: the normalised mean of the
normalised prompt embeddings (Radford et al., 2021).
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

import numpy as np


class TextEncoder(Protocol):
    """What zero-shot needs of a CLIP model: ``ClipModel`` or a fake with the same attributes."""

    model_id: str

    def encode_texts(self, texts: list[str]) -> np.ndarray: ...


class PromptBank:
    """Embeddings of a fixed set of prompts from one model, keyed by prompt text."""

    def __init__(self, model: TextEncoder, prompts: Iterable[str]):
        texts = sorted(set(prompts))
        vectors = np.asarray(model.encode_texts(texts), dtype=np.float32) if texts else np.zeros((0, 1), np.float32)
        self.model_id = str(model.model_id)
        self._vectors = {text: _unit(vector) for text, vector in zip(texts, vectors, strict=True)}

    def vector(self, prompt: str) -> np.ndarray:
        return self._vectors[prompt]

    def ensemble(self, prompts: Iterable[str]) -> np.ndarray:
        """The normalised mean of the prompts' embeddings."""
        return _unit(np.mean([self._vectors[p] for p in prompts], axis=0))

    def classes(self, groups: Mapping[str, Iterable[str]]) -> tuple[list[str], np.ndarray]:
        """Sorted group names and their ensemble vectors as rows."""
        names = sorted(groups)
        return names, np.stack([self.ensemble(groups[name]) for name in names])


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def decode_embedding(data: bytes) -> np.ndarray:
    """The float32 unit vector stored as float16 bytes in ``Sample.embedding``."""
    return _unit(np.frombuffer(data, dtype=np.float16).astype(np.float32))


def probabilities(embedding: np.ndarray, classes: np.ndarray, logit_scale: float) -> np.ndarray:
    """Zero-shot class probabilities: softmax of ``logit_scale`` times the cosine similarities."""
    logits = logit_scale * (classes @ embedding).astype(np.float64)
    logits -= logits.max()
    weights = np.exp(logits)
    return weights / weights.sum()


def classify(
    embedding: np.ndarray, names: list[str], classes: np.ndarray, logit_scale: float, margin: float
) -> tuple[str | None, float]:
    """The most probable group and its lead over the second, or ``None`` when the lead is below ``margin``."""
    probs = probabilities(embedding, classes, logit_scale)
    order = np.argsort(-probs, kind="stable")
    lead = float(probs[order[0]] - (probs[order[1]] if len(order) > 1 else 0.0))
    return (names[int(order[0])] if lead >= margin else None), lead


def acquire_bank(shared: Any, load: Callable[[], TextEncoder], prompts: list[str], tag: str) -> PromptBank:
    """The worker's ``PromptBank`` for ``prompts``: built once through ``shared`` (a Beam ``Shared`` handle)."""
    return shared.acquire(lambda: PromptBank(load(), prompts), tag=tag)


def model_loader(clip: Any, model: TextEncoder | None) -> Callable[[], TextEncoder] | None:
    """A function returning the injected ``model``, or loading the configured CLIP model; ``None`` when neither."""
    if model is not None:
        return lambda: model
    if clip is None:
        return None

    def load() -> TextEncoder:
        from transforms.clip_model import load_clip

        return load_clip(clip)

    return load
