"""The lookup stand-in for the CLIP model: deterministic texts and colours, unit rows, counted encodes."""

import numpy as np
from PIL import Image

from tests.helpers import make_photo
from transforms.clip_lookup import LookupClipModel


def test_lookup_model_maps_texts_and_colours_deterministically():
    photos = [make_photo(96, 80, seed=seed) for seed in range(2)]
    fake = LookupClipModel({"red": [1, 0, 0]}, dim=4)
    assert np.allclose(fake.encode_texts(["red"])[0], [1, 0, 0, 0])
    assert np.array_equal(fake.encode_texts(["other"]), LookupClipModel(dim=4).encode_texts(["other"]))
    assert fake.encode_images(photos[:2]).shape == (2, 4) and fake.image_encodes == 2


def test_solid_colours_land_near_their_axes_and_every_row_is_a_unit_vector():
    fake = LookupClipModel(dim=8)
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    rows = fake.encode_images([Image.new("RGB", (8, 8), colour) for colour in colours])
    np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-6)
    assert [int(np.argmax(row[:3])) for row in rows] == [0, 1, 2]
    assert fake.encode_texts([]).shape == (0, 8) and fake.encode_images([]).shape == (0, 8)
    assert fake.text_encodes == 0 and fake.image_encodes == 3
