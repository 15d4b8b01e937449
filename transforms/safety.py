"""Safety: remove private metadata fields, then reject unsafe text and unsafe images.

Input and output element type: ``Sample``. In order, for every sample:

1. **Privacy.** Metadata fields named in ``safety.private_fields`` (case-insensitive, e.g. operator names) are removed
   from ``Sample.metadata`` at any depth (``details.inspector``), so they never reach a shard;
   ``annotations["safety"]["removed_fields"]`` names them (never their values). The config refuses a key that would
   read one before this stage (``text.fields``, a caption template, ``audit.slices``: ``schemas/config/privacy.py``).
   EXIF and GPS never get this far: normalise re-encodes without them.
2. **Unsafe text.** The sample text (the caption) and the metadata's text (``safety.text_fields``, named as
   ``text.fields`` names them, ``details.note``; default every field), at any depth of its objects and lists, are
   matched whole-word against the lexicons (``safety.lexicons``, default the packaged
   ``transforms/data/unsafe_terms.txt``, whose header gives its source and licence). A match rejects with reason
   ``unsafe_text``; the detail names the fields (dotted: ``metadata.details.note``) and terms.
3. **Unsafe images.** The stored image embedding (``Sample.embedding``) is scored against the prompt sets
   ``safety.unsafe_prompts`` and ``safety.safe_prompts`` by CLIP zero-shot: the score is the softmax probability
   mass on the unsafe prompts, written to ``scores["unsafe_<model id>"]``. A score at or above
   ``safety.image_threshold`` rejects with reason ``unsafe_image`` (detail: score and threshold). Samples without an
   embedding are not scored (``annotations["safety"]["image"] = "not_scored"``). With a smoke model
   (``clip.smoke``: random weights) the score is recorded but never rejects: its value means nothing.

Words drawn in the image (a watermark, a banner) are checked only when they are the caption: with the ``ocr`` extra
and ``caption.ocr.enabled``, OCR text is a caption candidate, and the chosen caption is the sample text checked here;
the quality stage measures how much of an image is text (``text_heavy``), not its words.
Config section: ``safety``. Metrics: ``safety/private_fields_removed``, ``safety/image_scored``,
``safety/rejected``, ``safety/failed``.
"""

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam.utils.shared import Shared

from schemas import reasons
from schemas.config.safety import SafetyConfig
from schemas.records.ledger import RejectItem
from schemas.records.samples import Sample
from transforms._common import StageFn, apply_stage
from transforms._lexicon import TermMatcher, load_term_files, words
from transforms._zero_shot import TextEncoder, acquire_bank, decode_embedding, model_loader, probabilities
from transforms.text import field_value

STAGE = "safety"
DEFAULT_LEXICON = "unsafe_terms.txt"
SCORE_PREFIX = "unsafe_"


class SafetyOutputs(NamedTuple):
    samples: beam.PCollection
    rejected: beam.PCollection


class FilterUnsafe(beam.PTransform):
    """Drop private metadata fields, then reject samples with unsafe text or an unsafe image.

    Args:
        config: The ``safety`` section.
        clip: The CLIP model config used to embed the prompt sets (the same model that embedded the images).
        model: An object with ``model_id`` and ``encode_texts`` used instead of loading ``clip`` (tests inject a
            fake). With neither, images are not scored.
    """

    def __init__(self, config: SafetyConfig, clip: Any = None, model: TextEncoder | None = None):
        super().__init__()
        self._config = config
        self._clip = clip
        self._model = model

    def expand(self, samples: beam.PCollection) -> SafetyOutputs:
        enforce = self._model is not None or not getattr(self._clip, "smoke", False)
        fn = _SafetyFn(self._config, self._clip, self._model, Shared(), enforce)
        kept, dropped = apply_stage(samples, "Check", fn)
        return SafetyOutputs(samples=kept, rejected=dropped)


def remove_private(metadata: Mapping[str, Any], private_fields: list[str]) -> tuple[dict[str, Any], list[str]]:
    """``metadata`` without the private fields (names compared case-insensitively) at any depth, and the dotted
    names removed: a sidecar's ``{"details": {"inspector": ...}}`` or ``{"contacts": [{"email": ...}]}`` (JSON
    exports nest objects) loses ``details.inspector`` and ``contacts.email``."""
    private = {name.casefold() for name in private_fields}
    removed: set[str] = set()
    kept = _without_private(metadata, private, "", removed)
    return kept, sorted(removed)


def _without_private(value: Any, private: set[str], path: str, removed: set[str]) -> Any:
    if isinstance(value, Mapping):
        kept = {}
        for name, inner in value.items():
            dotted = f"{path}{name}"
            if str(name).casefold() in private:
                removed.add(dotted)
            else:
                kept[name] = _without_private(inner, private, f"{dotted}.", removed)
        return kept
    if isinstance(value, list | tuple):
        return type(value)(_without_private(inner, private, path, removed) for inner in value)
    return value


def texts_to_check(sample: Sample, metadata: Mapping[str, Any], fields: list[str] | None) -> list[tuple[str, str]]:
    """``(field, text)`` pairs checked for unsafe terms: the sample text, then the text of each metadata field.

    ``fields`` names the fields to check as ``text.fields`` does (``details.note`` is key ``note`` of the object at
    ``details``: ``transforms.text.field_value``); ``None`` checks every field. Text is found at any depth below a
    field, as ``remove_private`` removes private fields: ``{"details": {"note": ...}}``, ``{"tags": [{"name": ...}]}``
    and ``{"title": {"de": ...}}`` give ``metadata.details.note``, ``metadata.tags.name`` and ``metadata.title.de``.
    A field a sample does not have is not checked for that sample.
    """
    pairs = [("text", sample.text)] if sample.text else []
    found: dict[str, list[str]] = {}
    if fields is None:
        _collect_strings(metadata, "", found)
    else:
        for name in fields:
            _collect_strings(field_value(metadata, name), name, found)
    pairs += [(f"metadata.{path}", " ".join(texts)) for path, texts in found.items()]
    return pairs


