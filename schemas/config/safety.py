"""The ``[safety]`` section (``transforms/safety.py``)."""

import pydantic

from schemas.config.base import Section, default_prompts


class SafetyConfig(Section):
    """Unsafe images (CLIP zero-shot), unsafe text (lexicons) and private metadata fields."""

    image_check: bool = pydantic.Field(True, description="Score images against the prompt sets (needs embeddings).")
    unsafe_prompts: list[str] = pydantic.Field(
        default_factory=lambda: default_prompts("safety", "unsafe_prompts"),
        description="Prompts describing unsafe images; at least one while image_check is on.",
    )
    safe_prompts: list[str] = pydantic.Field(
        default_factory=lambda: default_prompts("safety", "safe_prompts"),
        description="Prompts describing safe images, the score's other side; at least one while image_check is on.",
    )
    image_threshold: float = pydantic.Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="Reject when the zero-shot probability mass on unsafe prompts is at least this.",
    )
    logit_scale: float = pydantic.Field(100.0, gt=0.0, description="CLIP's logit scale for the zero-shot softmax.")
    text_check: bool = pydantic.Field(True, description="Reject samples whose text contains a lexicon term.")
    lexicons: list[str] = pydantic.Field(
        default_factory=list,
        description="UTF-8 term files (one term a line, # comments), read before any work; empty: the packaged list.",
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

    @pydantic.field_validator("unsafe_prompts", "safe_prompts")
    @classmethod
    def _some_prompts(cls, value: list[str], info: pydantic.ValidationInfo) -> list[str]:
        # The score is the softmax share of the unsafe prompts against the safe ones: without unsafe prompts it is
        # always 0, without safe ones always 1 (every image rejected). Neither means anything; image_check=false
        # is how to turn the check off.
        if info.data.get("image_check", True) and not [prompt for prompt in value if prompt.strip()]:
            raise ValueError(
                f"safety.{info.field_name} holds no prompt, and the image check scores an image by comparing it "
                "with both the unsafe and the safe prompts: give at least one prompt, or set "
                "safety.image_check=false to not score images"
            )
        return value
