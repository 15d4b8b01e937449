"""Caption: give every sample the caption that best matches its image, chosen by CLIP from grounded candidates.

Input element type: ``Sample`` carrying its image embedding (the embed stage). Outputs: ``samples`` and ``rejected``
(ledger rows). Candidates, in this order (the order breaks score ties):

1. the text the ``text`` stage chose from the metadata (``caption.include_text``), provenance ``metadata.FIELD``;
2. per-domain templates over metadata fields (``caption.templates``; ``default`` for other domains), provenance
   ``template:DOMAIN[i]``; a template renders only when every field it names has text;
3. a captioning model's caption (CoCa through open_clip, ``caption.captioner``), provenance ``captioner:MODEL``;
4. text read from the image by OCR (RapidOCR, ``caption.ocr``), provenance ``ocr:MODEL``.

Every candidate is cleaned like the text stage's text (``transforms.text.clean_text``: HTML stripped, entities
unescaped, whitespace collapsed, cut at ``caption.max_chars``); shorter than ``caption.min_chars`` is not usable.
The candidates are reranked by cosine similarity between their CLIP text embedding and the stored image embedding
(no image is encoded here). The sample's ``text`` becomes the best candidate, ``text_source`` its provenance,
``scores[<clip model id>]`` its similarity (the CLIP score the filter reads), and ``annotations["caption"]`` records
the model, the chosen caption, every candidate with its score, and the source text with its raw metadata value.

Reason codes: ``no_caption`` (no usable candidate and no captioner; only when ``caption.required``), ``exception``
(failed rows of a batch whose model raised). Config sections: ``caption``, ``clip``. Metrics: ``caption/reranked``,
``caption/candidates`` (distribution), ``caption/rejected``, ``caption/failed``.
"""

import dataclasses
import string
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import ModelHandler, RunInference

from schemas import reasons
from schemas.config.caption import CaptionConfig
from schemas.config.clip_model import ClipModelConfig
from schemas.records.caption import Candidate, CaptionRequest
from schemas.records.ledger import RejectItem
from schemas.records.samples import Sample
from schemas.records.values import blank
from transforms._common import StageFn, apply_stage
from transforms.embed import EMBEDDING_MODEL, decode_embedding, failed_rows
from transforms.text import clean_text, field_value, file_name

STAGE = "caption"
ANNOTATION = "caption"


class CaptionOutputs(NamedTuple):
    samples: beam.PCollection
    rejected: beam.PCollection


class Caption(beam.PTransform):
    """Gather caption candidates, then keep the one CLIP finds closest to the image.

    Args:
        config: The ``caption`` section.
        clip: The ``clip`` section (the reranking model; its ``smoke`` flag also applies to the captioner).
        rerank_handler: Used instead of ``OpenClipRerankHandler`` (tests inject one holding a fake model).
        captioner_handler: Used instead of ``CocaCaptionHandler`` when ``caption.captioner.enabled``.
        ocr_handler: Used instead of ``RapidOcrHandler`` when ``caption.ocr.enabled``.
    """

    def __init__(
        self,
        config: CaptionConfig,
        clip: ClipModelConfig,
        rerank_handler: ModelHandler | None = None,
        captioner_handler: ModelHandler | None = None,
        ocr_handler: ModelHandler | None = None,
    ):
        super().__init__()
        self._config = config
        self._rerank = rerank_handler or OpenClipRerankHandler(clip, config.batch_size)
        self._captioner = captioner_handler
        self._ocr = ocr_handler
        if config.captioner.enabled and captioner_handler is None:
            from transforms.caption_models import CocaCaptionHandler

            self._captioner = CocaCaptionHandler(config.captioner, clip)
        if config.ocr.enabled and ocr_handler is None:
            from transforms.caption_models import RapidOcrHandler

            self._ocr = RapidOcrHandler(config.ocr)

    def expand(self, samples: beam.PCollection) -> CaptionOutputs:
        requests = samples | "Request" >> beam.Map(CaptionRequest)
        failures = []
        for label, handler in (("Captioner", self._captioner), ("Ocr", self._ocr)):
            if handler is not None:
                requests, errors = requests | label >> RunInference(handler).with_exception_handling()
                failures.append(errors.failed_inferences | f"{label}Failed" >> beam.FlatMap(_failed_requests))
        gathered, dropped = apply_stage(
            requests, "Candidates", _CandidatesFn(self._config, with_model_text=bool(self._captioner))
        )
        captioned, errors = gathered | "Rerank" >> RunInference(self._rerank).with_exception_handling()
        failures.append(errors.failed_inferences | "RerankFailed" >> beam.FlatMap(_failed_requests))
        rejected = (dropped, *failures) | "AllRejected" >> beam.Flatten()
        return CaptionOutputs(samples=captioned, rejected=rejected)


