"""Perceptual hashes computed from the one decoded copy of each image, and the distances between them.

``perceptual_hashes`` runs inside the normalise stage, where the image is already decoded, so no later stage decodes
again. Hashes are lowercase hex strings keyed by name: the 64-bit ``phash``, ``dhash`` and ``whash`` of imagehash,
and ``colour``, a small colour signature.

Grayscale hashes cannot tell a black pair of shorts from the same shorts in green (their pHash distance is often
0), yet those are different training examples: a generation model must learn the colour words. The ``colour``
signature is the mean CIELAB colour of a 12x12 grid of cells (432 bytes, 864 hex digits): finer grids catch smaller
recoloured regions (a shorts liner) but let a caption overlay weigh more; 12 was the best of 8, 12 and 16 on
``benchmarks/bench_near_dedup.py``. ``colour_distance``
compares two signatures after fitting away a global brightness and contrast change (lightness ``L' = a L + b`` and
chroma ``ab' = g ab`` with ``a`` and ``g`` held within [0.8, 1.25]; fitted once more without the ``OVERLAY_SHARE``
of cells that differ most, so a saturated logo cannot drag the chroma gain and make a whole product differ) and
returns the largest remaining per-cell difference (lightness counted at half weight), so a re-exported or slightly
brightened photo stays close while a recoloured product region, however small, does not. The offset ``b`` explains a
shift of the mean lightness of at most ``MAX_LIGHTNESS_SHIFT``; the rest of the shift counts in full in every cell, so
frames of clearly different brightness differ even without structure to fit (flat black, grey and white frames
measured 0.0 apart, and near dedup removed two of the three).

A whole-image pHash moves 10-30 bits when a crop takes 5-30% off a side, and a sub-window at a fixed place moves as
much when its box is off by 2%, so ``subwindow`` hashes windows anchored on the content instead: the pHash of a square
window of eight times the blob size around each of the strongest difference-of-Gaussian blobs (OpenCV's SIFT detector,
contrast threshold 0.01 so a steel surface has blobs too, on the image scaled to 128 pixels, or to a shorter side of 64
(at most 512 long) where that is more: a banner or a line-scan strip 128 long is too thin for a window; windows at
least 8% of the shorter side, wholly inside, not flat), up to 48 distinct windows (at most 384 bytes, 768 hex digits;
empty for an image too small or too flat to have one). A crop enlarges what it keeps once scaled to 128 pixels; blobs
are found again at the enlarged scale (their scales are interpolated between the layers of each octave) more often than
ORB's strongest corners were: on ``benchmarks/bench_near_dedup.py``'s 299 crops of 5-30% per side, 282 share a window
within 8 bits with their original (ORB at 384 pixels: 252; with a finer ORB pyramid, steps of 1.1 instead of 1.2: 246),
26 of 3,000 random pairs of bases do (ORB: 75), with 33 windows an image instead of 44. Each window is read as 32x32
cell means from one summed-area table (the area average a resize would give, for every window at once: blob sizes are
continuous, so a resize per window side would be a resize per window) and the DCTs run as one matrix product. A window
inside a crop's kept area is the same window of the original: ``transforms.near_dedup`` buckets these hashes to find
crop and overlay candidates, which it then verifies geometrically."""

import cv2
import imagehash
import numpy as np
from PIL import Image

