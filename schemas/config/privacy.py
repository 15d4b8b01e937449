"""Which config keys read metadata fields, so that none reads one ``safety.private_fields`` keeps out of the output.

The safety stage removes private fields from a sample's metadata before its shard is written, but the text, caption,
quality, dedup, split, documents, audit and eval stages read metadata too, some before safety: ``text.fields =
["email"]`` made an e-mail address the caption, ``audit.slices = ["operator"]`` put operator names into the audit. A
config whose key names a private field (at any depth: ``details.inspector``) is refused, naming both keys.
"""

import string
from collections.abc import Iterator
from typing import Any


def _names(key: str, values: Any) -> Iterator[tuple[str, str]]:
    for value in [values] if isinstance(values, str) else values or []:
        yield key, value


def _placeholders(key: str, template: str) -> Iterator[tuple[str, str]]:
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    except ValueError:  # a template that is no format string renders nothing
        return
    yield from ((key, field.removeprefix("source.").removeprefix("target.")) for field in fields)


def field_readers(config: Any) -> Iterator[tuple[str, str]]:
    """``(config key, metadata field)`` for every metadata field the config tells a stage to read."""
    yield from _names("text.fields", config.text.fields)
    for domain, templates in config.caption.templates.items():
        for template in templates:
            yield from _placeholders(f"caption.templates.{domain}", template)
    yield from _names("quality.group_by", config.quality.group_by)
    if config.clip_filter.group_by.startswith("metadata."):
        yield "clip_filter.group_by", config.clip_filter.group_by.removeprefix("metadata.")
    for section in ("near_dedup", "semantic_dedup"):
        rules = getattr(config, section)
        yield from _names(f"{section}.scope", rules.scope)
        yield from _names(f"{section}.keep_distinct", rules.keep_distinct)
    yield from _names("split.group_by", config.split.group_by)
    yield from _names("split.stratify_by", config.split.stratify_by)
    yield from _names("split.pin_field", config.split.pin_field)
    documents = config.documents
    for key in ("id_field", "position_field", "text_fields", "image_text_fields", "document_fields"):
        yield from _names(f"documents.{key}", getattr(documents, key))
    for index, rule in enumerate(documents.groups):
        yield from _names(f"documents.groups[{index}].fields", rule.fields)
    for index, question in enumerate(config.eval_set.questions):
        yield from _names(f"eval_set.questions[{index}].field", question.field)
    for index, rule in enumerate(config.views.edit.rules):
        yield from _names(f"views.edit.rules[{index}].match", rule.match)
        yield from _names(f"views.edit.rules[{index}].differ", rule.differ)
        yield from _placeholders(f"views.edit.rules[{index}].instruction", rule.instruction)
    yield from _names("audit.slices", config.audit.slices)
    yield from _names("audit.defect_columns", config.audit.defect_columns)


def private_readers(config: Any) -> list[str]:
    """One line for each config key that names a field of ``safety.private_fields`` (every part of a dotted or
    ``+``-joined name is a field name)."""
    private = {name.casefold() for name in config.safety.private_fields}
    return [
        f"{key} names {name!r}, which safety.private_fields keeps out of every output"
        for key, name in field_readers(config)
        if any(part.casefold() in private for part in name.replace("+", ".").split("."))
    ]
