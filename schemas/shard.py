"""On-disk formats of the shard set: the sample JSON, the per-shard statistics and the shard index.

The JSON written into every shard is a versioned pydantic model; readers accept every version listed in
``SUPPORTED_SAMPLE_VERSIONS``. A change to the fields bumps ``SAMPLE_SCHEMA_VERSION``.
"""

from typing import Any

import pydantic

from schemas.records.samples import ImageInfo

SAMPLE_SCHEMA_VERSION = 1
SUPPORTED_SAMPLE_VERSIONS = (1,)
WIDS_KIND = "wids-shard-index-v1"


class Model(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(frozen=True, extra="forbid")


class SampleRecord(Model):
    """``KEY.json`` in a pairs shard: where the sample came from and everything known about it."""

    schema_version: int = SAMPLE_SCHEMA_VERSION
    key: str
    source: str
    path: str
    domain: str
    split: str
    text: str
    text_source: str
    image_member: str
    sha256: str
    pixel_sha256: str
    image_sha256: str = pydantic.Field(description="SHA-256 of the image member's bytes, for validation.")
    original: ImageInfo
    image: ImageInfo
    notes: list[str] = []
    hashes: dict[str, str] = {}
    scores: dict[str, float] = {}
    annotations: dict[str, Any] = {}
    metadata: dict[str, Any] = {}

    @pydantic.field_validator("schema_version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value not in SUPPORTED_SAMPLE_VERSIONS:
            raise ValueError(f"sample schema version {value} is not one of {SUPPORTED_SAMPLE_VERSIONS}")
        return value


class ShardStats(Model):
    """``NAME_stats.json`` beside every shard."""

    shard: str
    view: str
    split: str
    samples: int
    bytes: int
    image_bytes: int
    domains: dict[str, int]
    first_key: str
    last_key: str


class ShardEntry(Model):
    url: str
    nsamples: int


class ShardIndex(pydantic.BaseModel):
    """The shard index in the wids format (``webdataset.wids``)."""

    model_config = pydantic.ConfigDict(frozen=True, populate_by_name=True)

    kind: str = pydantic.Field(WIDS_KIND, alias="__kind__")
    wids_version: int = 1  # wids refuses an index without it
    name: str
    shardlist: list[ShardEntry]
