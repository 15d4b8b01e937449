"""Audit: measure who and what is in the data, at the audit stage and before the filters; remove nothing.

``AuditBias`` is applied to the samples at the audit stage (after every filter) and returns them unchanged (with
``annotations["audit"]`` perceived-attribute labels only when ``audit.write_labels`` is set). It measures light
``AuditItem`` records (``schemas.audit``) at up to three points: ``input`` (every read item: domain and the metadata
slice columns), ``population`` (the samples before the embedding-based filters: CLIP person presence and perceived
attributes, caption terms) and ``kept`` (the samples here, with detected faces and final captions). It also ranks
the kept images for each neutral query (CLIP text-to-image similarity on the stored embeddings) for NDKL.
``transforms.write_audit`` joins the records with the final ledger and writes ``audit/audit.json``.

Image embeddings come from ``Sample.embedding``; prompt and query embeddings from the CLIP model's
``encode_texts``, once per worker. Without embeddings, only faces, captions and slices are measured. A sample that
cannot be measured is passed on unmeasured, never dropped. Config section: ``audit``. Metrics: ``audit/measured``,
``audit/unmeasured``.
"""

import dataclasses
import logging
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import apache_beam as beam
import numpy as np
from apache_beam import pvalue
from apache_beam.utils.shared import Shared

from schemas.audit import ABSTAIN, AuditItem
from schemas.config.audit import AuditConfig
from schemas.records.inputs import InputItem
from schemas.records.samples import Sample
from schemas.records.values import blank
from transforms._lexicon import LexiconError, TermMatcher, load_json_lexicon
from transforms._zero_shot import TextEncoder, acquire_bank, classify, decode_embedding, model_loader, probabilities

STAGE = "audit"
MEASURES = "measures"
RANKED = "ranked"
DEFAULT_LEXICON = "audit_terms.json"
PERSON, NO_PERSON, MIXED = "person", "no_person", "mixed"

_LOG = logging.getLogger(__name__)


class AuditOutputs(NamedTuple):
    samples: beam.PCollection
    measures: beam.PCollection
    ranked: beam.PCollection


class AuditBias(beam.PTransform):
    """Measure the samples at the audit stage (and the earlier points given) without changing or dropping any.

    Args:
        config: The ``audit`` section.
        clip: The CLIP model config that embedded the images, to embed prompts and queries.
        model: An object with ``model_id`` and ``encode_texts`` used instead of loading ``clip`` (tests).
        inputs: Every read ``InputItem`` (the ``input`` point), for slice exclusion rates from the first stage.
        population: Samples before the embedding-based filters (the ``population`` point).
    """

    def __init__(
        self,
        config: AuditConfig,
        clip: Any = None,
        model: TextEncoder | None = None,
        inputs: beam.PCollection | None = None,
        population: beam.PCollection | None = None,
    ):
        super().__init__()
        self._config = config
        self._load = model_loader(clip, model)
        self._inputs = inputs
        self._population = population

    def expand(self, samples: beam.PCollection):
        if not self._config.enabled:
            empty = samples.pipeline | "Nothing" >> beam.Create([])
            return AuditOutputs(samples=samples, measures=empty, ranked=empty)
        shared = Shared()
        kept = samples | "MeasureKept" >> beam.ParDo(
            _MeasureFn(self._config, self._load, shared, "kept")
        ).with_outputs(MEASURES, RANKED, main="samples")
        parts = [kept[MEASURES]]
        if self._population is not None:
            fn = _MeasureFn(self._config, self._load, shared, "population")
            parts.append(self._population | "MeasurePopulation" >> beam.ParDo(fn))
        if self._inputs is not None:
            parts.append(self._inputs | "MeasureInputs" >> beam.Map(input_record, config=self._config))
        measures = parts | "AllMeasures" >> beam.Flatten()
        return AuditOutputs(samples=kept.samples, measures=measures, ranked=kept[RANKED])


