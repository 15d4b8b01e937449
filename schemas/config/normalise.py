"""The ``[normalise]`` section (``transforms/normalise.py``)."""

from typing import Literal

import pydantic

from schemas.config.base import Section


class NormaliseConfig(Section):
    max_pixels: int = pydantic.Field(
        250_000_000,
        gt=0,
        description="Images whose header claims more pixels are rejected as decompression bombs. The default takes "
        "the largest camera photos (61 MP full frame, 100-150 MP medium format, a phone's 200 MP mode); bombs claim "
        "gigapixels. A JPEG is decoded at a reduced scale; another format this large takes seconds and ~3 bytes per "
        "pixel of memory.",
    )
    max_side: int = pydantic.Field(1024, gt=0, description="Longer side after resizing; images are never upscaled.")
    min_side: int = pydantic.Field(
        32,
        ge=1,
        description="Images whose shorter side is smaller are rejected, in the file or after the resize to max_side "
        "(a thin banner); when max_side is below min_side, in the file only.",
    )
    format: Literal["jpg", "png", "webp"] = "jpg"
    quality: int = pydantic.Field(90, ge=1, le=100)
    background: tuple[int, int, int] = (255, 255, 255)
    draft: bool = pydantic.Field(True, description="Let JPEG decoding skip detail the resize would drop anyway.")
