"""The CLIP model every model stage shares: one open_clip image/text model per worker process.

``load_clip(config)`` returns a ``ClipModel`` with ``model_id`` (the name score fields carry, such as
``clip_vit_b_32_laion2b``), ``encode_images(list of PIL images)`` and ``encode_texts(list of str)``, both returning
float32 L2-normalised rows. Loaded models are cached per process and per config, so the embed stage, the caption
reranker and the zero-shot stages of one worker hold one copy, shared between threads.

Workers never download weights. ``locate_weights`` finds them on local disk (a pretrained tag or an ``hf-hub:ORG/NAME``
repository in the hub cache or ``cache_dir``, a checkpoint file, or a ``local-dir:`` folder) and raises
``ModelUnavailable`` with a message saying where it looked and how to provide them. The launcher calls it before
reading any data, after fetching what is missing from the hub (``pipeline/models_fetch.py``; ``hub_files`` says which
repository and files), then calls ``forbid_downloads``; workers call it again before loading. ``smoke = true``
builds a small randomly initialised model of the same family (a tiny ViT CLIP, seeded, identical in every process)
for offline checks; its id contains ``smoke`` and its scores mean nothing.

Determinism: row results of a CPU forward pass depend on the batch size (different GEMM kernels), so every forward
pass has a fixed size and partial batches are padded; results never depend on how Beam batched the elements.
PyTorch's int8 dynamic quantization scales activations per tensor, so an image's result would depend on its batch
companions; ``int8-dynamic`` here quantizes each activation row (token) with its own scale instead
(``transforms/_int8_rows.py``), which keeps batching and is exactly batch-independent (integer accumulation). bf16
results also depend on the thread count: set ``clip.threads`` when bf16 outputs must match across machines.

``LookupClipModel`` is a deterministic stand-in with the same interface for tests.
"""

import hashlib
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from schemas.config.clip_model import ClipModelConfig

__all__ = [
    "ClipModel",
    "ClipModelConfig",
    "LookupClipModel",
    "ModelUnavailable",
    "clip_model_id",
    "load_clip",
    "locate_weights",
]

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
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
HF_HUB_PREFIX = "hf-hub:"
HF_CONFIG_FILE = "open_clip_config.json"
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_TRAINING_SIZE = re.compile(r"^([sbe]\d+[a-z]?|\d+[kmb]?)$")


class ModelUnavailable(RuntimeError):
    """Weights of a configured model are not on this machine; the message says where we looked and what to do."""


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def tag_family(tag: str) -> str:
    """The data part of a pretrained tag: ``laion2b_s34b_b79k`` -> ``laion2b``, ``datacomp_xl_s13b_b90k`` ->
    ``datacomp_xl``."""
    parts = []
    for part in slug(tag).split("_"):
        if _TRAINING_SIZE.match(part) and parts:
            break
        parts.append(part)
    return "_".join(parts)


def clip_model_id(config: ClipModelConfig, prefix: str = "clip") -> str:
    """The name of the configured model in score fields and annotations, known without loading it."""
    if config.model_id:
        return config.model_id
    if config.smoke:
        return f"{prefix}_smoke_tiny_vit"
    if config.name.startswith("local-dir:"):
        return f"{prefix}_{slug(Path(config.name[len('local-dir:') :]).name)}"
    if config.name.startswith(HF_HUB_PREFIX):
        return f"{prefix}_{slug(config.name.rsplit('/', 1)[-1])}"
    if config.checkpoint:
        return f"{prefix}_{slug(config.name)}_{slug(Path(config.checkpoint).stem)}"
    if config.pretrained:
        return f"{prefix}_{slug(config.name)}_{tag_family(config.pretrained)}"
    return f"{prefix}_{slug(config.name)}"


