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
    required: bool = pydantic.Field(True, description="Reject samples with no text (reason no_text).")
    max_chars: int = pydantic.Field(2000, gt=0, description="Longer text is cut at a word boundary.")
