"""Quality measures of one image: what ``transforms/quality.py`` writes into ``scores`` and decides on.

``analysis_pixels`` decodes an image once into an RGB uint8 copy at most ``side`` pixels long (JPEG draft mode, then
a box reduction), ``analysis_copy`` reduces an RGB image already decoded (``transforms/normalise.py`` measures the
normalised pixels before encoding them); ``measure`` computes every measure of it as ``Measures``, each finite:

- ``quality_sharpness_lapvar``: variance of the 4-neighbour Laplacian over the subject divided by the subject's grey
  variance (contrast does not decide it; the fixed analysis size keeps image size from deciding it);
- ``quality_highlights_clipped``: share of subject pixels whose two brightest channels are both >= 250 (a saturated
  colour clips one channel and is not counted);
- ``quality_highlights_tinted``: share of subject pixels with one or two channels >= 250 and every channel >= 150: a
  light colour (skin, a pastel garment) pushed against the ceiling, its hue washed toward white. A vivid colour
  clips one channel with the others low and is not counted; an overexposed colour loses its hue this way first.
  A bright blue sky is left out (``sky``): tinted pixels whose blue is at the ceiling and red below it, in a region
  that reaches the frame's top row. A clear sky looks exactly like that in a well-exposed outdoor photo;
- ``quality_shadows_clipped``: share of subject pixels with every channel <= 5;
- ``quality_brightness_p99``: 99th percentile of the brightest channel over the whole frame (headroom);
- ``quality_contrast_rms``: standard deviation of the subject's grey level (0-1);
- ``quality_text_coverage``: share of the frame inside text blocks found by ``transforms._text_regions`` on a
  copy at most ``TEXT_SIDE`` pixels long (large enough for text that covers a frame, and 30% cheaper; a frame wider
  than 2:1 on a copy ``TEXT_SHORT`` on its shorter side instead, within ``TEXT_SIDE`` squared pixels, so a wide
  web banner's letters stay a glyph tall), and again at
  ``PAPER_SIDE`` when that finds little on a light frame with clipped highlights (small print on white paper, whose
  letters are too small at ``TEXT_SIDE``: a scanned label is text-heavy, not overexposed), and on a copy
  ``PRINT_SIDE`` long, when the caller gives one, where the frame is grey smudge without ink (``_smudged``);
- ``quality_subject_share``: share of the frame measured as subject.

The subject is the frame without its backdrop (``subject_mask``): near-uniform regions (grey range within 5x5 at most
``UNIFORM_RANGE`` levels) that touch the border, removed only when they cover at least ``BACKDROP_BORDER`` of the
border (a product shot's white or flat background; a blown-out sky along one edge stays in).

Pure functions (NumPy, OpenCV, Pillow; no Beam).
"""

import io
import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from transforms._bit_depth import HIGH_DEPTH_MODES, to_8bit
from transforms._text_regions import text_coverage

UNIFORM_RANGE = 4
BACKDROP_BORDER = 0.6
MIN_SUBJECT = 0.02
CLIPPED_HIGH, CLIPPED_LOW = 250, 5
TINTED_FLOOR = 150
TEXT_SIDE = 192
# A frame wider than 2:1 would be under TEXT_SHORT tall at TEXT_SIDE long, its letters below a glyph's height: text is
# looked for on a copy TEXT_SHORT tall instead, at most TEXT_SIDE squared pixels (a square frame's cost).
TEXT_SHORT = 96
# A frame this clipped, half of it at least PAPER_WHITE in its brightest channel, with less text than PAPER_TEXT at
# TEXT_SIDE is looked at again at PAPER_SIDE (small print on white paper).
PAPER_CLIPPED = 0.1
PAPER_WHITE = 230
PAPER_TEXT = 0.15
PAPER_SIDE = 384
PRINT_SIDE = 768  # small print's second look: 16-pixel print on a 1240x1754 scan normalised to 1024 reads here
# Small print at the measured copy's size: under INK_SMUDGE of the frame dark (< 100), at least SMUDGE mid-grey.
INK_SMUDGE, SMUDGE = 0.05, 0.05


