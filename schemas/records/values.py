"""Tests on the JSON-compatible values records carry in their metadata and text."""

from collections.abc import Mapping
from typing import Any

# Metadata keys that say how an item was read, not what it is: the ledger records them; shards, survivor choice and
# change detection never see them, so a transient read error cannot change an output byte.
PROVENANCE = ("read_attempts",)


def blank(value: Any) -> bool:
    """Whether a metadata or text value says nothing: ``None``, ``""``, ``[]`` or ``{}`` (``0`` and ``False`` say
    something). The one test of emptiness every stage uses."""
    return value is None or (isinstance(value, str | list | dict) and not value)


def content_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """``metadata`` without its ``PROVENANCE`` keys: what the item is, as shards and decisions see it."""
    return {name: value for name, value in metadata.items() if name not in PROVENANCE}


def richness(metadata: Mapping[str, Any]) -> int:
    """How many content metadata fields say something: a survivor-choice tie-breaker (a catalogued original wins
    over a bare copy)."""
    return sum(1 for value in content_metadata(metadata).values() if not blank(value))
