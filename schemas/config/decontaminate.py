"""The ``[decontaminate]`` section (``transforms/decontaminate.py``)."""

from typing import Any

import pydantic

from schemas.config.base import Section
from schemas.config.ingest import InputSpec


class DecontaminateConfig(Section):
    """Reject samples that duplicate evaluation or holdout images (``transforms/decontaminate.py``)."""

    exclude: list[InputSpec] = pydantic.Field(
        default_factory=list,
        description="Evaluation or holdout images: folders, file patterns or manifests, as ingest inputs.",
    )
    max_distance: int = pydantic.Field(8, ge=0, le=31, description="Largest pHash Hamming distance to an eval item.")
    max_colour_distance: float | None = pydantic.Field(
        8.0, gt=0, description="Largest colour-signature distance to an eval item; unset to skip the check."
    )

    @pydantic.field_validator("exclude", mode="before")
    @classmethod
    def _paths_as_specs(cls, value: Any) -> Any:
        return (
            [{"path": item} if isinstance(item, str) else item for item in value] if isinstance(value, list) else value
        )