class Lexicon:
    """The caption lexicon: gendered terms by group, identity terms by category, occupations by canonical role."""

    def __init__(self, data: Mapping[str, Mapping[str, list[str]]]):
        self.group_of = {form: group for group, forms in data["gendered"].items() for form in forms}
        self.category_of = {form: category for category, forms in data["identity"].items() for form in forms}
        self.gendered = TermMatcher({form: form for form in self.group_of})
        self.identity = TermMatcher({form: form for form in self.category_of})
        self.occupation = TermMatcher({form: role for role, forms in data["occupation"].items() for form in forms})

    @classmethod
    def load(cls, path: str) -> "Lexicon":
        """The lexicon of the file at ``path`` (``audit.lexicon``), or the packaged one when ``path`` is empty.

        Raises:
            LexiconError: The file cannot be read, is not JSON, or lacks the packaged file's form.
        """
        data = load_json_lexicon(path, DEFAULT_LEXICON)
        try:
            return cls(data)
        except (KeyError, AttributeError, TypeError) as error:
            problem = f"has no {error}" if isinstance(error, KeyError) else "is not of the form"
            raise LexiconError(
                f"audit.lexicon: {path} {problem}: it needs 'gendered', 'identity' and 'occupation', each an object "
                f"mapping a group to a list of terms, as the packaged transforms/data/{DEFAULT_LEXICON} has"
            ) from None


def caption_measures(text: str, lexicon: Lexicon) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """Caption dimensions (``caption_gender``, ``occupation``, ``identity``) and the terms found, by category."""
    groups: dict[str, tuple[str, ...]] = {}
    terms: dict[str, tuple[str, ...]] = {}
    for form in lexicon.gendered.find(text):
        key = f"gendered:{lexicon.group_of[form]}"
        terms[key] = (*terms.get(key, ()), form)
    genders = sorted(key.split(":", 1)[1] for key in terms)
    if genders:
        groups["caption_gender"] = (genders[0],) if len(genders) == 1 else (MIXED,)
    if roles := lexicon.occupation.find(text):
        groups["occupation"] = terms["occupation"] = tuple(sorted(roles))
    for form in lexicon.identity.find(text):
        key = f"identity:{lexicon.category_of[form]}"
        terms[key] = (*terms.get(key, ()), form)
    if categories := sorted({key.split(":", 1)[1] for key in terms if key.startswith("identity:")}):
        groups["identity"] = tuple(categories)
    return groups, terms


def slice_groups(domain: str, metadata: Mapping[str, Any], config: AuditConfig) -> dict[str, tuple[str, ...]]:
    """``domain`` and the configured metadata slice columns present in ``metadata``."""
    groups = {"domain": (domain,)}
    for column in config.slices:
        value = metadata.get(column)
        values = value if isinstance(value, (list, tuple)) else [value]
        values = tuple(sorted({str(v) for v in values if not blank(v)}))
        if values:
            groups[column] = values
    return groups


def input_record(item: InputItem, config: AuditConfig) -> AuditItem:
    return AuditItem(source=item.source, point="input", groups=slice_groups(item.domain, item.metadata, config))


class PeopleClassifier:
    """Zero-shot person presence and perceived attributes from one image embedding, with abstention."""

    def __init__(self, bank, config: AuditConfig):
        self.model_id = bank.model_id
        self._config = config
        person = bank.ensemble(config.person_prompts)
        self._person = np.stack([person, bank.ensemble(config.non_person_prompts)])
        self._attributes = {name: bank.classes(groups) for name, groups in sorted(config.attributes.items())}
        self.queries = [(query, bank.vector(query)) for query in config.neutral_queries]

    @staticmethod
    def prompts(config: AuditConfig) -> list[str]:
        attribute_prompts = [p for groups in config.attributes.values() for ps in groups.values() for p in ps]
        return [*config.person_prompts, *config.non_person_prompts, *attribute_prompts, *config.neutral_queries]

    def person_probability(self, embedding: np.ndarray) -> float:
        return float(probabilities(embedding, self._person, self._config.logit_scale)[0])

    def attributes(self, embedding: np.ndarray) -> dict[str, str]:
        labels = {}
        for name, (groups, classes) in self._attributes.items():
            label, _ = classify(embedding, groups, classes, self._config.logit_scale, self._config.margin)
            labels[name] = label or ABSTAIN
        return labels