def forbid_downloads() -> None:
    """Make the hub library refuse the network in this process and in the worker processes it starts."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    constants = sys.modules.get("huggingface_hub.constants")
    if constants is not None:
        constants.HF_HUB_OFFLINE = True


@dataclass(frozen=True)
class HubFiles:
    """Where a model's weights live on the Hugging Face hub.

    Attributes:
        repo: The hub repository, ``ORG/NAME``.
        required: Files that must all be there (``open_clip_config.json`` for an ``hf-hub:`` model).
        weights: Candidate weights files, preferred first; the first one the repository holds is used.
    """

    repo: str
    required: tuple[str, ...]
    weights: tuple[str, ...]


def hub_files(name: str, pretrained: str | None, section: str = "clip") -> HubFiles | None:
    """The hub repository and files of ``name`` (``hf-hub:ORG/NAME``, or an open_clip name with a pretrained tag).

    ``None`` for a tag whose weights are a plain URL rather than a hub repository. Reads no disk and no network.

    Raises:
        ModelUnavailable: ``pretrained`` is not a tag open_clip knows for ``name``; the message lists the known tags.
    """
    if name.startswith(HF_HUB_PREFIX):
        return HubFiles(repo=name[len(HF_HUB_PREFIX) :], required=(HF_CONFIG_FILE,), weights=HF_WEIGHT_FILES)
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(name, pretrained)
    if not cfg:
        tags = oc_pretrained.list_pretrained_tags_by_model(name)
        raise ModelUnavailable(
            f"{section}: {pretrained!r} is not a pretrained tag of open_clip model {name!r}; known tags: "
            f"{', '.join(tags) or 'none (is the model name right?)'}"
        )
    if not cfg.get("hf_hub"):
        return None
    repo, filename = os.path.split(cfg["hf_hub"])
    names = [filename] if filename else list(HF_WEIGHT_FILES)
    if filename.endswith((".bin", ".pth")):
        names.insert(0, filename[:-4] + ".safetensors")
    return HubFiles(repo=repo, required=(), weights=tuple(names))


def how_to_provide(name: str, pretrained: str | None, section: str) -> str:
    fetch = f"unishard models fetch {name}" + (f" --pretrained {pretrained}" if pretrained else "")
    cache_key = "clip.cache_dir"  # one cache folder serves every model of a run
    return (
        "  to provide it:\n"
        f"    - on a machine with internet access run `{fetch} --cache-dir DIR`, copy DIR to this machine and add "
        f"`--set {cache_key}=DIR`;\n"
        f"    - or point to a weights file for the {name} architecture: `--set {section}.checkpoint=PATH`;\n"
        "    - or check the pipeline offline with random weights (outputs not meaningful): `--smoke-models`."
    )


def locate_weights(
    name: str, pretrained: str | None, checkpoint: str | None, cache_dir: str | None, section: str = "clip"
) -> str | None:
    """The local weights file of a model, or ``None`` for a ``local-dir:`` folder (open_clip reads it itself).

    An ``hf-hub:`` model's weights file lies beside its ``open_clip_config.json`` in the cache. Only local disk is
    read. Raises:
        ModelUnavailable: The weights are not there; the message names the model, the places looked in and how to
            provide the weights.
    """
    tagged = pretrained and not checkpoint and not name.startswith((HF_HUB_PREFIX, "local-dir:"))
    what = f"model {name}" + (f" (pretrained {pretrained})" if tagged else "")
    if name.startswith("local-dir:"):
        folder = Path(name[len("local-dir:") :])
        weights = [p for p in folder.glob("*") if p.suffix in _WEIGHT_SUFFIXES] if folder.is_dir() else []
        if (folder / "open_clip_config.json").is_file() and weights:
            return None
        raise ModelUnavailable(
            f"{section}: {what} is not available: {folder} must be a folder holding open_clip_config.json and a "
            f"weights file (.safetensors, .bin or .pth).\n{how_to_provide(name, None, section)}"
        )
    hub_repo = name.startswith(HF_HUB_PREFIX)  # the repository is the name: no tag, no checkpoint
    if checkpoint and not hub_repo:
        if Path(checkpoint).is_file():
            return checkpoint
        raise ModelUnavailable(
            f"{section}: weights file {checkpoint} for {what} does not exist.\n{how_to_provide(name, None, section)}"
        )
    tag = None if hub_repo else pretrained
    if not hub_repo and not tag:
        raise ModelUnavailable(f"{section}: {what} has no weights configured.\n{how_to_provide(name, None, section)}")
    path, looked = _cached_pretrained(name, tag, cache_dir, section)
    if path:
        return path
    raise ModelUnavailable(
        f"{section}: {what} is not available on this machine.\n"
        f"  looked in: {looked}\n{how_to_provide(name, tag, section)}"
    )


def _cached_pretrained(name: str, tag: str | None, cache_dir: str | None, section: str) -> tuple[str | None, str]:
    files = hub_files(name, tag, section)
    if files:
        from huggingface_hub import constants as hub_constants
        from huggingface_hub import try_to_load_from_cache

        looked = f"{cache_dir or hub_constants.HF_HUB_CACHE} (hub repo {files.repo}, files "
        looked += " and ".join([*files.required, " or ".join(files.weights)]) + ")"
        cached = [try_to_load_from_cache(files.repo, required, cache_dir=cache_dir) for required in files.required]
        if not all(isinstance(found, str) for found in cached):
            return None, looked
        for candidate in files.weights:
            found = try_to_load_from_cache(files.repo, candidate, cache_dir=cache_dir)
            if isinstance(found, str):
                return found, ""
        return None, looked
    from open_clip import pretrained as oc_pretrained

    cfg = oc_pretrained.get_pretrained_cfg(name, tag)
    folder = cache_dir or os.path.expanduser("~/.cache/clip")
    target = os.path.join(folder, os.path.basename(cfg.get("url", "")))
    return (target if os.path.isfile(target) else None), target


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
        self.embed_dim = int(self.encode_texts(["a photo"]).shape[1])

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


def load_clip(config: ClipModelConfig, cache: bool = True) -> ClipModel:
    """The ``ClipModel`` described by ``config``, loaded once per process (unless ``cache`` is false).

    Raises:
        ModelUnavailable: The weights are not on this machine.
    """
    key = config.model_dump_json()
    with _CACHE_LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        import torch

        if config.threads:
            torch.set_num_threads(config.threads)
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
