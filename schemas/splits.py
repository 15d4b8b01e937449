"""Files the split and evaluation-set stages write: the split report and the evaluation items.

``splits/splits.json`` is a ``SplitReport``; ``eval/understanding.jsonl`` and ``eval/generation.jsonl`` hold one
``UnderstandingItem`` or ``GenerationItem`` per line; ``eval/leaks.json`` one ``Leak`` per line. A change to the
fields bumps the version.
"""

from typing import Any, Literal

import pydantic

SPLIT_REPORT_VERSION = 2
EVAL_SCHEMA_VERSION = 1


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class StratumSplit(Model):
    samples: int
    groups: int
    sample_fraction: float
    group_fraction: float


class StratumReport(Model):
    stratum: str
    samples: int
    groups: int
    status: str = pydantic.Field(description="ok, too_small (left to hashing) or unmet (minimums not reachable).")
    moved: dict[str, int]
    splits: dict[str, StratumSplit]


class SplitReport(Model):
    """``splits/splits.json``: what was asked, what each stratum got, and what could not be done."""

    schema_version: int = SPLIT_REPORT_VERSION
    config: dict[str, Any]
    totals: dict[str, dict[str, int]]
    strata: list[StratumReport]
    too_small: list[str]
    unmet: list[str]
    pin_conflicts: int
    pin_conflict_examples: list[dict[str, Any]]
    largest_groups: list[dict[str, Any]]
    earlier_assignments: str = pydantic.Field(
        "none",
        description="A rebuild over an earlier output: 'kept' (it was split with the same settings, so every sample "
        "it held was pinned to the split it shipped in) or 'ignored' (other settings); 'none' for a first or "
        "incremental run.",
    )
    moved_since_earlier: list[dict[str, Any]] = pydantic.Field(
        default_factory=list,
        description="Samples of the earlier output now in another split: {from, to, samples} per pair of splits.",
    )


class UnderstandingItem(Model):
    """One line of ``understanding.jsonl``."""

    schema_version: int = EVAL_SCHEMA_VERSION
    id: str
    key: str
    source: str
    domain: str
    image: str
    question: str
    answer: str
    answer_field: str = pydantic.Field(description="The metadata field the answer was read from.")
    choices: list[str] = []


class GenerationItem(Model):
    """One line of ``generation.jsonl``."""

    schema_version: int = EVAL_SCHEMA_VERSION
    id: str
    key: str
    source: str
    domain: str
    prompt: str
    prompt_field: str = pydantic.Field(description="Where the prompt came from: a metadata field or a model id.")
    reference_image: str


class Leak(Model):
    """One line of ``leaks.json``: an eval image and a training sample that deduplication would call duplicates."""

    eval_key: str
    eval_source: str
    train_key: str
    train_source: str
    train_split: str
    kind: Literal["exact", "pixel", "near", "semantic"]
    evidence: str
    measure: float
