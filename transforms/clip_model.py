"""The CLIP model every model stage shares: one open_clip image/text model per worker process.

``load_clip(config)`` returns a ``ClipModel`` with ``model_id`` (the name score fields carry, such as
``clip_vit_b_32_laion2b``), ``encode_images(list of PIL images)`` and ``encode_texts(list of str)``, both returning
float32 L2-normalised rows. Loaded models are cached per process and per config, so the embed stage, the caption
reranker and the zero-shot stages of one worker hold one copy, shared between threads.

Workers never download weights. ``transforms.model_weights.locate_weights`` finds them on local disk (a pretrained tag
or an ``hf-hub:ORG/NAME`` repository in the hub cache or ``cache_dir``, a checkpoint file, or a ``local-dir:`` folder)
and raises ``ModelUnavailable`` with a message saying where it looked and how to provide them. The launcher calls it
before reading any data, after fetching what is missing from the hub (``pipeline/models_fetch.py``; ``hub_files`` says
which repository and files), then calls ``forbid_downloads``; workers call it again before loading. ``smoke = true``
builds a small randomly initialised model of the same family (a tiny ViT CLIP, seeded, identical in every process) for
offline checks; its id contains ``smoke`` and its scores mean nothing.

Determinism: row results of a CPU forward pass depend on the batch size (different GEMM kernels), so every forward
pass has a fixed size and partial batches are padded; results never depend on how Beam batched the elements.
PyTorch's int8 dynamic quantization scales activations per tensor, so an image's result would depend on its batch
companions; ``int8-dynamic`` here quantizes each activation row (token) with its own scale instead
(``transforms/_int8_rows.py``), which keeps batching and is exactly batch-independent (integer accumulation). Results
also depend on torch's thread count (fp32 ViT-B-32 image rows changed between 1, 2 and 4 threads), which
``clip.threads`` fixes in every worker process (1 by default; ``use_threads``).

``transforms.clip_lookup.LookupClipModel`` is a deterministic stand-in with the same interface for tests.
"""

import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from schemas.config.clip_model import ClipModelConfig
from transforms.model_weights import HF_HUB_PREFIX, clip_model_id, forbid_downloads, locate_weights

_LOG = logging.getLogger(__name__)
IMAGE_BATCH = 16
TEXT_BATCH = 32
TEXT_CACHE_SIZE = 20_000
SMOKE_SEED = 1234
SMOKE_CLIP = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}


