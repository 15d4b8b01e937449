"""What every config section shares.

``Section`` (frozen, unknown keys are errors), ``DuplicateRules`` (the scope, label rules and survivor policy near
and semantic deduplication both extend), ``FIELD_NAME`` (the pattern of a metadata field name) and
``default_prompts`` (the default prompt sets and caption templates: package data in ``schemas/data/prompts.json``,
not code).
"""

import copy
import functools
import json
import typing
from importlib import resources
from typing import Annotated, Any, Literal

import pydantic

from schemas.records.values import printable

FIELD_NAME = r"^[A-Za-z0-9_]+$"


def _utf8_path(value: str) -> str:
    if printable(value) != value:
        raise ValueError(
            f"'{printable(value)}' is not UTF-8 text (a folder or file name in a legacy encoding; the odd bytes are "
            "shown as \\xNN): rename it, or give a symbolic link with a UTF-8 name. Files inside an input may have "
            "such names"
        )
    return value


# A path the config names (an input, a root, the output): Beam's coders carry it as UTF-8 text.
PathText = Annotated[str, pydantic.AfterValidator(_utf8_path)]


def default_prompts(section: str, name: str) -> Any:
    """A default prompt set or template list of ``section``, from ``schemas/data/prompts.json`` (a fresh copy)."""
    return copy.deepcopy(_prompts()[section][name])


@functools.cache
def _prompts() -> dict:
    return json.loads(resources.files("schemas").joinpath("data", "prompts.json").read_text(encoding="utf-8"))


_UNSET = "none"


class Section(pydantic.BaseModel):
    """Base of every config section: frozen, unknown keys and non-finite numbers (nan, inf) are errors.

    TOML has no null, so a key that may be unset takes the text ``none`` to unset a default it has
    (``--set near_dedup.related_max_distance=none``, or ``related_max_distance = "none"`` in a file).
    """

    model_config = pydantic.ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _within_defaults(cls, data: Any) -> Any:
        """A table given for a key whose default is a section changes only the keys it names: ``[quality.blurry]
        enabled = true`` (or ``--set quality.blurry.deviations=3``) keeps blurry's default threshold, which the
        rule's class alone does not know (its default is ``QualityRule(threshold=0.03)``). Only such a default is
        merged: a section whose default is its class's own (``split``, on once configured) reads the table as
        given. A table inside it is merged by its own section the same way; a map (``faces.domains``) is replaced."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name in _own_defaults(cls):
            if isinstance(data.get(name), dict):
                merged[name] = {**cls.model_fields[name].default.model_dump(), **data[name]}
        return merged

    @pydantic.field_validator("*", mode="before")
    @classmethod
    def _unset(cls, value: Any, info: pydantic.ValidationInfo) -> Any:
        if isinstance(value, str) and value.strip().lower() == _UNSET:
            if type(None) in typing.get_args(cls.model_fields[info.field_name].annotation):
                return None
        return value


@functools.cache
def _own_defaults(section: type) -> tuple[str, ...]:
    """The keys of ``section`` whose default is a section unlike its class's own (``QualityRule(threshold=0.03)``)."""
    return tuple(name for name, field in section.model_fields.items() if _own_default(field.default))


def _own_default(default: Any) -> bool:
    if not isinstance(default, Section):
        return False
    try:
        return default != type(default)()
    except pydantic.ValidationError:
        return True


SurvivorCriterion = Literal["resolution", "file_size", "richness", "clip_score"]


class DuplicateRules(Section):
    """What near and semantic deduplication share: scope, label rules, survivor policy and the bucket guard."""

    enabled: bool = True
    scope: list[str] = pydantic.Field(
        default_factory=list,
        description="Compare only samples with equal values of these fields ('domain' or metadata fields such as "
        "line, camera, sku); empty compares globally.",
    )
    keep_distinct: list[str] = pydantic.Field(
        default_factory=lambda: ["label", "color", "colour"],
        description="Metadata fields whose differing values keep both members: a defective board and its template "
        "(label), a product in two colours whose photos only a hue tells apart (color, colour: a catalog's column).",
    )
    report_only: bool = pydantic.Field(False, description="Write the clusters but remove nothing.")
    survivor_policy: list[SurvivorCriterion] = pydantic.Field(
        default_factory=lambda: ["resolution", "file_size", "richness", "clip_score"],
        description="Criteria in order, each preferring the larger value; the smallest key breaks ties.",
    )
    max_bucket: int = pydantic.Field(
        5000, ge=2, description="A candidate bucket with more members is not compared pairwise; it is reported."
    )
