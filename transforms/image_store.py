"""Where a sample's image bytes live, and the one way to read them.

Every stage that needs pixels (model stages, faces, quality, shard writers) reads a sample's normalised image with
``read_image(sample)``, never through ``Sample`` fields directly, so where the bytes are kept can change in one
place.
"""

from schemas.records import Sample


def read_image(sample: Sample) -> bytes:
    """The normalised image bytes of ``sample``."""
    return sample.image
