"""The ``[run]`` section: where the output goes and how many failures the run tolerates."""

import pydantic

from schemas.config.base import PathText, Section


class RunConfig(Section):
    output: PathText = "out"
    max_failure_ratio: float = pydantic.Field(
        0.05, ge=0.0, le=1.0, description="The run fails when more than this share of inputs failed."
    )