def measure(
    sample: Sample, point: str, lexicon: Lexicon, people: PeopleClassifier | None, config: AuditConfig
) -> tuple[AuditItem, dict[str, str], np.ndarray | None]:
    """The sample's audit record, its person labels (``person`` and perceived attributes) and its embedding."""
    groups = slice_groups(sample.domain, sample.metadata, config)
    caption, terms = caption_measures(sample.text, lexicon)
    groups.update(caption)
    faces_record = sample.annotations.get("faces")
    faces = int(faces_record["count"]) if isinstance(faces_record, Mapping) else None
    embedding = decode_embedding(sample.embedding) if sample.embedding is not None and people is not None else None
    labels: dict[str, str] = {}
    if embedding is not None or faces is not None:
        is_person = bool(faces) or (
            embedding is not None and people.person_probability(embedding) >= config.person_threshold
        )
        labels["person"] = PERSON if is_person else NO_PERSON
        if is_person and embedding is not None:
            labels.update(people.attributes(embedding))
    groups.update({dim: (label,) for dim, label in labels.items()})
    model_id = people.model_id if embedding is not None else None
    item = AuditItem(sample.source, point, groups, terms if point == "kept" else {}, faces, model_id)
    return item, labels, embedding


class _MeasureFn(beam.DoFn):
    def __init__(self, config: AuditConfig, load, shared: Shared, point: str):
        self._config = config
        self._load = load
        self._shared = shared
        self._point = point
        self._measured = beam.metrics.Metrics.counter(STAGE, "measured")
        self._unmeasured = beam.metrics.Metrics.counter(STAGE, "unmeasured")
        self._lexicon: Lexicon | None = None
        self._people: PeopleClassifier | None = None
        self._people_loaded = False

    def setup(self):
        self._lexicon = Lexicon.load(self._config.lexicon)

    def _classifier(self) -> PeopleClassifier | None:
        if not self._people_loaded and self._load is not None:
            prompts = PeopleClassifier.prompts(self._config)
            bank = acquire_bank(self._shared, self._load, prompts, tag=f"{STAGE}:{sorted(set(prompts))}")
            self._people = PeopleClassifier(bank, self._config)
        self._people_loaded = True
        return self._people

    def process(self, sample: Sample) -> Iterator:
        try:
            people = self._classifier() if sample.embedding is not None else None
            item, labels, embedding = measure(sample, self._point, self._lexicon, people, self._config)
        except Exception as error:  # noqa: BLE001 - a measurement never drops or fails a sample
            self._unmeasured.inc()
            _LOG.warning("audit could not measure %s: %s: %s", sample.source, type(error).__name__, error)
            if self._point == "kept":
                yield sample
            return
        self._measured.inc()
        if self._point != "kept":
            yield item
            return
        yield pvalue.TaggedOutput(MEASURES, item)
        if embedding is not None:
            for query, vector in people.queries:
                score = float(vector @ embedding)
                for name in sorted(self._config.attributes):
                    if labels.get(name, ABSTAIN) != ABSTAIN:
                        yield pvalue.TaggedOutput(RANKED, ((query, name), (score, sample.source, labels[name])))
        if self._config.write_labels and labels:
            annotations = {**sample.annotations, "audit": {"perceived": dict(sorted(labels.items()))}}
            sample = dataclasses.replace(sample, annotations=annotations)
        yield sample