def _collect_strings(value: Any, path: str, found: dict[str, list[str]]) -> None:
    """Append every string at or below ``value`` to ``found`` under its dotted path (list items share their list's)."""
    if isinstance(value, str):
        found.setdefault(path, []).append(value)
    elif isinstance(value, Mapping):
        for name, inner in sorted(value.items(), key=lambda item: str(item[0])):
            _collect_strings(inner, f"{path}.{name}" if path else str(name), found)
    elif isinstance(value, list | tuple):
        for inner in value:
            _collect_strings(inner, path, found)


def unsafe_matcher(config: SafetyConfig) -> TermMatcher:
    """The matcher of the configured lexicons plus ``extra_terms``, less ``allowed_terms``.

    Raises:
        LexiconError: A lexicon file cannot be read; the launcher checks them before any work (``pipeline/checks.py``).
    """
    allowed = {" ".join(words(term)) for term in config.allowed_terms}
    terms = [*load_term_files(config.lexicons, DEFAULT_LEXICON), *config.extra_terms]
    forms = {" ".join(words(term)): " ".join(words(term)) for term in terms}
    return TermMatcher({form: canonical for form, canonical in forms.items() if form and form not in allowed})


def unsafe_text(pairs: list[tuple[str, str]], matcher: TermMatcher) -> dict[str, list[str]]:
    """The lexicon terms found, by field; empty when the text is clean."""
    found = {}
    for field, text in pairs:
        if terms := matcher.find(text):
            found[field] = terms
    return found


def unsafe_score(embedding: np.ndarray, unsafe: np.ndarray, safe: np.ndarray, logit_scale: float) -> float:
    """Zero-shot probability mass on the unsafe prompts, with every prompt of both sets as one class."""
    probs = probabilities(embedding, np.concatenate([unsafe, safe]), logit_scale)
    return float(probs[: len(unsafe)].sum())


class _SafetyFn(StageFn):
    stage = STAGE

    def __init__(self, config: SafetyConfig, clip: Any, model: TextEncoder | None, shared: Shared, enforce: bool):
        super().__init__()
        self._enforce = enforce
        self._config = config
        self._clip = clip
        self._model = model
        self._shared = shared
        self._removed = beam.metrics.Metrics.counter(STAGE, "private_fields_removed")
        self._scored = beam.metrics.Metrics.counter(STAGE, "image_scored")
        self._matcher: TermMatcher | None = None
        self._prompts: tuple[str, np.ndarray, np.ndarray] | None = None

    def setup(self):
        if self._config.text_check:
            self._matcher = unsafe_matcher(self._config)

    def _prompt_vectors(self) -> tuple[str, np.ndarray, np.ndarray] | None:
        if self._prompts is None:
            load = model_loader(self._clip, self._model)
            if load is None:
                return None
            prompts = [*self._config.unsafe_prompts, *self._config.safe_prompts]
            bank = acquire_bank(self._shared, load, prompts, tag=f"{STAGE}:{sorted(set(prompts))}")
            unsafe = np.stack([bank.vector(p) for p in self._config.unsafe_prompts])
            safe = np.stack([bank.vector(p) for p in self._config.safe_prompts])
            self._prompts = (bank.model_id, unsafe, safe)
        return self._prompts

    def apply(self, sample: Sample) -> Iterator[Sample]:
        metadata, removed = remove_private(sample.metadata, self._config.private_fields)
        self._removed.inc(len(removed))
        record: dict[str, Any] = {"removed_fields": removed} if removed else {}
        if self._config.text_check:
            found = unsafe_text(texts_to_check(sample, metadata, self._config.text_fields), self._matcher)
            if found:
                where = "; ".join(f"{field}: {', '.join(terms)}" for field, terms in found.items())
                raise RejectItem(reasons.UNSAFE_TEXT, f"unsafe-lexicon terms in {where}", terms=found)
        scores = dict(sample.scores)
        prompts = self._prompt_vectors() if self._config.image_check and sample.embedding is not None else None
        if prompts is None:
            record["image"] = "not_scored"
        else:
            model_id, unsafe, safe = prompts
            embedded_by = sample.annotations.get("embedding_model", model_id)
            if embedded_by != model_id:
                raise ValueError(f"the image was embedded by {embedded_by} but the prompts by {model_id}")
            score = round(unsafe_score(decode_embedding(sample.embedding), unsafe, safe, self._config.logit_scale), 6)
            self._scored.inc()
            name = f"{SCORE_PREFIX}{model_id}"
            scores[name] = score
            if not self._enforce:
                record["image"] = "smoke_model_not_enforced"
            elif score >= self._config.image_threshold:
                raise RejectItem(
                    reasons.UNSAFE_IMAGE,
                    f"{name}={score} is at or above safety.image_threshold={self._config.image_threshold}",
                    score=score,
                    threshold=self._config.image_threshold,
                )
        annotations = {**sample.annotations, "safety": record} if record else dict(sample.annotations)
        yield dataclasses.replace(sample, metadata=metadata, scores=scores, annotations=annotations)
