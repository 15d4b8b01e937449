"""The ``[embed]`` section (``transforms/embed.py``)."""

import pydantic

from schemas.config.base import Section


class EmbedConfig(Section):
    """Image embeddings, once per surviving image (``transforms/embed.py``)."""

    batch_size: int = pydantic.Field(
        16, gt=0, description="Images per forward pass; partial batches are padded so results never depend on it."
    )
