"""Tests on the JSON-compatible values records carry in their metadata and text, and their printable form."""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

# Metadata key naming the annotation file (YOLO, Pascal VOC, COCO) an item's ``objects`` came from: normalise clips
# those boxes to the decoded image and notes it, naming the file, then drops the key.
BOXES_FROM = "__boxes_from__"

# Metadata keys that say how an item was read, not what it is: the ledger records them; shards, survivor choice and
# change detection never see them, so a transient read error cannot change an output byte.
PROVENANCE = ("read_attempts", BOXES_FROM)


def printable(path: str) -> str:
    """``path`` as UTF-8 text: a file name that is not (Python keeps its odd bytes as surrogates) shows them as
    ``\\xNN``. Sources, sample paths and ledger rows hold this form; only ingest's reads use the real name."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return path


def map_leaves(value: Any, change: Callable[[Any], Any]) -> Any:
    """``value`` (JSON-compatible) with ``change`` applied to every leaf (a string, number, boolean or ``None``) and
    every mapping key in it."""
    if isinstance(value, Mapping):
        return {change(key): map_leaves(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [map_leaves(item, change) for item in value]
    return change(value)


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """``value`` (JSON-compatible) with ``change`` applied to every string in it, mapping keys included."""
    return map_leaves(value, lambda leaf: change(leaf) if isinstance(leaf, str) else leaf)


def finite(value: Any) -> Any:
    """``value`` (JSON-compatible) with each NaN or infinite number as ``None``.

    JSON has no such numbers, but Python's ``json`` writes them (``NaN``) and reads them back, and pandas writes
    ``NaN`` for a missing value: such a title became the caption ``nan``, and the metadata, written on as ``NaN``,
    a file strict JSON readers refuse. A missing value is what they mean.
    """
    return map_leaves(value, lambda leaf: None if isinstance(leaf, float) and not math.isfinite(leaf) else leaf)


_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(value: Any) -> tuple[Any, int]:
    """``value`` (JSON-compatible) with each lone UTF-16 surrogate in its strings replaced by U+FFFD, and how many.

    JSON may escape one half of a surrogate pair alone (``"\\ud83d"``: an emoji cut in two by an exporter); Python
    reads it as a code point no UTF-8 writer accepts, so one such title would stop the run at its first write. It
    is replaced as a UTF-8 decoder replaces a bad byte.
    """
    replaced = 0

    def replace(text: str) -> str:
        nonlocal replaced
        text, count = _SURROGATE.subn("\ufffd", text)
        replaced += count
        return text

    return map_strings(value, replace), replaced


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
