"""The ``[exact_dedup]`` section (``transforms/exact_dedup.py``)."""

import pydantic

from schemas.config.base import Section


class ExactDedupConfig(Section):
    enabled: bool = pydantic.Field(
        True,
        description="Merge identical pictures (same bytes or same pixels). When false, copies of one file are still "
        "merged: a sample's key is its file's SHA-256, which a shard holds once.",
    )