def build_open_clip(
    name: str,
    pretrained: str | None,
    checkpoint: str | None,
    cache_dir: str | None,
    smoke_cfg: dict | None,
    section: str,
) -> tuple[Any, Callable, Callable]:
    """Build an open_clip model in fp32 on CPU, eval mode: ``(model, preprocess, tokenizer)``.

    With ``smoke_cfg`` the model is built from that architecture dict with seeded random weights.
    """
    forbid_downloads()
    import open_clip
    import torch

    if smoke_cfg is not None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(SMOKE_SEED)
            cls = open_clip.CoCa if "multimodal_cfg" in smoke_cfg else open_clip.CLIP
            model = cls(**smoke_cfg)
        size = smoke_cfg["vision_cfg"]["image_size"]
        preprocess = open_clip.image_transform(size, is_train=False)
        return model.eval(), preprocess, open_clip.get_tokenizer("ViT-B-32")
    weights = locate_weights(name, pretrained, checkpoint, cache_dir, section)
    if name.startswith(HF_HUB_PREFIX):
        name, weights = f"local-dir:{Path(weights).parent}", None
    options: dict[str, Any] = {}
    if weights and pretrained and not checkpoint:
        from open_clip import pretrained as oc_pretrained

        tag_cfg = oc_pretrained.get_pretrained_cfg(name, pretrained)
        options["force_quick_gelu"] = bool(tag_cfg.get("quick_gelu", False))
        preprocess_keys = ("mean", "std", "interpolation", "resize_mode")
        options["force_preprocess_cfg"] = {k: tag_cfg[k] for k in preprocess_keys if tag_cfg.get(k) is not None}
    model, _, preprocess = open_clip.create_model_and_transforms(
        name, pretrained=weights, cache_dir=cache_dir, pretrained_text=False, **options
    )
    return model.eval(), preprocess, open_clip.get_tokenizer(name, cache_dir=cache_dir)


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class ClipModel:
    """An open_clip model ready for inference: fixed-size forward passes, unit-norm float32 outputs.

    Thread-safe: forward passes hold no state, and the text cache is guarded by a lock.

    Attributes:
        model_id: Name of the model in score fields (``clip_vit_b_32_laion2b``).
        precision: ``fp32``, ``bf16`` or ``int8-dynamic`` (image tower only; text stays fp32).
        device: ``cpu`` or ``cuda``.
        image_batch: Images per forward pass (partial passes are padded to it).
    """

    def __init__(
        self,
        model: Any,
        preprocess: Callable,
        tokenizer: Callable,
        model_id: str,
        device: str = "cpu",
        precision: str = "fp32",
        image_batch: int = IMAGE_BATCH,
        text_batch: int = TEXT_BATCH,
    ):
        import torch

        self.model_id = model_id
        self.device = device
        self.precision = precision
        self._preprocess = preprocess
        self._tokenizer = tokenizer
        self._dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = model.to(device=device, dtype=self._dtype).eval()
        if precision == "int8-dynamic":
            from transforms._int8_rows import quantize_rows

            model.visual = quantize_rows(model.visual)
        self._model = model
        self.image_batch = image_batch
        self.text_batch = text_batch
        self._text_cache: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()
        # One row, not a cached padded pass of text_batch rows (ViT-B-32: 2.7 CPU-s for 32 texts).
        self.embed_dim = int(self._fixed_passes(self._tokenizer(["a photo"]), 1, self._model.encode_text).shape[1])

    def preprocess(self, images: Sequence[Any]) -> Any:
        """The model's input tensor for PIL images (resized, cropped, normalised), on CPU in float32."""
        import torch

        return torch.stack([self._preprocess(image.convert("RGB")) for image in images])

    def encode_pixels(self, pixels: Any, batch_size: int | None = None) -> np.ndarray:
        """Unit-norm embeddings of preprocessed images, in passes of exactly ``batch_size`` (padded with zeros)."""
        size = batch_size or self.image_batch
        return self._fixed_passes(pixels, size, self._model.encode_image)

    def encode_images(self, images: Sequence[Any], batch_size: int | None = None) -> np.ndarray:
        """Unit-norm float32 embeddings of PIL images, one row per image."""
        if not images:
            return np.zeros((0, getattr(self, "embed_dim", 0)), np.float32)
        return self.encode_pixels(self.preprocess(images), batch_size)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm float32 embeddings of texts (truncated to the context length), cached per process."""
        texts = list(texts)
        with self._lock:
            known = {t: self._text_cache[t] for t in set(texts) if t in self._text_cache}
        missing = sorted(set(texts) - known.keys())
        if missing:
            vectors = self._fixed_passes(self._tokenizer(missing), self.text_batch, self._model.encode_text)
            known.update(zip(missing, vectors, strict=True))
            with self._lock:
                for text, vector in zip(missing, vectors, strict=True):
                    if len(self._text_cache) >= TEXT_CACHE_SIZE:
                        self._text_cache.pop(next(iter(self._text_cache)))
                    self._text_cache[text] = vector
        if not texts:
            return np.zeros((0, self.embed_dim), np.float32)
        return np.stack([known[t] for t in texts])

    def _fixed_passes(self, inputs: Any, size: int, forward: Callable) -> np.ndarray:
        import torch

        rows = []
        with torch.inference_mode():
            for start in range(0, len(inputs), size):
                chunk = inputs[start : start + size]
                count = len(chunk)
                if count < size:
                    chunk = torch.cat([chunk, chunk.new_zeros((size - count, *chunk.shape[1:]))])
                chunk = chunk.to(self.device)
                if chunk.is_floating_point():
                    chunk = chunk.to(self._dtype)
                features = forward(chunk)[:count].float()
                rows.append(torch.nn.functional.normalize(features, dim=-1).cpu().numpy())
        return np.concatenate(rows).astype(np.float32, copy=False)


_CACHE: dict[str, ClipModel] = {}
_CACHE_LOCK = threading.Lock()


def use_threads(threads: int) -> None:
    """Set torch's intra-op threads for this process (``clip.threads``; 0 leaves torch's default).

    Measured here: two worker processes on two cores with torch's default of one thread per core each encoded
    ViT-B-32 images at half the rate of two single-threaded ones, the threads spinning while they wait for each
    other. And a thread count is part of an embedding's bits: the image rows of a random ViT-B-32 (4 photos, one
    pass) changed between 1, 2 and 4 threads, so one fixed count keeps outputs the same on every machine.
    """
    if threads:
        import torch

        torch.set_num_threads(threads)


def load_clip(config: ClipModelConfig, cache: bool = True) -> ClipModel:
    """The ``ClipModel`` described by ``config``, loaded once per process (unless ``cache`` is false).

    Raises:
        ModelUnavailable: The weights are not on this machine.
    """
    key = config.model_dump_json()
    with _CACHE_LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        use_threads(config.threads)
        device = resolve_device(config.device)
        precision = config.precision
        if precision == "int8-dynamic" and device != "cpu":
            device = "cpu"
        model, preprocess, tokenizer = build_open_clip(
            config.name,
            config.pretrained,
            config.checkpoint,
            config.cache_dir,
            SMOKE_CLIP if config.smoke else None,
            "clip",
        )
        loaded = ClipModel(model, preprocess, tokenizer, clip_model_id(config), device, precision)
        _LOG.info("loaded %s on %s (%s)", loaded.model_id, device, precision)
        if cache:
            _CACHE[key] = loaded
        return loaded