class Measures(NamedTuple):
    """The quality measures of one image, each finite."""

    sharpness_lapvar: float
    highlights_clipped: float
    highlights_tinted: float
    shadows_clipped: float
    brightness_p99: float
    contrast_rms: float
    text_coverage: float
    subject_share: float

    def scores(self) -> dict[str, float]:
        return {f"quality_{name}": round(float(value), 6) for name, value in self._asdict().items()}

    @classmethod
    def from_scores(cls, scores: Mapping[str, float]) -> "Measures":
        return cls(*(float(scores[f"quality_{name}"]) for name in cls._fields))


def analysis_pixels(data: bytes, side: int) -> np.ndarray:
    """Decode ``data`` once into an RGB uint8 array at most ``side`` pixels long (never upscaled).

    JPEG is decoded in draft mode at the smallest scale that stays at least ``side`` long; palette, alpha (on white),
    grey and 16-bit or float images are converted to 8-bit RGB, high bit depths scaled as normalise scales them
    (``transforms._bit_depth``).
    """
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    longest = max(width, height)
    if image.format == "JPEG" and longest > side:
        # Pillow picks the largest reduction that keeps the image at least this size, so ask for the floor.
        image.draft("RGB", (max(1, width * side // longest), max(1, height * side // longest)))
    return analysis_copy(_to_rgb8(image), side)


def analysis_copy(image: Image.Image, side: int) -> np.ndarray:
    """An 8-bit RGB ``image`` as an array at most ``side`` pixels long (a box reduction; never upscaled).

    The integer part of the reduction averages whole blocks (``Image.reduce``: a 1024-pixel image becomes 256 in a
    fifth of the time a fractional box resize takes); a fractional rest, if any, is a box resize of the smaller copy.
    """
    factor = max(image.size) // side
    if factor > 1:
        image = image.reduce(factor)
    if max(image.size) > side:
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(image)


def _to_rgb8(image: Image.Image) -> Image.Image:
    if image.mode in HIGH_DEPTH_MODES:
        image, _ = to_8bit(image)
    if image.mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def subject_mask(grey: np.ndarray) -> np.ndarray:
    """The pixels of ``grey`` (uint8) that are not backdrop; the whole frame when no backdrop frames it."""
    window = np.ones((5, 5), np.uint8)
    uniform = (cv2.dilate(grey, window) - cv2.erode(grey, window) <= UNIFORM_RANGE).view(np.uint8)
    border = np.concatenate([uniform[0], uniform[-1], uniform[:, 0], uniform[:, -1]])
    if np.count_nonzero(border) < BACKDROP_BORDER * border.size:
        return np.ones(grey.shape, bool)  # most frames: no backdrop, so no labelling
    count, labels = cv2.connectedComponents(uniform, connectivity=4)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    touching = np.zeros(count, bool)
    touching[np.unique(border)] = True
    touching[0] = False
    subject = ~touching[labels]
    return subject if subject.mean() >= MIN_SUBJECT else np.ones(grey.shape, bool)


def measure(rgb: np.ndarray, larger: Callable[[int], np.ndarray] | None = None) -> Measures:
    """All measures of an RGB uint8 image (any size, at least 1x1); ``larger(side)`` gives the same image as RGB at
    most ``side`` pixels long, for small print on paper (without it, the paper pass looks at ``rgb``)."""
    rgb = np.ascontiguousarray(rgb)
    grey8 = _grey(rgb)
    grey = grey8.astype(np.float32) / 255.0
    subject = subject_mask(grey8)
    mask = None if subject.all() else subject.astype(np.uint8)
    pixels = int(np.count_nonzero(subject))
    red, green, blue = cv2.split(rgb)
    brightest = cv2.max(cv2.max(red, green), blue)
    clipped = (red >= CLIPPED_HIGH).view(np.uint8) + (green >= CLIPPED_HIGH) + (blue >= CLIPPED_HIGH)
    light = cv2.min(cv2.min(red, green), blue) >= TINTED_FLOOR
    tinted = (clipped >= 1) & (clipped <= 2) & light
    tinted &= ~sky(tinted & (blue >= CLIPPED_HIGH) & (red < CLIPPED_HIGH))
    if mask is not None:
        clipped, shadows, tinted = clipped * mask, (brightest <= CLIPPED_LOW) & subject, tinted & subject
    else:
        shadows = brightest <= CLIPPED_LOW
    _, tone_std = cv2.meanStdDev(grey, mask=mask)
    _, detail_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F, ksize=1), mask=mask)
    variance = float(tone_std[0, 0]) ** 2
    histogram = np.cumsum(cv2.calcHist([brightest], [0], None, [256], [0, 256]).ravel().astype(np.int64))
    highlights = float(np.count_nonzero(clipped >= 2)) / pixels
    text = text_coverage(_text_grey(grey8, larger))
    paper = np.searchsorted(histogram, 0.5 * histogram[-1]) >= PAPER_WHITE  # half the frame is that light
    if text < PAPER_TEXT and highlights >= PAPER_CLIPPED and paper:
        # White paper with small print (a scanned label, a spec sheet): letters 28 pixels tall on an 800-pixel page
        # are 7 at TEXT_SIDE, too small for a glyph; the page would be judged on its clipped white alone. Only on
        # paper: at PAPER_SIDE the square-wave traces of a PCB (half black) look like a line of n's.
        text = max(text, text_coverage(_at_most(grey8, PAPER_SIDE)))
        if text < PAPER_TEXT and larger is not None and _smudged(grey8):
            # Print of 10 to 16 pixels on a page is grey smudge without ink on the measured copy: ``larger`` gives
            # the pixels its letters need (a twentieth of the corpora's frames get this far).
            text = max(text, text_coverage(_at_most(_grey(larger(PRINT_SIDE)), PRINT_SIDE)))
    return Measures(
        sharpness_lapvar=float(detail_std[0, 0]) ** 2 / max(variance, (1 / 255) ** 2),
        highlights_clipped=highlights,
        highlights_tinted=float(np.count_nonzero(tinted)) / pixels,
        shadows_clipped=float(np.count_nonzero(shadows)) / pixels,
        brightness_p99=float(np.searchsorted(histogram, 0.99 * histogram[-1])) / 255.0,
        contrast_rms=math.sqrt(variance),
        text_coverage=text,
        subject_share=pixels / subject.size,
    )


def sky(blue_led: np.ndarray) -> np.ndarray:
    """The pixels of ``blue_led`` (bool) in 8-connected regions that reach the top row: a bright blue sky."""
    if not blue_led[0].any():
        return np.zeros(blue_led.shape, bool)
    count, labels = cv2.connectedComponents(blue_led.view(np.uint8), connectivity=8)
    top = np.zeros(count, bool)
    top[np.unique(labels[0])] = True
    top[0] = False
    return top[labels]


def _text_grey(grey: np.ndarray, larger: Callable[[int], np.ndarray] | None) -> np.ndarray:
    """The grey copy text is looked for in: ``TEXT_SIDE`` long, or ``TEXT_SHORT`` on its shorter side (within
    ``TEXT_SIDE`` squared pixels) when it is wider than 2:1, taken from ``larger`` when ``grey`` is too small."""
    longer, shorter = max(grey.shape), max(1, min(grey.shape))
    if shorter * TEXT_SIDE >= TEXT_SHORT * longer:
        return _at_most(grey, TEXT_SIDE)
    side = round(min(TEXT_SHORT * longer / shorter, math.sqrt(TEXT_SIDE**2 * longer / shorter)))
    if larger is not None and longer < side:
        grey = _grey(larger(side))
    return _at_most(grey, side)


def _smudged(grey: np.ndarray) -> bool:
    """Whether ``grey`` looks like small print shrunk below a glyph: little ink, some mid-grey (``INK_SMUDGE``)."""
    ink = np.count_nonzero(grey < 100) / grey.size
    return ink < INK_SMUDGE and np.count_nonzero((grey >= 100) & (grey < 200)) / grey.size >= SMUDGE


def _grey(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _at_most(grey: np.ndarray, side: int) -> np.ndarray:
    if max(grey.shape) <= side:
        return grey
    scale = side / max(grey.shape)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