PHASH = "phash"
COLOUR = "colour"
SUBWINDOW = "subwindow"
WINDOW_SIDE = 128
WINDOW_SHORT_SIDE = 64
WINDOW_LONG_CAP = 512
MAX_WINDOWS = 48
_WINDOW_SCALE = 8.0
_BLOB_CONTRAST = 0.01
_MIN_WINDOW = 0.08
_MIN_WINDOW_STD = 6.0
_DISTINCT_BITS = 4
COLOUR_GRID = 12
_CELL_PIXELS = 4
_GAIN_RANGE = (0.8, 1.25)
_LIGHTNESS_WEIGHT = 0.5
# The mean lightness (CIELAB L, 0-100) a brightness change may move: a +-15% brightness edit moves it up to 12.6 on
# scikit-image and marketing photos; flat black, grey and white frames are 54 and 46 apart.
MAX_LIGHTNESS_SHIFT = 15.0
OVERLAY_SHARE = 0.12
_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_WHITE = np.array([0.95047, 1.0, 1.08883])


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """Convert 8-bit sRGB values (any leading shape, last axis RGB) to CIELAB under D65."""
    c = np.asarray(rgb, np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _SRGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def colour_signature(image: Image.Image) -> str:
    """Return the mean CIELAB colour of each grid cell as hex (L scaled to 0-255, a and b offset by 128)."""
    side = COLOUR_GRID * _CELL_PIXELS
    small = np.asarray(image.convert("RGB").resize((side, side), Image.Resampling.BOX))
    lab = srgb_to_lab(small).reshape(COLOUR_GRID, _CELL_PIXELS, COLOUR_GRID, _CELL_PIXELS, 3).mean(axis=(1, 3))
    quantised = np.stack([lab[..., 0] * 2.55, lab[..., 1] + 128, lab[..., 2] + 128], axis=-1)
    return np.clip(np.rint(quantised), 0, 255).astype(np.uint8).tobytes().hex()


def _dct_rows() -> np.ndarray:
    """The first 8 rows of the 32-point DCT-II (unscaled: a common factor does not move a bit of the hash)."""
    k, n = np.arange(8)[:, None], np.arange(32)[None, :]
    return np.cos(np.pi * k * (2 * n + 1) / 64)


_DCT8 = _dct_rows()


def _phash_bits(grids: np.ndarray) -> list[int]:
    """pHash of each ``(32, 32)`` grid of a ``(n, 32, 32)`` stack."""
    low = _DCT8 @ grids @ _DCT8.T
    bits = (low.reshape(len(grids), 64) > np.median(low.reshape(len(grids), 64), axis=1, keepdims=True)).astype(
        np.uint8
    )
    return [int.from_bytes(row.tobytes(), "big") for row in np.packbits(bits, axis=1)]


def _box_grids(integral: np.ndarray, centres: np.ndarray, sides: np.ndarray, cells: int) -> np.ndarray:
    """Mean of each cell of a ``cells`` x ``cells`` grid over square windows, from a summed-area table.

    The table is interpolated linearly between pixel corners, which is the exact area average of the pixels a
    fractional cell covers (what ``cv2.INTER_AREA`` computes when it shrinks a window).
    """
    steps = np.linspace(-0.5, 0.5, cells + 1)
    edges = centres[:, None, :] + sides[:, None, None] * steps[None, :, None]
    xs, ys = edges[..., 0], edges[..., 1]
    x0 = np.clip(np.floor(xs).astype(np.int64), 0, integral.shape[1] - 2)
    y0 = np.clip(np.floor(ys).astype(np.int64), 0, integral.shape[0] - 2)
    fx, fy = xs - x0, ys - y0
    rows_y, rows_fy = y0[:, :, None], fy[:, :, None]
    cols_x, cols_fx = x0[:, None, :], fx[:, None, :]
    top = integral[rows_y, cols_x] * (1 - cols_fx) + integral[rows_y, cols_x + 1] * cols_fx
    bottom = integral[rows_y + 1, cols_x] * (1 - cols_fx) + integral[rows_y + 1, cols_x + 1] * cols_fx
    table = top * (1 - rows_fy) + bottom * rows_fy
    sums = table[:, 1:, 1:] - table[:, :-1, 1:] - table[:, 1:, :-1] + table[:, :-1, :-1]
    return sums / (sides[:, None, None] / cells) ** 2


def subwindow_hashes(image: Image.Image) -> str:
    """pHashes of up to ``MAX_WINDOWS`` blob-anchored windows, concatenated as 16 hex digits each."""
    gray = np.asarray(image if image.mode == "L" else image.convert("L"))
    scale = min(1.0, WINDOW_SIDE / max(gray.shape))
    if min(gray.shape) * scale < WINDOW_SHORT_SIDE:
        # A wide banner or a line-scan strip scaled to 128 pixels long is 20 high: too thin for one window.
        scale = min(1.0, WINDOW_SHORT_SIDE / min(gray.shape), WINDOW_LONG_CAP / max(gray.shape))
    if scale < 1.0:
        size = (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale)))
        gray = cv2.resize(gray, size, interpolation=cv2.INTER_AREA)
    if min(gray.shape) < 32:
        return ""
    return "".join(f"{value:016x}" for value in _anchored_windows(np.ascontiguousarray(gray)))


