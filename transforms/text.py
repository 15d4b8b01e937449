"""Text: give each sample the best text its metadata offers, cleaned.

Input and output element type: ``Sample``. The first non-empty field of ``text.fields`` wins; HTML is stripped,
entities unescaped, control characters (a NUL, a bell from an old export) turned into spaces and whitespace
collapsed; lists (labels) are joined with commas. A field ``a.b`` names key ``b`` of an object at ``a`` (a
catalogue's localised ``{"title": {"en": ..., "de": ...}}`` is ``title.en``); an object itself is not text, and a
``no_text`` rejection names the keys it holds. A value that is only the image's file name (``IMG_0001.jpg``: Google
Takeout's and many photo libraries' title) is not text either. The sample records the field it came from in
``text_source``.
Reason codes: ``no_text`` (only when ``text.required`` and the captioner is off: with ``caption.captioner.enabled``
a sample without text goes on to the caption stage, which rejects it ``no_caption`` if the captioner gives nothing
usable). Config section: ``text``.
"""

import dataclasses
import html
import posixpath
import re
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import apache_beam as beam

from schemas import reasons
from schemas.config.text import TextConfig
from schemas.records.ledger import RejectItem
from schemas.records.samples import Sample
from schemas.records.values import blank
from transforms._common import StageFn, apply_stage

STAGE = "text"
# A tag starts with its name (or / and its name) right after "<", so "width < 0.2 mm, length > 3 mm" is text; a
# script or style element goes whole (CSS in an exported description is no caption), as do comments.
_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<!--.*?-->|</?[A-Za-z][^<>]*>", re.DOTALL | re.IGNORECASE)
_SPACE = re.compile(r"\s+")
# Control characters (C0 and C1, NUL and BEL among them) and the byte-order mark: never text a caption should hold.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ufeff]")


class TextOutputs(NamedTuple):
    samples: beam.PCollection
    rejected: beam.PCollection


class ChooseText(beam.PTransform):
    """Attach the cleaned text of the first non-empty configured metadata field.

    Args:
        config: The ``text`` section.
        captioner: Whether the captioner is enabled (``caption.captioner.enabled``): then a sample without text
            goes on to be captioned instead of being rejected ``no_text``.
    """

    def __init__(self, config: TextConfig, captioner: bool = False):
        super().__init__()
        self._config = config
        self._captioner = captioner

    def expand(self, samples: beam.PCollection):
        chosen, dropped = apply_stage(samples, "Choose", _ChooseTextFn(self._config, self._captioner))
        return TextOutputs(samples=chosen, rejected=dropped)


def field_value(metadata: Mapping[str, Any], field: str) -> Any:
    """The value of ``field`` in ``metadata``: the key itself, else, for ``a.b``, key ``b`` of the object at ``a``
    (any depth), or the list of key ``b`` of the objects in a list at ``a`` (``tags.name`` of
    ``{"tags": [{"name": ...}]}``, as ``transforms.safety.remove_private`` names fields); ``None`` when there is
    none."""
    if field in metadata:
        return metadata[field]
    return _descend(metadata, field.split("."))


def _descend(value: Any, parts: list[str]) -> Any:
    if not parts:
        return value
    if isinstance(value, Mapping):
        return _descend(value[parts[0]], parts[1:]) if parts[0] in value else None
    if isinstance(value, list | tuple):
        found = [inner for item in value if (inner := _descend(item, parts)) is not None]
        return found or None
    return None


def clean_text(value: Any, max_chars: int = 2000) -> str:
    """Turn a metadata value into plain text: strip HTML, unescape entities, turn control characters into spaces,
    collapse whitespace, bound length. ``None`` and an object are not text (``""``): their Python forms would
    become captions."""
    if value is None or isinstance(value, Mapping):
        return ""
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(part) for part in value if not blank(part) and not isinstance(part, (Mapping, list)))
    text = _SPACE.sub(" ", _CONTROL.sub(" ", html.unescape(_TAG.sub(" ", str(value))))).strip()
    if len(text) > max_chars:
        text = text[:max_chars].rsplit(" ", 1)[0]
    return text


def file_name(sample: Sample) -> str:
    """The sample's file name, lower-cased, extension included: a metadata value that is only this says nothing of
    the image."""
    return posixpath.basename(sample.path).lower()


def choose_text(metadata: dict[str, Any], fields: list[str], max_chars: int, name: str = "") -> tuple[str, str]:
    """Return ``(text, field)`` for the first field whose cleaned value is non-empty and not the file ``name``
    (lower-cased), or ``("", "")``."""
    for field in fields:
        if (text := clean_text(field_value(metadata, field), max_chars)) and text.lower() != name:
            return text, field
    return "", ""


_WORDS = re.compile(r"[^\W\d_]{2,}\s+[^\W\d_]{2,}")  # two words in a row: text, not a code or a path


def _objects(metadata: Mapping[str, Any], fields: list[str]) -> str:
    """What a ``no_text`` rejection adds when a field holds an object: its keys, and how to name one."""
    found = [
        (field, sorted(map(str, value)))
        for field in fields
        if isinstance(value := field_value(metadata, field), Mapping) and value
    ]
    return "".join(
        f"; {field} holds an object with keys {', '.join(keys[:8])}: name one, as text.fields = ['{field}.{keys[0]}']"
        for field, keys in found
    )


def _other_text(metadata: Mapping[str, Any], fields: list[str]) -> str:
    """What a ``no_text`` rejection adds when other metadata keys hold words (a Hugging Face ``text`` column, a
    ``prompt``, a product ``name``): those keys, and how to name one."""
    named = {field.split(".", 1)[0] for field in fields}
    keys = [
        str(key)
        for key, value in metadata.items()
        if str(key) not in named and isinstance(value, str) and _WORDS.search(value)
    ]
    if not keys:
        return ""
    shown = ", ".join(repr(key) for key in keys[:6]) + (f" and {len(keys) - 6} more" if len(keys) > 6 else "")
    example = f"--set 'text.fields=[\"{keys[0]}\"]'"
    return f"; its metadata has words under {shown}: to use one, name it in text.fields ({example})"


def with_text(sample: Sample, config: TextConfig, captioner: bool = False) -> Sample:
    """``sample`` with its text chosen from the metadata fields of ``config``.

    Raises:
        RejectItem: ``no_text`` when no field has text, ``text.required`` is set and no ``captioner`` will write a
            caption.
    """
    text, field = choose_text(dict(sample.metadata), config.fields, config.max_chars, file_name(sample))
    if not text and config.required and not captioner:
        raise RejectItem(
            reasons.NO_TEXT,
            f"none of the text fields {config.fields} has text{_objects(sample.metadata, config.fields)}"
            f"{_other_text(sample.metadata, config.fields)}; add one to the metadata, let the captioner write one "
            "(caption.captioner.enabled=true), or set text.required=false",
        )
    return dataclasses.replace(sample, text=text, text_source=f"metadata.{field}" if field else "")


class _ChooseTextFn(StageFn):
    stage = STAGE

    def __init__(self, config: TextConfig, captioner: bool):
        super().__init__()
        self._config = config
        self._captioner = captioner

    def apply(self, sample: Sample) -> Iterator[Sample]:
        yield with_text(sample, self._config, self._captioner)
