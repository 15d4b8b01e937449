"""Quality measures of one image: decoding to a bounded RGB copy, the subject without its backdrop, each measure."""

import io
import math

import numpy as np
import pytest
from PIL import Image, ImageDraw

from transforms.quality_measures import (
    CLIPPED_HIGH,
    Measures,
    analysis_pixels,
    measure,
    subject_mask,
)


def _encoded(image: Image.Image, format: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def _noise(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(40, 210, (height, width, 3), dtype=np.uint8))


def test_analysis_pixels_shrinks_to_the_side_keeping_the_aspect_and_never_upscales():
    assert analysis_pixels(_encoded(_noise(800, 400)), 256).shape == (128, 256, 3)
    assert analysis_pixels(_encoded(_noise(800, 400), "JPEG"), 256).shape == (128, 256, 3)
    assert analysis_pixels(_encoded(_noise(60, 30)), 256).shape == (30, 60, 3)


def test_analysis_pixels_puts_alpha_on_white_and_scales_sixteen_bit_grey_by_its_range():
    clear = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    assert (analysis_pixels(_encoded(clear), 64) == 255).all()
    grey16 = Image.fromarray(np.full((10, 10), 65535 // 2, np.uint16))
    pixels = analysis_pixels(_encoded(grey16), 64)
    assert pixels.dtype == np.uint8 and pixels.shape == (10, 10, 3)
    assert np.all(np.abs(pixels.astype(int) - 127) <= 1)


def test_a_white_backdrop_is_not_subject_and_a_frame_without_one_is_all_subject():
    shot = Image.new("L", (120, 100), 255)
    ImageDraw.Draw(shot).ellipse((30, 20, 90, 80), fill=60)
    grey = np.asarray(shot)
    grey = np.where(grey < 255, grey + np.random.default_rng(1).integers(0, 60, grey.shape), 255).astype(np.uint8)
    mask = subject_mask(grey)
    assert not mask[0, 0] and mask[50, 60]
    assert 0.2 < mask.mean() < 0.4
    noise = np.asarray(_noise(80, 60).convert("L"))
    assert subject_mask(noise).all()


def test_a_backdrop_along_one_edge_only_stays_subject():
    grey = np.asarray(_noise(100, 100).convert("L")).copy()
    grey[:20] = 255
    assert subject_mask(grey).all()


def test_measures_of_a_white_frame_and_a_black_frame():
    white = measure(np.full((40, 50, 3), 255, np.uint8))
    assert white.highlights_clipped == 1.0 and white.brightness_p99 == 1.0 and white.contrast_rms == 0.0
    black = measure(np.zeros((40, 50, 3), np.uint8))
    assert black.shadows_clipped == 1.0 and black.brightness_p99 == 0.0 and black.highlights_clipped == 0.0
    assert all(math.isfinite(value) for value in (*white, *black))


def test_one_clipped_channel_is_a_saturated_colour_not_a_clipped_highlight():
    red = measure(np.full((30, 30, 3), (CLIPPED_HIGH, 20, 20), np.uint8))
    assert red.highlights_clipped == 0.0 and red.highlights_tinted == 0.0
    pale = measure(np.full((30, 30, 3), (CLIPPED_HIGH, 200, 180), np.uint8))
    assert pale.highlights_tinted == 1.0 and pale.highlights_clipped == 0.0


def _sky_colour(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A bright clear-sky blue: blue at the ceiling, red and green light but below it (tinted, blue-led)."""
    return np.stack(
        [rng.integers(180, 201, shape), rng.integers(215, 236, shape), np.full(shape, 255)], axis=-1
    ).astype(np.uint8)


def test_a_bright_blue_sky_is_not_a_tinted_highlight_but_the_same_blue_off_the_top_edge_is():
    rng = np.random.default_rng(4)
    ground = rng.integers(40, 141, (100, 100, 3), dtype=np.uint8)  # textured, never light: no tinted pixel
    outdoor = ground.copy()
    outdoor[:30] = _sky_colour(rng, (30, 100))
    assert measure(outdoor).highlights_tinted == 0.0
    # The same colour as a patch that does not reach the top row: 30 x 60 of 100 x 100 pixels.
    patch = ground.copy()
    patch[40:70, 20:80] = _sky_colour(rng, (30, 60))
    assert measure(patch).highlights_tinted == pytest.approx(0.18)
    # A pale red region along the top is no sky: only blue-led highlights are left out.
    dusk = ground.copy()
    dusk[:30] = _sky_colour(rng, (30, 100))[..., ::-1]
    assert measure(dusk).highlights_tinted == pytest.approx(0.30)


def test_scores_name_every_measure_rounded_and_read_back():
    measures = Measures(0.1234567, 0.5, 0.25, 0.0, 0.99, 0.3333333, 0.0, 1.0)
    scores = measures.scores()
    assert list(scores) == [f"quality_{name}" for name in Measures._fields]
    assert scores["quality_sharpness_lapvar"] == 0.123457
    assert Measures.from_scores({**scores, "clip_other": 0.5}) == pytest.approx(
        Measures(0.123457, 0.5, 0.25, 0.0, 0.99, 0.333333, 0.0, 1.0)
    )
