"""Perceptual hashes computed from the one decoded copy of each image.

``perceptual_hashes`` runs inside the normalise stage, where the image is already decoded, so no later stage decodes
again. Hashes are lowercase hex strings keyed by name.
"""

import imagehash
from PIL import Image

HASHERS = {
    "phash": imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
}


def perceptual_hashes(image: Image.Image, names: list[str]) -> dict[str, str]:
    """Return the named 64-bit hashes of an RGB image as hex strings."""
    return {name: str(HASHERS[name](image)) for name in names}