def template_fields(template: str) -> list[str]:
    """The metadata fields a template names."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]


def render(template: str, metadata: Mapping[str, Any], max_chars: int, name: str = "") -> str:
    """The template filled with the cleaned metadata values, or ``""`` when a field it names has no text (or only the
    file ``name``, lower-cased: ``transforms.text.file_name``)."""
    values = {}
    for field in template_fields(template):
        value = clean_text(metadata[field], max_chars) if not blank(metadata.get(field)) else ""
        if not value or value.lower() == name:
            return ""
        values[field] = value
    return clean_text(template.format_map(values), max_chars)


def metadata_candidates(sample: Sample, config: CaptionConfig) -> list[Candidate]:
    """The text stage's text and the domain's rendered templates, in that order."""
    found = []
    if config.include_text and sample.text:
        found.append(Candidate(clean_text(sample.text, config.max_chars), sample.text_source or "text"))
    domain = sample.domain if sample.domain in config.templates else "default"
    for index, template in enumerate(config.templates.get(domain, [])):
        if text := render(template, sample.metadata, config.max_chars, file_name(sample)):
            found.append(Candidate(text, f"template:{domain}[{index}]", template))
    return found


def usable(candidates: Iterable[Candidate], config: CaptionConfig) -> list[Candidate]:
    """Cleaned candidates of at least ``min_chars``, the first of each distinct text kept."""
    seen, kept = set(), []
    for candidate in candidates:
        text = clean_text(candidate.text, config.max_chars)
        if len(text) >= config.min_chars and text not in seen:
            seen.add(text)
            kept.append(dataclasses.replace(candidate, text=text))
    return kept


def rank(image: np.ndarray, candidates: Sequence[Candidate], vectors: Mapping[str, np.ndarray]) -> list[tuple]:
    """``(candidate, cosine)`` pairs, best first; ties keep the candidates' order."""
    scored = [(candidate, round(float(np.dot(image, vectors[candidate.text])), 6)) for candidate in candidates]
    return sorted(scored, key=lambda pair: -pair[1])


def captioned(sample: Sample, ranked: list[tuple[Candidate, float]], model_id: str) -> Sample:
    """The sample with the best candidate as its text, its score under ``model_id`` and the provenance record."""
    best, score = ranked[0]
    field = sample.text_source.removeprefix("metadata.")
    raw = field_value(sample.metadata, field) if sample.text_source.startswith("metadata.") else None
    record = {
        "model": model_id,
        "chosen": {"text": best.text, "source": best.source, "template": best.template, "score": score},
        "candidates": [{"text": c.text, "source": c.source, "template": c.template, "score": s} for c, s in ranked],
        "source_text": {"text": sample.text, "source": sample.text_source, "raw": raw},
    }
    return dataclasses.replace(
        sample,
        text=best.text,
        text_source=best.source,
        scores={**sample.scores, model_id: score},
        annotations={**sample.annotations, ANNOTATION: record},
    )


def _failed_requests(element: tuple) -> Iterator:
    batch, error = element
    yield from failed_rows(([request.sample for request in batch], error))


class _CandidatesFn(StageFn):
    stage = STAGE

    def __init__(self, config: CaptionConfig, with_model_text: bool):
        super().__init__()
        self._config = config
        self._with_model_text = with_model_text
        self._count = beam.metrics.Metrics.distribution(STAGE, "candidates")

    def apply(self, request: CaptionRequest) -> Iterator[CaptionRequest]:
        candidates = usable([*metadata_candidates(request.sample, self._config), *request.candidates], self._config)
        self._count.update(len(candidates))
        if not candidates and self._config.required:
            model_note = "the captioner gave no usable caption" if self._with_model_text else "no captioner is enabled"
            raise RejectItem(
                reasons.NO_CAPTION,
                f"no metadata text or template gave a caption of at least {self._config.min_chars} characters and "
                f"{model_note}; add text to the metadata, a template in caption.templates, enable "
                "caption.captioner, or set caption.required=false",
            )
        yield dataclasses.replace(request, candidates=tuple(candidates))


class OpenClipRerankHandler(ModelHandler[CaptionRequest, Sample, Any]):
    """Scores each request's candidates against its stored image embedding and returns the captioned sample.

    A request with no candidates (``caption.required = false``) keeps its sample unchanged. Text embeddings are
    cached per process by the model, so a caption shared by many images is encoded once.

    Args:
        clip: The ``clip`` section.
        batch_size: Requests per batch.
        model: An object with ``model_id`` and ``encode_texts`` used instead of loading ``clip`` (tests).
    """

    def __init__(self, clip: ClipModelConfig, batch_size: int = 16, model: Any = None):
        # Fixed batches: every text pass is padded to ClipModel.text_batch rows (so its rows never depend on the
        # others), and the adaptive batching Beam does between 1 and batch_size settled on 1 or 2 requests a pass.
        super().__init__(min_batch_size=batch_size, max_batch_size=batch_size)
        self._clip = clip
        self._model = model
        self._reranked = beam.metrics.Metrics.counter(STAGE, "reranked")

    def load_model(self) -> Any:
        if self._model is not None:
            return self._model
        from transforms.clip_model import load_clip

        return load_clip(self._clip)

    def run_inference(
        self, batch: Sequence[CaptionRequest], model: Any, inference_args: dict[str, Any] | None = None
    ) -> Iterable[Sample]:
        texts = sorted({c.text for request in batch for c in request.candidates})
        vectors = dict(zip(texts, model.encode_texts(texts), strict=True)) if texts else {}
        results = []
        for request in batch:
            sample = request.sample
            if not request.candidates:
                results.append(sample)
                continue
            embedded_by = sample.annotations.get(EMBEDDING_MODEL)
            if sample.embedding is None or embedded_by != model.model_id:
                raise ValueError(f"{sample.source}: image embedded by {embedded_by!r}, captions by {model.model_id!r}")
            ranked = rank(decode_embedding(sample.embedding), request.candidates, vectors)
            results.append(captioned(sample, ranked, model.model_id))
        self._reranked.inc(len(results))
        return results

    def get_num_bytes(self, batch: Sequence[CaptionRequest]) -> int:
        return sum(len(c.text) for request in batch for c in request.candidates)

    def get_metrics_namespace(self) -> str:
        return STAGE