def _anchored_windows(gray: np.ndarray) -> list[int]:
    """Distinct window pHashes around the strongest difference-of-Gaussian blobs of ``gray``."""
    height, width = gray.shape
    detector = cv2.SIFT_create(nfeatures=4 * MAX_WINDOWS, contrastThreshold=_BLOB_CONTRAST)
    keypoints = sorted(detector.detect(gray, None), key=lambda k: (-k.response, k.pt[1], k.pt[0], k.size))
    centres = np.array([k.pt for k in keypoints], np.float64).reshape(-1, 2)
    sides = np.array([k.size * _WINDOW_SCALE for k in keypoints], np.float64)
    room = np.minimum(
        np.minimum(centres[:, 0], centres[:, 1]), np.minimum(width - centres[:, 0], height - centres[:, 1])
    )
    usable = (sides >= _MIN_WINDOW * min(height, width)) & (sides / 2 <= room)
    centres, sides = centres[usable], sides[usable]
    if not len(sides):
        return []
    pixels = gray.astype(np.float64)
    integral = cv2.integral(pixels, sdepth=cv2.CV_64F)
    squares = cv2.integral(pixels * pixels, sdepth=cv2.CV_64F)
    # The window's pixel spread, from its sum and sum of squares: a flat window's hash is noise.
    mean = _box_grids(integral, centres, sides, 1)[:, 0, 0]
    spread = np.sqrt(np.maximum(_box_grids(squares, centres, sides, 1)[:, 0, 0] - mean * mean, 0.0))
    textured = spread >= _MIN_WINDOW_STD
    centres, sides = centres[textured], sides[textured]
    if not len(sides):
        return []
    found: list[int] = []
    for value in _phash_bits(_box_grids(integral, centres, sides, 32)):
        if all((value ^ other).bit_count() >= _DISTINCT_BITS for other in found):
            found.append(value)
            if len(found) == MAX_WINDOWS:
                break
    return found


def window_values(text: str) -> list[int]:
    """The window hashes of a ``subwindow`` hex string."""
    return [int(text[start : start + 16], 16) for start in range(0, len(text), 16)]


HASHERS = {
    PHASH: imagehash.phash,
    "dhash": imagehash.dhash,
    "whash": imagehash.whash,
    COLOUR: colour_signature,
    SUBWINDOW: subwindow_hashes,
}


def perceptual_hashes(image: Image.Image, names: list[str]) -> dict[str, str]:
    """Return the named hashes of an RGB image as hex strings.

    The grayscale hashes share one grayscale copy (imagehash converts to it first; converting again is a no-op).
    """
    gray = image.convert("L") if len(set(names) - {COLOUR}) > 1 else image
    return {name: str(HASHERS[name](image if name == COLOUR else gray)) for name in names}


def hash_int(text: str) -> int:
    """The 64-bit integer of a hex hash."""
    return int(text, 16)


