"""Tests on the JSON-compatible values records carry in their metadata and text."""

from typing import Any


def blank(value: Any) -> bool:
    """Whether a metadata or text value says nothing: ``None``, ``""``, ``[]`` or ``{}`` (``0`` and ``False`` say
    something). The one test of emptiness every stage uses."""
    return value is None or (isinstance(value, str | list | dict) and not value)
