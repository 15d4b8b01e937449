"""The ``[split]`` section (``transforms/split.py``)."""

import re
from typing import Any

import pydantic

from schemas.config.base import Section

_SPLIT_NAME = r"^[a-z0-9][a-z0-9_-]*$"


class SplitConfig(Section):
    """Leak-free split assignment (``transforms/split.py``).

    Without a ``[split]`` section a run writes one split, ``all``, and no evaluation set: which metadata makes two
    images "the same thing" (SKU, product family, line and date, board id) is the data owner's call, and a default
    split grouped on guesses would claim to be leak-free while colour variants or repaired boards straddle it. Any
    key in the section turns splitting on (``enabled`` defaults to true then), with these defaults: 0.98 / 0.01 /
    0.01, grouped by ``doc_id``, stratified by domain, at least one group per stratum in validation and test.
    Turning it on later loses nothing: assignment is a pure function of the group, so it matches what it would have
    been from the start.
    """

    enabled: bool = True
    fractions: dict[str, float] = pydantic.Field(
        default_factory=lambda: {"train": 0.98, "validation": 0.01, "test": 0.01},
        description="Target share of groups per split; held-out splits take the hash range from 0 by name, train "
        "last.",
    )
    train: str = pydantic.Field("train", description="The training split; every other split is held out.")
    group_by: list[str] = pydantic.Field(
        default_factory=lambda: ["doc_id"],
        description="Metadata fields whose shared value keeps samples in one split; 'line+date' joins several fields.",
    )
    stratify_by: list[str] = pydantic.Field(
        default_factory=list,
        description="Metadata fields tried in order for the label that, with the domain, names a sample's stratum.",
    )
    min_groups: int = pydantic.Field(1, ge=0, description="Groups of every stratum each held-out split gets at least.")
    max_heldout_share: float = pydantic.Field(
        0.5, gt=0.0, le=1.0, description="A stratum whose minimums would hold out more than this share is too small."
    )
    pin_field: str = pydantic.Field("split", description="Metadata field naming a split the sample must go to.")
    salt: str = pydantic.Field("unishard-split-v1", description="Hash salt; changing it reshuffles every group.")
    rounds: int = pydantic.Field(3, ge=0, le=20, description="Connected-component rounds before the final union-find.")

    @pydantic.model_validator(mode="before")
    @classmethod
    def _on_when_configured(cls, data: Any) -> Any:
        if isinstance(data, dict) and "enabled" not in data:
            return {**data, "enabled": bool(data)}
        return data

    @pydantic.model_validator(mode="after")
    def _check_fractions(self) -> "SplitConfig":
        if self.train not in self.fractions:
            raise ValueError(f"split.train {self.train!r} is not a key of split.fractions")
        for name, share in self.fractions.items():
            if not re.match(_SPLIT_NAME, name):
                raise ValueError(f"split name {name!r} must be lowercase letters, digits, '_' or '-'")
            if share < 0:
                raise ValueError(f"split.fractions.{name} must not be negative")
        if abs(sum(self.fractions.values()) - 1.0) > 1e-6:
            raise ValueError(f"split.fractions must add up to 1, got {sum(self.fractions.values()):.6g}")
        return self
