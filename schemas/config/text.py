"""The ``[text]`` section (``transforms/text.py``)."""

import pydantic

from schemas.config.base import Section


class TextConfig(Section):
    fields: list[str] = pydantic.Field(
        default_factory=lambda: ["caption", "alt_text", "title", "description", "label"],
        description=(
            "Metadata fields tried in order for a sample's text; the first non-empty one wins. 'a.b' names key b "
            "of an object at a (a localised title: 'title.en'), or of each object in a list at a ('tags.name')."
        ),
    )
    required: bool = pydantic.Field(
        True,
        description=(
            "Reject samples with no text (reason no_text). With caption.captioner.enabled they go on to the "
            "captioner instead, and caption.required rejects those it gives no usable caption (no_caption)."
        ),
    )
    max_chars: int = pydantic.Field(2000, gt=0, description="Longer text is cut at a word boundary.")
