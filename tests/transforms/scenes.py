"""Generated pictures for the near-dedup and keypoint tests: scenes with structure keypoints hold on to, their crops
and recolourings, and CIELAB colour-signature grids."""

import io
import random

import numpy as np
from PIL import Image, ImageDraw


def jpeg(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", **options)
    return buffer.getvalue()


def scene(seed: int, width: int = 480, height: int = 360) -> Image.Image:
    """A generated photo with structure keypoints can hold on to: shapes of random colours on a light ground."""
    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), tuple(rng.randint(150, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y, size = rng.randint(0, width), rng.randint(0, height), rng.randint(8, 60)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + size, y + rng.randint(8, 60)), fill=colour)
        else:
            draw.ellipse((x, y, x + size, y + size), fill=colour, outline=(0, 0, 0))
    return image


def crop(image: Image.Image, share: float) -> Image.Image:
    w, h = image.size
    return image.crop((round(w * share), round(h * share), round(w * (1 - share)), round(h * (1 - share))))


def lab_grid(product: tuple[float, float, float], background=(95.0, 0.0, 0.0)) -> np.ndarray:
    """A 12x12 CIELAB signature: a product block in the middle of a plain background."""
    grid = np.tile(np.array(background, np.float32), (12, 12, 1))
    grid[3:10, 4:8] = product
    return grid.reshape(-1, 3)


def recoloured(image: Image.Image) -> Image.Image:
    """The same picture with its colour channels rotated: every shape in another colour, the same structure."""
    return Image.fromarray(np.asarray(image)[:, :, [2, 0, 1]])


def texture(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (300, 300, 3), dtype=np.uint8))
