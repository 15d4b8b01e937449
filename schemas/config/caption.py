"""The ``[caption]`` section with its captioner and OCR subsections (``transforms/caption.py``)."""

import pydantic

from schemas.config.base import Section, default_prompts


class CaptionerConfig(Section):
    """A captioning model whose caption joins the candidates: CoCa through open_clip (extra `captioner`)."""

    enabled: bool = False
    name: str = "coca_ViT-B-32"
    pretrained: str | None = "mscoco_finetuned_laion2b_s13b_b90k"
    checkpoint: str | None = None
    batch_size: int = pydantic.Field(8, gt=0)
    max_tokens: int = pydantic.Field(30, gt=0, le=76)


class OcrConfig(Section):
    """Text read from the image by RapidOCR (extra `ocr`), for banners and labels; slow on CPU, so off."""

    enabled: bool = False
    min_confidence: float = pydantic.Field(0.5, ge=0.0, le=1.0)


class CaptionConfig(Section):
    """Caption candidates from metadata templates, a captioner and OCR, reranked by CLIP (``transforms/caption.py``).

    ``templates`` maps a domain to format strings over metadata fields; ``default`` applies to other domains. A
    template renders only when every field it names has text.
    """

    templates: dict[str, list[str]] = pydantic.Field(default_factory=lambda: default_prompts("caption", "templates"))
    include_text: bool = pydantic.Field(True, description="The text stage's chosen text is also a candidate.")
    min_chars: int = pydantic.Field(3, ge=1, description="Shorter candidates are not usable.")
    max_chars: int = pydantic.Field(300, gt=0, description="Longer candidates are cut at a word boundary.")
    batch_size: int = pydantic.Field(16, gt=0, description="Samples per rerank batch.")
    required: bool = pydantic.Field(True, description="Reject samples left with no usable caption (no_caption).")
    captioner: CaptionerConfig = CaptionerConfig()
    ocr: OcrConfig = OcrConfig()

    @pydantic.model_validator(mode="after")
    def _check_templates(self) -> "CaptionConfig":
        import string

        for domain, templates in self.templates.items():
            for template in templates:
                try:
                    fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
                except ValueError as error:
                    raise ValueError(f"caption.templates.{domain}: {template!r}: {error}") from None
                if not all(f.isidentifier() for f in fields):
                    raise ValueError(f"caption.templates.{domain}: {template!r}: fields must be plain names")
        return self
