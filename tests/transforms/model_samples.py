"""Samples for the model-stage tests: built in memory from PIL images, as the normalise stage would emit them."""

import hashlib
from collections.abc import Mapping
from typing import Any

from PIL import Image

from schemas.records.samples import ImageInfo, Sample
from tests.helpers import jpeg_bytes

COLOURS = {"red": (230, 20, 20), "green": (20, 200, 30), "blue": (25, 30, 220), "grey": (128, 128, 128)}


def solid(colour: str, size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), COLOURS[colour])


def make_sample(
    image: Image.Image,
    name: str,
    domain: str = "marketing",
    metadata: Mapping[str, Any] | None = None,
    text: str = "",
    text_source: str = "",
    scores: Mapping[str, float] | None = None,
) -> Sample:
    data = jpeg_bytes(image, quality=95)
    info = ImageInfo(image.width, image.height, "JPEG", "RGB", len(data))
    digest = hashlib.sha256(name.encode() + data).hexdigest()
    return Sample(
        key=digest[:32],
        source=f"/data/{name}.jpg",
        path=f"/data/{name}.jpg",
        domain=domain,
        metadata=dict(metadata or {}),
        image=data,
        image_ext="jpg",
        sha256=digest,
        pixel_sha256=digest,
        original=info,
        normalised=info,
        text=text,
        text_source=text_source,
        scores=dict(scores or {}),
    )
