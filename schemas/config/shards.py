"""The ``[shards]`` section: shard sizes and counts (``transforms/write_shards.py``)."""

import pydantic

from schemas.config.base import Section


class ShardsConfig(Section):
    samples_per_shard: int = pydantic.Field(1000, gt=0)
    bytes_per_shard: int = pydantic.Field(512 * 1024 * 1024, gt=0)
    min_shards: int = pydantic.Field(1, ge=1, description="At least this many shards (loader workers x nodes).")
    ledger_rows_per_part: int = pydantic.Field(1_000_000, gt=0)
