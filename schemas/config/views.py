"""The ``[views]`` section: the ``docs`` and ``edit`` views beside ``pairs``, and the loader they are sized for.

``transforms/write_documents.py`` writes ``docs``, ``transforms/write_edits.py`` writes ``edit``.
"""

import re

import pydantic

from schemas.config.base import FIELD_NAME, Section
from schemas.config.shards import ShardsConfig


class ViewConfig(Section):
    """One output view beside ``pairs``: whether it is written, which share of it, and its shard size."""

    enabled: bool = True
    share: float = pydantic.Field(
        1.0, gt=0.0, le=1.0, description="Share of the view's samples written, chosen by a hash of the sample key."
    )
    samples_per_shard: int | None = pydantic.Field(None, gt=0, description="None: shards.samples_per_shard.")
    bytes_per_shard: int | None = pydantic.Field(None, gt=0, description="None: shards.bytes_per_shard.")


class EditRule(Section):
    """Image pairs for the ``edit`` view: two samples that agree on ``match`` and differ in ``differ``.

    Example: a defect-free template and the defective board (``match = ["board_id"]``, ``differ = "label"``,
    ``source_values = ["none"]``), or one product in two colours (``match = ["category", "image_role"]``,
    ``differ = "color"``). ``instruction`` may name fields as ``{source.FIELD}`` and ``{target.FIELD}``.
    """

    name: str = pydantic.Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    domain: str | None = None
    match: list[str] = pydantic.Field(default_factory=list)
    differ: str = pydantic.Field(pattern=FIELD_NAME)
    source_values: list[str] = pydantic.Field(default_factory=list, description="Empty: any value.")
    target_values: list[str] = pydantic.Field(default_factory=list, description="Empty: any value.")
    instruction: str
    max_pairs_per_group: int = pydantic.Field(16, gt=0)

    @pydantic.field_validator("instruction")
    @classmethod
    def _placeholders(cls, value: str) -> str:
        rest = re.sub(r"\{(source|target)\.[A-Za-z0-9_]+\}", "", value)
        if "{" in rest or "}" in rest:
            raise ValueError(f"instruction {value!r}: only {{source.FIELD}} and {{target.FIELD}} placeholders exist")
        return value


class EditViewConfig(ViewConfig):
    rules: list[EditRule] = pydantic.Field(default_factory=list)


class ViewsConfig(Section):
    """The views beside ``pairs`` (``transforms/write_documents.py``) and the loader they are sized for.

    Every view's shard count is at least ``loader_workers * nodes`` so no data-loader worker starves.
    """

    loader_workers: int = pydantic.Field(1, ge=1, description="Data-loader workers per node reading the shards.")
    nodes: int = pydantic.Field(1, ge=1, description="Nodes (ranks) reading the shards.")
    docs: ViewConfig = ViewConfig()
    edit: EditViewConfig = EditViewConfig()

    def shards(self, base: ShardsConfig, view: ViewConfig | None = None) -> ShardsConfig:
        """The shard settings of a view: ``base`` with the view's sizes and at least workers x nodes shards."""
        values = base.model_dump()
        values["min_shards"] = max(base.min_shards, self.loader_workers * self.nodes)
        if view is not None:
            values["samples_per_shard"] = view.samples_per_shard or base.samples_per_shard
            values["bytes_per_shard"] = view.bytes_per_shard or base.bytes_per_shard
        return ShardsConfig(**values)
