"""Which document an item belongs to: its ``documents.id_field`` value, else the first matching grouping rule.

Pure functions used by ``transforms/documents.py`` (to group and stamp samples) and ``transforms/incremental.py``
(to stop an incremental job when a new item joins a document an earlier run decided). ``document_id`` returns the
id with its origin: the id field's name, or ``group:`` and the rule's fields joined with ``+`` (one document per SKU
or inspection record; the id is the rule's ``prefix`` followed by the values joined with ``+``).
"""

import dataclasses
import unicodedata
from collections.abc import Mapping
from typing import Any

from schemas.config.documents import DocumentsConfig
from schemas.records.samples import Sample
from schemas.records.values import blank


def document_id(metadata: Mapping[str, Any], domain: str, config: DocumentsConfig) -> tuple[str, str] | None:
    """The ``(doc_id, origin)`` of an item from its metadata and the grouping rules, or ``None``."""
    value = metadata.get(config.id_field)
    if not blank(value):
        return id_text(value), config.id_field
    for rule in config.groups:
        if rule.domain is not None and rule.domain != domain:
            continue
        values = [metadata.get(field) for field in rule.fields]
        if all(not blank(value) for value in values):
            return rule.prefix + "+".join(id_text(value) for value in values), "group:" + "+".join(rule.fields)
    return None


def id_text(value: Any) -> str:
    """A document id as text, without the spaces around it and in Unicode's composed form (NFC): a manifest cell
    ``"SKU-1 "`` and ``"SKU-1"``, or ``Café`` typed on two systems, name one document, not two thin ones."""
    return unicodedata.normalize("NFC", str(value)).strip()


def stamp(sample: Sample, config: DocumentsConfig) -> Sample:
    """Return ``sample`` with ``document_id`` set when it belongs to a document."""
    found = document_id(sample.metadata, sample.domain, config)
    if found is None:
        return sample
    return dataclasses.replace(sample, document_id=found[0])
