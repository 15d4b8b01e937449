"""The ``[documents]`` section with its group rules and placement (``transforms/documents.py``)."""

import pydantic

from schemas.config.base import Section


class GroupRule(Section):
    """One document per distinct value of ``fields`` (one per SKU, one per inspection record id).

    Applies to samples whose metadata has no ``documents.id_field``; the document id is ``prefix`` followed by the
    values joined with ``+``, so ``fields = ["sku"]`` with no prefix joins the SKU's manifest documents.
    """

    fields: list[str] = pydantic.Field(min_length=1)
    domain: str | None = pydantic.Field(None, description="Apply only to this domain; None: every domain.")
    prefix: str = ""


class PlacementConfig(Section):
    """MMC4's placement of images whose position is unknown: CLIP similarity between each image and each sentence,
    images assigned to sentences by linear assignment, an image placed before its sentence."""

    enabled: bool = True
    min_similarity: float = pydantic.Field(
        0.24,
        ge=-1.0,
        le=1.0,
        description="Assignments below this cosine leave the document (OpenFlamingo trained MMC4 with 0.24 on "
        "ViT-L/14; smaller CLIP models score lower, so re-tune it for the configured model).",
    )


class DocumentsConfig(Section):
    """Interleaved documents (``transforms/documents.py``): text and image segments in order, after curation."""

    enabled: bool = pydantic.Field(
        True, description="Assemble documents; when false, text rows (manifest rows without a path) are unused."
    )
    id_field: str = pydantic.Field("doc_id", description="Metadata field holding a sample's or text row's document.")
    position_field: str = pydantic.Field("position", description="Metadata field ordering a document's segments.")
    text_fields: list[str] = pydantic.Field(
        default_factory=lambda: ["text"], description="Fields of a text row tried in order for its text."
    )
    image_text_fields: list[str] = pydantic.Field(
        default_factory=list,
        description="Image metadata fields whose first non-empty value becomes a text segment right after the image "
        "(an inspection note beside its camera view); repeats of the previous text are skipped.",
    )
    document_fields: list[str] = pydantic.Field(
        default_factory=lambda: ["title", "sku", "category", "url"],
        description="Metadata fields copied into the document's metadata from its first member that has them.",
    )
    groups: list[GroupRule] = pydantic.Field(default_factory=list)
    min_images: int = pydantic.Field(1, ge=1, description="Documents with fewer images after curation are dropped.")
    min_text_chars: int = pydantic.Field(1, ge=0, description="Documents with less text after curation are dropped.")
    placement: PlacementConfig = PlacementConfig()
