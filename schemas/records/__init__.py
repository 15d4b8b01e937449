"""Typed records that flow through the pipeline's PCollections.

Records are frozen dataclasses; stages return updated copies with ``dataclasses.replace``. Mapping fields hold
JSON-compatible values only, so every record can be written into a shard's JSON and Parquet sidecar as it is. The
records that cross shuffles pickle compactly (``schemas.compact``): Beam's coder pickles them, having no type hint.

The flow is ``InputItem`` (ingest) -> ``Sample`` (normalise and later stages) -> shards, with a ``LedgerRow`` for
every item that leaves the flow (rejected or failed) and for every item written (kept). Deduplication works on
``Fingerprint`` records, which carry no image bytes, so only the final decisions meet the heavy samples.

One module per kind of record: ``inputs`` (``InputItem``), ``samples`` (``Sample``, ``ImageInfo``), ``dedup``
(``Fingerprint``, ``DuplicateCluster``), ``ledger`` (``LedgerRow`` and its constructors, ``RejectItem``), ``caption``
(``Candidate``, ``CaptionRequest``) and ``values`` (``blank``, ``content_metadata``, ``richness``,
``PROVENANCE``). Every public name is re-exported here.
"""

from schemas.records.caption import Candidate, CaptionRequest
from schemas.records.dedup import DuplicateCluster, Fingerprint, fingerprint
from schemas.records.inputs import InputItem
from schemas.records.ledger import LedgerRow, RejectItem, detail_json, failed, rejected
from schemas.records.samples import ImageInfo, Sample
from schemas.records.values import (
    BOXES_FROM,
    PROVENANCE,
    blank,
    content_metadata,
    finite,
    map_leaves,
    map_strings,
    printable,
    richness,
    valid_text,
)

__all__ = [
    "BOXES_FROM",
    "PROVENANCE",
    "Candidate",
    "CaptionRequest",
    "DuplicateCluster",
    "Fingerprint",
    "ImageInfo",
    "InputItem",
    "LedgerRow",
    "RejectItem",
    "Sample",
    "blank",
    "content_metadata",
    "detail_json",
    "failed",
    "finite",
    "fingerprint",
    "map_leaves",
    "map_strings",
    "printable",
    "rejected",
    "richness",
    "valid_text",
]
