"""The bias and representation audit: the light per-item record it computes on, and ``audit/audit.json``.

Everything in ``audit.json`` is aggregate: counts, shares and metrics per group, never a per-image label. Groups
are values of *dimensions*: ``domain``; the metadata slice columns (``line``, ``camera``, ``label``...); ``person``
(``person`` / ``no_person``, from detected faces and a CLIP prompt ensemble); the perceived attributes of people
(``gender_presentation``, ``age_group``, ``skin_tone`` by default: CLIP zero-shot prompt ensembles, ``abstain`` when
the lead of the top group is below the margin); and caption terms (``caption_gender``, ``occupation``,
``identity``). Perceived attributes are what a model reads off pixels, not anyone's identity: they are measured
to find skews in the data, and must not be used as facts about the people shown.
"""

import dataclasses
from collections.abc import Mapping

import pydantic

from schemas.compact import packed, unpacked

AUDIT_SCHEMA_VERSION = 1
ABSTAIN = "abstain"


@dataclasses.dataclass(frozen=True)
class AuditItem:
    """The groups of one item as measured at one point of the pipeline; no image bytes, no embedding.

    Attributes:
        source: The item's ``InputItem.source``, the key joining it to its ledger row.
        point: Where it was measured: ``input`` (after reading: domain and slices), ``population`` (before the
            embedding-based filters: everything measurable) or ``kept`` (at the audit stage, after every filter).
        groups: Dimension -> the item's values (one for most; several for ``occupation`` and ``identity``).
        terms: Lexicon category -> caption terms found (``gendered:feminine``, ``identity:religion``,
            ``occupation``); filled at the ``kept`` point only.
        faces: Faces detected, when the faces stage ran before the measuring point.
        model_id: The CLIP model whose prompt embeddings classified the image, when it had an embedding.
    """

    source: str
    point: str
    groups: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    terms: Mapping[str, tuple[str, ...]] = dataclasses.field(default_factory=dict)
    faces: int | None = None
    model_id: str | None = None

    def __reduce__(self) -> tuple:
        # Compact pickling (schemas.compact): four of these cross the audit's join for every item.
        return _audit_item, (packed((self.source, self.point, self.groups, self.terms, self.faces, self.model_id)),)


def _audit_item(blob: bytes) -> AuditItem:
    return AuditItem(*unpacked(blob))


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class GroupShare(Model):
    """One group of a dimension before and after filtering, against the reference distribution."""

    value: str
    before: int = pydantic.Field(description="Items of the group among those measured.")
    after: int = pydantic.Field(description="Of those, items kept at the end of the run.")
    share_before: float | None = None
    share_after: float | None = None
    reference: float | None = pydantic.Field(None, description="Reference share; None for abstain and mixed.")
    ratio_after: float | None = pydantic.Field(None, description="share_after / reference.")


class Representation(Model):
    dimension: str
    measured: int
    groups: list[GroupShare]


class ExclusionRate(Model):
    """How much of one group a filter stage removed, against the rate over the whole dimension."""

    stage: str
    dimension: str
    value: str
    items: int
    excluded: int
    rate: float
    overall_rate: float
    ratio: float | None = pydantic.Field(None, description="rate / overall_rate.")


class ConceptSkew(Model):
    """Skew(a|c) = ln P(a|c) / P*(a) for every attribute group a, for one concept value c."""

    concept: str
    value: str
    attribute: str
    items: int = pydantic.Field(description="Items with the concept value and a reference group of the attribute.")
    counts: dict[str, int]
    skew: dict[str, float | None] = pydantic.Field(description="None where P(a|c) is 0 without smoothing.")
    max_skew: float | None
    min_skew: float | None


class Ndkl(Model):
    """NDKL@k of the attribute distribution in a CLIP text-to-image ranking for a neutral query."""

    query: str
    attribute: str
    k: int
    retrieved: int
    ndkl: float
    top_k_counts: dict[str, int]


class Pmi(Model):
    """PMI(role, gender) = ln P(role, gender) / (P(role) P(gender)) over the kept captions."""

    role: str
    gender: str
    together: int
    role_count: int
    gender_count: int
    pmi: float | None = pydantic.Field(None, description="None when the two never occur together.")


class ClassCount(Model):
    """A defect class before and after filtering."""

    column: str
    value: str
    before: int
    after: int
    long_tail: bool


class People(Model):
    """People in the kept images, measured at the audit stage (faces, then the CLIP person ensemble)."""

    images: int
    with_person: int
    with_faces: int
    faces: int
    attributes: dict[str, dict[str, int]] = pydantic.Field(description="Attribute -> group -> kept images.")


class AuditWarning(Model):
    """A crossed bound from the ``audit`` config section."""

    code: str
    message: str
    value: float
    bound: float


class AuditReport(Model):
    """``audit/audit.json``: aggregate measurements of one run."""

    schema_version: int = AUDIT_SCHEMA_VERSION
    model_id: str | None = pydantic.Field(None, description="CLIP model of the zero-shot prompts, if any ran.")
    items: dict[str, int] = pydantic.Field(description="Ledger items by final status.")
    measured: dict[str, int] = pydantic.Field(description="Items measured at each point.")
    labels_in_shards: bool
    representation: list[Representation]
    exclusion: list[ExclusionRate]
    skew: list[ConceptSkew]
    ndkl: list[Ndkl]
    pmi: list[Pmi]
    terms: dict[str, dict[str, int]] = pydantic.Field(description="Lexicon category -> term -> kept captions.")
    people: People
    defect_classes: list[ClassCount]
    warnings: list[AuditWarning]
