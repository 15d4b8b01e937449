"""The ``[clip_filter]`` section (``transforms/clip_filter.py``)."""

import pydantic

from schemas.config.base import Section


class ClipFilterConfig(Section):
    """The CLIP-score filter (``transforms/clip_filter.py``): an absolute threshold or a keep-fraction per group.

    With neither set, scores are recorded and nothing is removed; setting both is an error.
    """

    threshold: float | None = pydantic.Field(
        None, ge=-1.0, le=1.0, description="Keep samples scoring at least this (LAION: 0.28 with ViT-B/32)."
    )
    keep_fraction: float | None = pydantic.Field(
        None, gt=0.0, le=1.0, description="Keep this share of each group, highest scores first."
    )
    group_by: str = pydantic.Field(
        "domain", description="Groups of keep_fraction: 'domain', 'all', or 'metadata.FIELD'."
    )
    num_quantiles: int = pydantic.Field(1001, ge=3, description="Resolution of the per-group quantiles.")

    @pydantic.model_validator(mode="after")
    def _one_rule(self) -> "ClipFilterConfig":
        if self.threshold is not None and self.keep_fraction is not None:
            raise ValueError("clip_filter: set threshold or keep_fraction, not both")
        if self.group_by not in ("domain", "all") and not self.group_by.startswith("metadata."):
            raise ValueError("clip_filter.group_by must be 'domain', 'all' or 'metadata.FIELD'")
        return self
