"""High bit depth grey (16-bit and 32-bit integer, 32-bit float) to 8 bits, and what the scaling assumed.

Integer images are scaled by the bit depth their data uses, as a viewer that knows the camera shows them: a 12-bit
machine-vision frame saved in a 16-bit PNG (values 0-4095) is divided by 4095, not by 65535 (which leaves it nearly
black). The depth is the file's own when it names one below its container (a TIFF whose ``BitsPerSample`` is 12);
otherwise the smallest of 10, 12, 14 and 16 bits that holds the image's largest value. A dark 16-bit photo keeps its
darkness as long as one value passes 14 bits (16,383); a whole frame darker than that is read as 14-bit data. Values
beyond 16 bits (mode ``I``) are scaled by their largest. Float images are scaled by their value range (a unit range
is kept as it is). The result depends on the pixels and tags alone, so the same file always gives the same bytes.
"""

import numpy as np
from PIL import Image

HIGH_DEPTH_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
DEPTHS = (10, 12, 14, 16)
_BITS_PER_SAMPLE = 258


def to_8bit(image: Image.Image) -> tuple[Image.Image, str]:
    """``image`` (a mode in ``HIGH_DEPTH_MODES``) as 8-bit grey (mode ``L``), and a note saying how it was scaled."""
    array = np.asarray(image)
    if image.mode == "F":
        finite = array[np.isfinite(array)]
        top = float(finite.max()) if finite.size else 1.0
        low = min(0.0, float(finite.min()) if finite.size else 0.0)
        scale = 1.0 if top <= 1.0 and low >= 0.0 else (top - low or 1.0)
        scaled = np.nan_to_num((array - low) / scale, nan=0.0) * 255.0
        note = f"scaled 32-bit float values to 8 bits by their range ({low:g} to {low + scale:g})"
    else:
        largest = int(array.max(initial=0))
        bits = data_depth(image, largest)
        top = float(2**bits - 1) if bits else float(largest)
        scaled = array.astype(np.float64) * (255.0 / top)
        held = f"as {bits}-bit data" if bits else "by its largest value"
        note = f"scaled high bit depth to 8 bits {held} (largest value {largest})"
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L"), note


def data_depth(image: Image.Image, largest: int) -> int | None:
    """The bits an integer ``image`` whose largest value is ``largest`` uses; None beyond 16 bits."""
    stored = _stored_bits(image)
    if stored and largest < 2**stored:
        return stored
    return next((bits for bits in DEPTHS if largest < 2**bits), None)


def _stored_bits(image: Image.Image) -> int | None:
    """The TIFF's ``BitsPerSample`` when it is below 16 (Pillow widens 12-bit samples to a 16-bit mode)."""
    tags = getattr(image, "tag_v2", None)
    value = tags.get(_BITS_PER_SAMPLE) if tags is not None else None
    bits = value[0] if isinstance(value, tuple) and value else value
    return bits if isinstance(bits, int) and 8 < bits < 16 else None
