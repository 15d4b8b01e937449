"""Geometric verification: keypoints under one transform, overlap colour, overlays, low-contrast surfaces."""

import itertools

import numpy as np
import pytest
from PIL import Image

from schemas.config.near_dedup import NearDedupConfig
from tests.transforms import scenes
from transforms._keypoints import extract, match, overlay_patch
from transforms.hashing import colour_residuals, subwindow_hashes, window_values


def _features(image: Image.Image):
    return extract(scenes.jpeg(image, quality=92), NearDedupConfig().keypoints)


def test_a_crop_of_a_fifth_per_side_matches_its_original_on_keypoints():
    original, crop = scenes.scene(1), scenes.crop(scenes.scene(1), 0.2)
    found, inliers = match(_features(crop), _features(original), NearDedupConfig().min_inliers, 8.0)
    assert found is not None and found.inliers == inliers >= NearDedupConfig().min_inliers
    assert found.colour_distance <= NearDedupConfig().max_colour_distance and found.overlay_cells == 0
    windows = window_values(subwindow_hashes(original))
    assert min((a ^ b).bit_count() for a in window_values(subwindow_hashes(crop)) for b in windows) <= 8


def test_a_wide_banner_has_windows_and_its_crop_shares_one():
    # Scaled to 128 pixels long, a 1200x180 banner would be 19 pixels high: no room for a window at all.
    banner = scenes.scene(3, width=1200, height=180)
    windows = window_values(subwindow_hashes(banner))
    assert len(windows) >= 5
    cropped = window_values(subwindow_hashes(scenes.crop(banner, 0.1)))
    assert min((a ^ b).bit_count() for a in cropped for b in windows) <= 8


def test_a_colour_variant_matches_keypoints_but_stays_apart_on_colour():
    original, variant = _features(scenes.scene(1)), _features(scenes.recoloured(scenes.scene(1)))
    found, inliers = match(original, variant, NearDedupConfig().min_inliers, 8.0)
    assert found is None and inliers >= NearDedupConfig().min_inliers


def test_tiny_flat_and_unrelated_images_never_match_and_never_crash():
    tiny, flat = Image.new("RGB", (16, 16), (90, 90, 90)), Image.new("RGB", (400, 300), (120, 130, 140))
    assert subwindow_hashes(tiny) == "" and subwindow_hashes(flat) == ""
    features = [_features(image) for image in (tiny, flat, scenes.scene(1), scenes.texture(1), scenes.texture(2))]
    assert len(features[0].points) == 0 and len(features[1].points) == 0
    for a, b in itertools.combinations(features, 2):
        assert match(a, b, NearDedupConfig().min_inliers, 8.0)[0] is None


def test_an_edge_patch_counts_as_an_overlay_but_a_central_recolour_or_a_band_does_not():
    grid = np.zeros((12, 12))
    grid[0:3, 9:12] = 30.0
    assert overlay_patch(grid, 8.0)
    grid[11, 0:2] = 30.0
    assert overlay_patch(grid, 8.0)
    grid = np.zeros((12, 12))
    grid[4:7, 4:7] = 30.0
    assert not overlay_patch(grid, 8.0)
    grid[0:2, 0:2] = 30.0
    assert not overlay_patch(grid, 8.0)
    band = np.zeros((12, 12))
    band[0, [5, 6, 8, 9, 10]], band[0, 7] = 12.0, 6.0
    assert not overlay_patch(band, 8.0)


def test_a_saturated_logo_does_not_pull_the_colour_fit_off_the_rest_of_the_picture():
    original = scenes.lab_grid((50.0, 40.0, 30.0))
    logo = original.reshape(12, 12, 3).copy()
    logo[0:3, 0:3] = (55.0, -70.0, 60.0)  # 9 of 144 cells: a green badge in a corner
    residuals = colour_residuals(original, logo.reshape(-1, 3)).reshape(12, 12)
    assert residuals[0:3, 0:3].min() > 50  # the badge itself differs by its whole colour
    outside = np.ones((12, 12), bool)
    outside[0:3, 0:3] = False
    assert residuals[outside].max() < 1.0  # nothing else was changed
    assert overlay_patch(residuals, 8.0)


def test_a_recoloured_product_still_differs_with_the_robust_fit():
    red, blue = scenes.lab_grid((50.0, 60.0, 40.0)), scenes.lab_grid((50.0, 10.0, -50.0))
    residuals = colour_residuals(red, blue).reshape(12, 12)
    assert residuals[3:10, 4:8].min() > 50 and not overlay_patch(residuals, 8.0)


def _low_contrast(seed: int, size: int = 200) -> Image.Image:
    """A steel-like surface: blobs of +-10 grey levels around mid grey (few corners at ORB's default threshold)."""
    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 256, (size // 4, size // 4), dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    values = 128 + (np.asarray(noise, np.float64) - 128) * 10 / 128
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8)).convert("RGB")


def test_a_low_contrast_surface_gets_keypoints_its_crop_matches_and_another_patch_does_not():
    surface, other = _low_contrast(3), _low_contrast(4)
    crop = scenes.crop(surface, 0.15)
    min_inliers = NearDedupConfig().min_inliers
    features = [_features(image) for image in (surface, crop, other)]
    assert min(len(feature.points) for feature in features) >= 2 * min_inliers
    assert match(features[1], features[0], min_inliers, 8.0)[0] is not None
    assert match(features[2], features[0], min_inliers, 8.0)[0] is None


@pytest.mark.parametrize("photo", ["coins", "gravel", "grass"])
def test_a_tight_crop_of_a_small_photo_is_enlarged_for_keypoints_and_matches_its_original(photo):
    """A 200-pixel photo (scikit-image's) cropped to 80 x 140: ORB keeps 31 pixels off the border, so at its own size
    the crop had too little room for keypoints (at most 14 inliers); enlarged, it matches, and only its original."""
    import skimage.data

    def small(name: str) -> Image.Image:
        array = getattr(skimage.data, name)()
        return Image.fromarray(array).convert("RGB").resize((200, 200), Image.Resampling.LANCZOS)

    original = small(photo)
    crop_features = _features(original.crop((60, 0, 140, 140)))
    min_inliers = NearDedupConfig().min_inliers
    assert min(crop_features.width, crop_features.height) >= 256
    assert match(crop_features, _features(original), min_inliers, 8.0)[0] is not None
    for other in {"coins", "gravel", "grass"} - {photo}:
        assert match(crop_features, _features(small(other)), min_inliers, 8.0)[0] is None