def popcount(values: np.ndarray) -> np.ndarray:
    """Set bits of each ``uint64``."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(values)
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8).reshape(*values.shape, 8)
    return np.unpackbits(as_bytes, axis=-1).sum(axis=-1, dtype=np.uint8)


def decode_colour(signature: str | bytes) -> np.ndarray:
    """A colour signature (hex text or its raw bytes) as a ``(cells, 3)`` float array in CIELAB units."""
    return decode_colours([bytes.fromhex(signature) if isinstance(signature, str) else signature])[0]


def decode_colours(raws: list[bytes], cells: int = -1) -> np.ndarray:
    """Equal-length raw colour signatures as one ``(n, cells, 3)`` float array in CIELAB units (``cells`` is read
    off the signatures; give it for a list that may be empty)."""
    values = np.frombuffer(b"".join(raws), np.uint8).reshape(len(raws), cells if cells >= 0 else -1, 3)
    values = values.astype(np.float32)
    return values * np.array([1 / 2.55, 1, 1], np.float32) - np.array([0, 128, 128], np.float32)


def _residuals(x: np.ndarray, y: np.ndarray, fit: np.ndarray | None = None) -> np.ndarray:
    """Per-cell differences left when ``y`` is explained as a brightness and contrast change of ``x``, or ``x`` as one
    of ``y``, whichever is larger; each fitted on the cells ``fit`` marks (all when ``None``).

    ``x`` and ``y`` are channel-first, ``(..., 3, cells)``, so that every operation runs on contiguous rows, and the
    two directions share their sums (means, covariance, the chroma cross term): 2 to 3 times faster than two fits on
    ``(..., cells, 3)`` views, the same values to float32 rounding.
    """
    low, high = _GAIN_RANGE
    weight = np.ones(x.shape[:-2] + x.shape[-1:], np.float32) if fit is None else fit.astype(np.float32)
    total = np.maximum(weight.sum(-1, keepdims=True), 1e-6)
    xl, yl, xab, yab = x[..., 0, :], y[..., 0, :], x[..., 1:, :], y[..., 1:, :]
    x_mean, y_mean = (weight * xl).sum(-1, keepdims=True) / total, (weight * yl).sum(-1, keepdims=True) / total
    x_off, y_off = xl - x_mean, yl - y_mean
    weighted_off = weight * x_off
    covariance = (weighted_off * y_off).sum(-1, keepdims=True) / total
    spreads = (
        (weighted_off * x_off).sum(-1, keepdims=True) / total,
        (weight * y_off * y_off).sum(-1, keepdims=True) / total,
    )
    kept = weight[..., None, :]
    x_kept = xab * kept
    cross = (x_kept * yab).sum((-1, -2))[..., None, None]
    energies = (x_kept * xab).sum((-1, -2))[..., None, None], (yab * kept * yab).sum((-1, -2))[..., None, None]
    worst = None
    for off, spread, energy, to, to_mean, ab, to_ab in (
        (x_off, spreads[0], energies[0], yl, y_mean, xab, yab),
        (y_off, spreads[1], energies[1], xl, x_mean, yab, xab),
    ):
        gain = np.clip(np.where(spread > 1e-6, covariance / np.maximum(spread, 1e-6), 1.0), low, high)
        lightness = to - (gain * off + to_mean)
        chroma_gain = np.clip(np.where(energy > 1e-6, cross / np.maximum(energy, 1e-6), 1.0), low, high)
        chroma = to_ab - chroma_gain * ab
        squared = (_LIGHTNESS_WEIGHT * lightness) ** 2 + (chroma * chroma).sum(-2)
        worst = squared if worst is None else np.maximum(worst, squared)
    shift = y_mean - x_mean
    beyond = shift - np.clip(shift, -MAX_LIGHTNESS_SHIFT, MAX_LIGHTNESS_SHIFT)
    return np.sqrt(worst + beyond * beyond)


def colour_residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Symmetric per-cell colour differences after brightness and contrast compensation, ``(..., cells)``.

    The compensation is fitted twice: on every cell, then without the ``OVERLAY_SHARE`` of cells that differ most,
    so a saturated logo or caption pasted on a copy cannot pull the fit off and make the rest of the picture differ
    (the cells it covers still differ; whether that is an overlay is the caller's call).
    """
    x, y = np.ascontiguousarray(np.swapaxes(x, -1, -2)), np.ascontiguousarray(np.swapaxes(y, -1, -2))
    first = _residuals(x, y)
    fit = first <= np.quantile(first, 1.0 - OVERLAY_SHARE, axis=-1, keepdims=True)
    return _residuals(x, y, fit)


def colour_distance(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Symmetric colour-signature distance; ``x`` and ``y`` are ``(..., cells, 3)`` arrays from ``decode_colour``."""
    return colour_residuals(x, y).max(-1)
