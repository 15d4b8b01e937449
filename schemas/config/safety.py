"""The ``[safety]`` section (``transforms/safety.py``)."""

import pydantic

from schemas.config.base import Section, default_prompts


class SafetyConfig(Section):
    """Unsafe images (CLIP zero-shot), unsafe text (lexicons) and private metadata fields."""

    image_check: bool = pydantic.Field(True, description="Score images against the prompt sets (needs embeddings).")
    unsafe_prompts: list[str] = pydantic.Field(default_factory=lambda: default_prompts("safety", "unsafe_prompts"))
    safe_prompts: list[str] = pydantic.Field(default_factory=lambda: default_prompts("safety", "safe_prompts"))
    image_threshold: float = pydantic.Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Reject when the zero-shot probability mass on unsafe prompts is at least this.",
    )
    logit_scale: float = pydantic.Field(100.0, gt=0.0, description="CLIP's logit scale for the zero-shot softmax.")
    text_check: bool = pydantic.Field(True, description="Reject samples whose text contains a lexicon term.")
    lexicons: list[str] = pydantic.Field(
        default_factory=list, description="Term files (one term a line, # comments); empty: the packaged list."
    )
    extra_terms: list[str] = pydantic.Field(default_factory=list, description="Terms added to the lexicons.")
    allowed_terms: list[str] = pydantic.Field(default_factory=list, description="Terms removed from the lexicons.")
    text_fields: list[str] | None = pydantic.Field(
        None,
        description=(
            "Metadata fields checked besides the sample text, with the text at any depth below them; 'a.b' names key "
            "b of an object at a (as in text.fields). A field a sample lacks is not checked for it (a misspelt name "
            "checks nothing: compare it with the sidecars). Default: every field, at any depth."
        ),
    )
    private_fields: list[str] = pydantic.Field(
        default_factory=lambda: [
            "operator", "operator_name", "inspector", "employee", "employee_id", "worker", "photographer", "author",
            "email", "phone",
        ],
        description="Metadata fields (case-insensitive) removed before shards are written.",
    )  # fmt: skip
