"""The ``[audit]`` section (``transforms/audit.py``)."""

import pydantic

from schemas.config.base import Section, default_prompts

AUDIT_BUILTIN_DIMENSIONS = ("domain", "person", "caption_gender", "occupation", "identity")


class AuditConfig(Section):
    """Bias and representation audit: a measurement written to ``audit/audit.json``; it removes no sample."""

    enabled: bool = True
    person_prompts: list[str] = pydantic.Field(default_factory=lambda: default_prompts("audit", "person_prompts"))
    non_person_prompts: list[str] = pydantic.Field(
        default_factory=lambda: default_prompts("audit", "non_person_prompts")
    )
    person_threshold: float = pydantic.Field(
        0.5, ge=0.0, le=1.0, description="Zero-shot P(person) at or above which an image shows people (or a face)."
    )
    attributes: dict[str, dict[str, list[str]]] = pydantic.Field(
        default_factory=lambda: default_prompts("audit", "attributes"),
        description="Perceived attributes of people: attribute -> group -> prompt ensemble.",
    )
    margin: float = pydantic.Field(
        0.2, ge=0.0, le=1.0, description="Abstain when the top two groups' zero-shot probabilities differ by less."
    )
    logit_scale: float = pydantic.Field(100.0, gt=0.0)
    write_labels: bool = pydantic.Field(
        False, description="Write per-image perceived attribute labels into the shards' annotations."
    )
    lexicon: str = pydantic.Field(
        "", description="UTF-8 JSON term file for caption counts, read before any work; empty: the packaged one."
    )
    slices: list[str] = pydantic.Field(
        default_factory=lambda: ["plant", "line", "camera", "shift", "sku", "defect_class", "label", "category"],
        description="Metadata columns measured as slices.",
    )
    defect_columns: list[str] = pydantic.Field(
        default_factory=lambda: ["defect_class", "label"], description="Slices whose values are defect classes."
    )
    skew: list[tuple[str, str]] = pydantic.Field(
        default_factory=lambda: [
            ("occupation", "gender_presentation"),
            ("occupation", "age_group"),
            ("occupation", "skin_tone"),
            ("occupation", "caption_gender"),
            ("category", "gender_presentation"),
            ("defect_class", "line"),
            ("defect_class", "camera"),
            ("label", "line"),
            ("label", "camera"),
        ],
        description="(concept, attribute) pairs for Skew, MaxSkew and MinSkew.",
    )
    reference: dict[str, dict[str, float]] = pydantic.Field(
        default_factory=dict, description="Reference distribution per attribute; default: uniform over its groups."
    )
    neutral_queries: list[str] = pydantic.Field(default_factory=lambda: default_prompts("audit", "neutral_queries"))
    ndkl_k: int = pydantic.Field(20, gt=0, description="Retrieval depth of NDKL@k.")
    min_count: int = pydantic.Field(
        5,
        ge=1,
        description="Groups with fewer items (before filtering) are reported but never flagged as vanished or "
        "under-represented.",
    )
    smoothing: float = pydantic.Field(0.0, ge=0.0, description="Additive smoothing of P(attribute | concept).")
    max_abs_skew: float = pydantic.Field(0.7, gt=0.0, description="Warn when |Skew| exceeds this (0.7 ~ 2x).")
    max_ndkl: float = pydantic.Field(0.2, gt=0.0, description="Warn when NDKL@k exceeds this.")
    max_exclusion_ratio: float = pydantic.Field(
        2.0, gt=1.0, description="Warn when a group's exclusion rate at a stage exceeds this times the overall rate."
    )
    min_excluded: int = pydantic.Field(
        3,
        ge=1,
        description="A stage's exclusion of a group is warned about only when it removed at least this many of its "
        "items (one removed duplicate is no pattern).",
    )
    min_representation_ratio: float = pydantic.Field(
        0.5, gt=0.0, le=1.0, description="Warn when a group's kept share is below this times its reference share."
    )
    long_tail_max: int = pydantic.Field(20, ge=0, description="Defect classes with at most this many inputs.")
    fail_on_bounds: bool = pydantic.Field(False, description="Fail the run when a warning bound is crossed.")

    @pydantic.model_validator(mode="after")
    def _check_names(self) -> "AuditConfig":
        clash = (set(self.attributes) | set(self.slices)) & set(AUDIT_BUILTIN_DIMENSIONS)
        if clash or set(self.attributes) & set(self.slices):
            raise ValueError(f"audit: attribute and slice names must differ from each other and {clash or ''}")
        for name, groups in self.attributes.items():
            if len(groups) < 2 or not all(groups.values()):
                raise ValueError(f"audit.attributes.{name}: needs at least two groups, each with prompts")
        known = set(self.attributes) | set(self.slices) | set(AUDIT_BUILTIN_DIMENSIONS)
        for concept, attribute in self.skew:
            if concept not in known or attribute not in known:
                raise ValueError(f"audit.skew: ({concept!r}, {attribute!r}) names a dimension that is not measured")
        for name, shares in self.reference.items():
            if any(v <= 0 for v in shares.values()) or abs(sum(shares.values()) - 1.0) > 1e-6:
                raise ValueError(f"audit.reference.{name}: shares must be positive and sum to 1")
        return self
