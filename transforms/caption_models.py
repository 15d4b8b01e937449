"""Optional caption sources for the caption stage: a CoCa captioner and RapidOCR, both as Beam model handlers.

Both take and return ``transforms.caption.CaptionRequest``: the request comes back with one more candidate (nothing
when the model read no text). ``CocaCaptionHandler`` uses open_clip's ``generate`` (beam search), which needs
``transformers<4.56`` (``pip install 'unishard[captioner]'``); its weights are found like the CLIP model's and never
downloaded during a run, and ``clip.smoke`` builds a tiny random CoCa instead. ``RapidOcrHandler`` uses
``rapidocr-onnxruntime`` (``pip install 'unishard[ocr]'``), whose ONNX models ship inside the wheel (Apache-2.0).
"""

import io
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import apache_beam as beam
from apache_beam.ml.inference.base import ModelHandler

from schemas.config.caption import CaptionerConfig, OcrConfig
from schemas.config.clip_model import ClipModelConfig
from schemas.records.caption import Candidate, CaptionRequest
from transforms.clip_model import build_open_clip, resolve_device, use_threads
from transforms.image_store import read_image
from transforms.model_weights import slug, tag_family

STAGE = "caption"
SMOKE_COCA = {
    "embed_dim": 64,
    "vision_cfg": {
        "image_size": 64,
        "layers": 2,
        "width": 64,
        "patch_size": 16,
        "head_width": 32,
        "attentional_pool": True,
        "attn_pooler_heads": 2,
        "output_tokens": True,
    },
    "text_cfg": {
        "context_length": 76,
        "vocab_size": 49408,
        "width": 64,
        "heads": 2,
        "layers": 2,
        "embed_cls": True,
        "output_tokens": True,
    },
    "multimodal_cfg": {"context_length": 76, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
}
_CAPTIONERS: dict[str, "CocaCaptioner"] = {}
_LOCK = threading.Lock()


def captioner_id(config: CaptionerConfig, smoke: bool) -> str:
    """The captioner's name in provenance records, known without loading it."""
    if smoke:
        return "coca_smoke_tiny_vit"
    suffix = slug(config.checkpoint.rsplit("/", 1)[-1]) if config.checkpoint else tag_family(config.pretrained or "")
    return "_".join(part for part in (slug(config.name), suffix) if part)


class CocaCaptioner:
    """A loaded CoCa model: ``caption(images)`` returns one caption per PIL image, in fixed-size padded passes."""

    def __init__(self, model: Any, preprocess: Any, model_id: str, device: str, config: CaptionerConfig):
        self.model_id = model_id
        self._model = model.to(device).eval()
        self._preprocess = preprocess
        self._device = device
        self._config = config

    def caption(self, images: Sequence[Any]) -> list[str]:
        import open_clip
        import torch

        size = self._config.batch_size
        pixels = torch.stack([self._preprocess(image.convert("RGB")) for image in images])
        texts = []
        with torch.inference_mode():
            for start in range(0, len(pixels), size):
                chunk = pixels[start : start + size]
                count = len(chunk)
                if count < size:
                    chunk = torch.cat([chunk, chunk.new_zeros((size - count, *chunk.shape[1:]))])
                tokens = self._model.generate(chunk.to(self._device), seq_len=self._config.max_tokens)
                for row in tokens[:count]:
                    text = open_clip.decode(row).split("<end_of_text>")[0].replace("<start_of_text>", "")
                    texts.append(text.strip())
        return texts


def load_captioner(config: CaptionerConfig, clip: ClipModelConfig) -> CocaCaptioner:
    """The CoCa captioner of ``config``, loaded once per process."""
    key = config.model_dump_json() + clip.model_dump_json()
    with _LOCK:
        if key not in _CAPTIONERS:
            smoke = SMOKE_COCA if clip.smoke else None
            use_threads(clip.threads)
            model, preprocess, _ = build_open_clip(
                config.name, config.pretrained, config.checkpoint, clip.cache_dir, smoke, "caption.captioner"
            )
            device = resolve_device("cpu" if clip.precision == "int8-dynamic" else clip.device)
            _CAPTIONERS[key] = CocaCaptioner(model, preprocess, captioner_id(config, clip.smoke), device, config)
        return _CAPTIONERS[key]


class CocaCaptionHandler(ModelHandler[CaptionRequest, CaptionRequest, Any]):
    """Adds a CoCa caption to each request (candidate source ``captioner:MODEL``).

    Args:
        config: The ``caption.captioner`` section.
        clip: The ``clip`` section (device, cache folder, smoke flag).
        model: An object with ``model_id`` and ``caption(images)`` used instead of loading CoCa (tests).
    """

    def __init__(self, config: CaptionerConfig, clip: ClipModelConfig, model: Any = None):
        super().__init__(min_batch_size=config.batch_size, max_batch_size=config.batch_size)
        self._config = config
        self._clip = clip
        self._model = model
        self._captions = beam.metrics.Metrics.counter(STAGE, "captioner_captions")

    def load_model(self) -> Any:
        return self._model if self._model is not None else load_captioner(self._config, self._clip)

    def run_inference(
        self, batch: Sequence[CaptionRequest], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[CaptionRequest]:
        from PIL import Image

        texts = model.caption([Image.open(io.BytesIO(read_image(request.sample))) for request in batch])
        self._captions.inc(len(batch))
        source = f"captioner:{model.model_id}"
        pairs = zip(batch, texts, strict=True)
        return [request.adding([Candidate(text, source)] if text else []) for request, text in pairs]

    def get_num_bytes(self, batch: Sequence[CaptionRequest]) -> int:
        return sum(request.sample.normalised.bytes for request in batch)

    def get_metrics_namespace(self) -> str:
        return STAGE


class RapidOcrReader:
    """RapidOCR with its bundled ONNX models: ``read(images)`` returns the confident text of each image."""

    def __init__(self, min_confidence: float):
        import importlib.metadata

        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()
        self._min_confidence = min_confidence
        self.model_id = "rapidocr_onnxruntime_" + slug(importlib.metadata.version("rapidocr-onnxruntime"))

    def read(self, images: Sequence[Any]) -> list[str]:
        import numpy as np

        texts = []
        for image in images:
            result, _ = self._engine(np.asarray(image.convert("RGB"))[:, :, ::-1])
            lines = [line[1] for line in result or [] if float(line[2]) >= self._min_confidence]
            texts.append(" ".join(lines))
        return texts


class RapidOcrHandler(ModelHandler[CaptionRequest, CaptionRequest, Any]):
    """Adds the text RapidOCR reads in each image (candidate source ``ocr:MODEL``).

    Args:
        config: The ``caption.ocr`` section.
        model: An object with ``model_id`` and ``read(images)`` used instead of RapidOCR (tests).
    """

    def __init__(self, config: OcrConfig, model: Any = None):
        super().__init__(min_batch_size=1, max_batch_size=8)
        self._config = config
        self._model = model

    def load_model(self) -> Any:
        return self._model if self._model is not None else RapidOcrReader(self._config.min_confidence)

    def run_inference(
        self, batch: Sequence[CaptionRequest], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[CaptionRequest]:
        from PIL import Image

        texts = model.read([Image.open(io.BytesIO(read_image(request.sample))) for request in batch])
        source = f"ocr:{model.model_id}"
        pairs = zip(batch, texts, strict=True)
        return [request.adding([Candidate(text, source)] if text else []) for request, text in pairs]

    def get_num_bytes(self, batch: Sequence[CaptionRequest]) -> int:
        return sum(request.sample.normalised.bytes for request in batch)

    def get_metrics_namespace(self) -> str:
        return STAGE
