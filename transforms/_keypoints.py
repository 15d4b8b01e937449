"""Geometric verification of near-duplicate candidates: ORB keypoints under one transform, then colour.

Near dedup (``transforms.near_dedup``) finds crop and overlay candidates from keypoint-anchored window hashes and
from pHashes a little beyond its threshold. A candidate pair the whole-image test does not already accept is kept only
when:

1. **Keypoints agree under one transform.** ORB (``keypoints`` per image, on the normalised image scaled to 512 pixels,
   or enlarged up to 4 times towards a 256-pixel shorter side when smaller), Lowe's ratio test at 0.8, then RANSAC
   (3-pixel reprojection error) for one similarity transform (the homography with rotation, uniform scale and
   translation: what a crop, resize, overlay or re-encode does); at least ``min_inliers`` matches must fit it, and it
   must be sane (orientation kept, scale within 1/5 to 5). A full 8-parameter ``cv2.findHomography`` bends to take in
   the outliers of repeated patterns: on a scene of repeated shapes it chose a model 5% off in scale with more inliers
   than the true shift, and the colour check then failed on the misregistration. The inliers must not all lie in one
   cell of a 4x4 grid over either frame (``MIN_SPREAD``): one watermark or caption on two different pictures matches
   under one transform, there only (on the benchmark most such matches sit in one cell; no true copy's did). A
   low-contrast image (a steel surface, too few corners at ORB's default FAST threshold) is featured again at
   ``LOW_CONTRAST_FAST``.
2. **The colours agree where the images overlap.** The other image's 128-pixel thumbnail is warped into the frame
   of the image it covers more of (a crop's frame), which must be at least half covered, and the colour signature of
   ``transforms.hashing`` (12x12 cells of mean CIELAB, after brightness and contrast compensation) is compared cell by
   cell. Every cell must be within ``max_colour_distance``, except overlays: at most two small blobs at the frame's
   edge (a logo, a price tag, a watermark; ``overlay_patch``). A colour variant of a product matches its keypoints
   but not this check.

Pure functions (OpenCV, NumPy, no Beam): ``extract`` features one image, ``match`` decides a pair.
``transforms._verify_candidates.VerifyCandidates`` runs them on the candidate pairs of near dedup.
"""

import functools
import io
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from transforms.hashing import COLOUR_GRID, colour_residuals

WORKING_SIDE = 512
LOW_CONTRAST_FAST = 5
MIN_SHORT_SIDE = 256
MAX_ENLARGE = 4.0
THUMB_SIDE = 128
THUMB_QUALITY = 95
RATIO = 0.8
REPROJECTION_PIXELS = 3.0
_MAX_SCALE = 5.0
_CELL_COVERED = 0.999
MAX_PATCH = 4
MIN_OVERLAP = 0.5
MAX_PATCHES = 2
SPREAD_GRID = 4
MIN_SPREAD = 2


class KeypointFeatures(NamedTuple):
    """ORB keypoints of one image (pixel positions in the working image) and a 128-pixel thumbnail as JPEG bytes."""

    width: int
    height: int
    points: np.ndarray
    descriptors: np.ndarray
    thumbnail_jpeg: bytes

    @property
    def thumbnail(self) -> np.ndarray:
        """The thumbnail as an RGB array (decoded once per distinct thumbnail: one image meets many candidates)."""
        return _decoded(self.thumbnail_jpeg)


@functools.lru_cache(maxsize=64)
def _decoded(jpeg: bytes) -> np.ndarray:
    decoded = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    decoded.flags.writeable = False
    return decoded


class Match(NamedTuple):
    """Evidence of an accepted pair: inliers, the largest cell colour difference outside overlay patches, and the
    patches' size in cells (0 when every cell agrees)."""

    inliers: int
    colour_distance: float | None
    overlay_cells: int = 0


def extract(data: bytes, count: int) -> KeypointFeatures:
    """Keypoint features of encoded image bytes (at most ``count`` ORB keypoints; none for a tiny or flat image)."""
    with Image.open(io.BytesIO(data)) as opened:
        opened.draft("RGB", (WORKING_SIDE, WORKING_SIDE))
        image = opened.convert("RGB")
    rgb = np.asarray(image)
    long_side, short_side = max(image.size), min(image.size)
    scale = min(1.0, WORKING_SIDE / long_side)
    if short_side * scale < MIN_SHORT_SIDE:
        # ORB keeps its keypoints 31 pixels off the border: a small image (a tight crop of a 200-pixel steel patch)
        # is enlarged so its middle is not all the room there is.
        scale = max(scale, min(MIN_SHORT_SIDE / short_side, MAX_ENLARGE, 2 * WORKING_SIDE / long_side))
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC)
    height, width = rgb.shape[:2]
    thumb_scale = min(1.0, THUMB_SIDE / max(width, height))
    thumb_size = (max(1, round(width * thumb_scale)), max(1, round(height * thumb_scale)))
    thumbnail = cv2.resize(rgb, thumb_size, interpolation=cv2.INTER_AREA)
    points, descriptors = np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    if short_side >= 32:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        found, described = cv2.ORB_create(nfeatures=count).detectAndCompute(gray, None)
        if len(found) < count // 2:
            # A low-contrast picture (a steel surface, a pale product on white) has few corners at ORB's default
            # FAST threshold; a lower one finds its structure.
            found, described = cv2.ORB_create(nfeatures=count, fastThreshold=LOW_CONTRAST_FAST).detectAndCompute(
                gray, None
            )
        if described is not None and len(found):
            points = np.array([keypoint.pt for keypoint in found], np.float32)
            descriptors = described
    encoded = cv2.imencode(
        ".jpg", cv2.cvtColor(thumbnail, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, THUMB_QUALITY]
    )
    return KeypointFeatures(width, height, points, descriptors, encoded[1].tobytes())


def _sane(homography: np.ndarray | None, width: int, height: int) -> bool:
    """A homography that keeps orientation, maps the frame to a convex shape and scales within bounds."""
    if homography is None or not np.all(np.isfinite(homography)):
        return False
    corners = np.array([[[0, 0]], [[width, 0]], [[width, height]], [[0, height]]], np.float32)
    mapped = cv2.perspectiveTransform(corners, homography)
    if not np.all(np.isfinite(mapped)) or not cv2.isContourConvex(mapped.astype(np.float32)):
        return False
    area = cv2.contourArea(mapped) / max(1.0, float(width * height))
    return cv2.contourArea(mapped, oriented=True) > 0 and 1 / _MAX_SCALE**2 <= area <= _MAX_SCALE**2


class Geometry(NamedTuple):
    """One similarity transform ``a -> b`` (as a 3x3 homography) and which keypoints of each image fit it."""

    inliers: int
    homography: np.ndarray
    a_fits: np.ndarray
    b_fits: np.ndarray


def geometry(a: KeypointFeatures, b: KeypointFeatures, min_inliers: int) -> Geometry | None:
    """Matches of ``a`` in ``b`` passing the ratio test that fit one RANSAC transform ``a -> b``, if it is sane."""
    if min(len(a.descriptors), len(b.descriptors)) < min_inliers:
        return None
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(a.descriptors, b.descriptors, k=2)
    good = [pair[0] for pair in pairs if len(pair) == 2 and pair[0].distance < RATIO * pair[1].distance]
    if len(good) < min_inliers:
        return None
    queries = np.array([match.queryIdx for match in good])
    trains = np.array([match.trainIdx for match in good])
    # OpenCV's RANSAC draws from its global RNG: a fixed seed makes a rerun decide the same.
    cv2.setRNGSeed(0)
    model, mask = cv2.estimateAffinePartial2D(
        a.points[queries].reshape(-1, 1, 2),
        b.points[trains].reshape(-1, 1, 2),
        method=cv2.RANSAC,
        ransacReprojThreshold=REPROJECTION_PIXELS,
        maxIters=2000,
        refineIters=10,
    )
    if model is None or mask is None:
        return None
    homography = np.vstack([model, [0.0, 0.0, 1.0]])
    if not _sane(homography, a.width, a.height):
        return None
    fitting = mask.ravel().astype(bool)
    a_fits, b_fits = np.zeros(len(a.points), bool), np.zeros(len(b.points), bool)
    a_fits[queries[fitting]] = True
    b_fits[trains[fitting]] = True
    return Geometry(int(fitting.sum()), homography, a_fits, b_fits)


def spread(features: KeypointFeatures, fits: np.ndarray) -> int:
    """How many cells of a ``SPREAD_GRID`` x ``SPREAD_GRID`` grid over the frame hold a fitting keypoint."""
    points = features.points[fits]
    cells = np.clip((points / [features.width, features.height] * SPREAD_GRID).astype(int), 0, SPREAD_GRID - 1)
    return len({(int(x), int(y)) for x, y in cells})


def _cell_colours(rgb: np.ndarray) -> np.ndarray:
    """Mean CIELAB of each grid cell, ``(cells, 3)``."""
    side = COLOUR_GRID * 4
    small = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    # OpenCV's float conversion is the sRGB -> CIELAB (D65) of ``transforms.hashing.srgb_to_lab``, within 0.4 units.
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2Lab)
    return lab.reshape(COLOUR_GRID, 4, COLOUR_GRID, 4, 3).mean(axis=(1, 3)).reshape(-1, 3)


def _covered_cells(covered: np.ndarray) -> np.ndarray:
    """Whether each grid cell is wholly covered by a warped image's mask."""
    side = COLOUR_GRID * 4
    mask = cv2.resize(covered, (side, side), interpolation=cv2.INTER_AREA)
    return mask.reshape(COLOUR_GRID, 4, COLOUR_GRID, 4).min(axis=(1, 3)).reshape(-1) >= _CELL_COVERED


def aligned_residuals(a: KeypointFeatures, b: KeypointFeatures, homography: np.ndarray) -> np.ndarray | None:
    """Per-cell colour differences over the overlap, in the frame of whichever image the other covers more of.

    Returns:
        A ``(COLOUR_GRID, COLOUR_GRID)`` array, NaN for cells not wholly covered by both; ``None`` when the other
        image covers less than ``MIN_OVERLAP`` of either frame (a crop is wholly inside its original; two pictures
        that share only a strip of background are not copies).
    """
    best = None
    thumbnails = {id(a): a.thumbnail, id(b): b.thumbnail}
    for inner, outer, mapping in ((a, b, homography), (b, a, np.linalg.inv(homography))):
        inner_thumb, outer_thumb = thumbnails[id(inner)], thumbnails[id(outer)]
        to_inner = np.diag([inner_thumb.shape[1] / inner.width, inner_thumb.shape[0] / inner.height, 1.0])
        to_outer = np.diag([outer_thumb.shape[1] / outer.width, outer_thumb.shape[0] / outer.height, 1.0])
        thumb_mapping = to_outer @ mapping @ np.linalg.inv(to_inner)
        size = (inner_thumb.shape[1], inner_thumb.shape[0])
        valid = np.ones(outer_thumb.shape[:2], np.float32)
        covered = cv2.warpPerspective(valid, thumb_mapping, size, flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
        full = _covered_cells(covered)
        if best is None or full.sum() > best[0].sum():
            best = (full, inner_thumb, outer_thumb, thumb_mapping, size)
    full, inner_thumb, outer_thumb, thumb_mapping, size = best
    if full.sum() < MIN_OVERLAP * COLOUR_GRID**2:
        return None
    warped = cv2.warpPerspective(outer_thumb, thumb_mapping, size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    # Warping enlarges the other thumbnail by ``factor``: the inner one is taken through the same loss of detail, or
    # every cell on a sharp edge would differ.
    factor = float(np.sqrt(abs(np.linalg.det(thumb_mapping[:2, :2]))))
    own = inner_thumb
    if factor < 1.0:
        reduced = (max(1, round(size[0] * factor)), max(1, round(size[1] * factor)))
        own = cv2.resize(cv2.resize(own, reduced, interpolation=cv2.INTER_AREA), size, interpolation=cv2.INTER_LINEAR)
    residuals = np.full(COLOUR_GRID**2, np.nan)
    mine, theirs = _cell_colours(own)[full], _cell_colours(warped)[full]
    residuals[full] = colour_residuals(mine.astype(np.float32), theirs.astype(np.float32))
    return residuals.reshape(COLOUR_GRID, COLOUR_GRID)


def overlay_patch(residuals: np.ndarray, limit: float) -> bool:
    """Whether the cells of a colour-difference grid above ``limit`` are overlays: at most ``MAX_PATCHES`` small
    blobs (at most ``MAX_PATCH`` cells on a side), each touching the frame's edge, as a logo, price tag or watermark
    does. A blob takes in its neighbours above half the limit, so a recoloured band that dips under the limit in one
    cell is one long blob, not two small ones; a recoloured product is not an overlay."""
    values = np.nan_to_num(residuals, nan=0.0)
    count, labels = cv2.connectedComponents((values > limit / 2).astype(np.uint8), connectivity=8)
    blobs = [label for label in range(1, count) if (values[labels == label] > limit).any()]
    if not 0 < len(blobs) <= MAX_PATCHES:
        return False
    last = values.shape[0] - 1
    for label in blobs:
        rows, cols = np.nonzero(labels == label)
        edge = rows.min() == 0 or cols.min() == 0 or rows.max() == last or cols.max() == last
        if not edge or rows.max() - rows.min() >= MAX_PATCH or cols.max() - cols.min() >= MAX_PATCH:
            return False
    return True


def match(
    a: KeypointFeatures, b: KeypointFeatures, min_inliers: int, max_colour: float | None
) -> tuple[Match | None, int]:
    """Decide a candidate pair on keypoints and overlap colour.

    Returns:
        The match when it holds (else ``None``), and the inlier count measured either way.
    """
    found = geometry(a, b, min_inliers)
    count = found.inliers if found is not None else 0
    if found is None or count < min_inliers:
        return None, count
    if min(spread(a, found.a_fits), spread(b, found.b_fits)) < MIN_SPREAD:
        return None, count
    if max_colour is None:
        return Match(count, None, 0), count
    residuals = aligned_residuals(a, b, found.homography)
    if residuals is None:
        return None, count
    differing = np.nan_to_num(residuals, nan=0.0) > max_colour
    patch = int(differing.sum()) if differing.any() and overlay_patch(residuals, max_colour) else 0
    if differing.any() and not patch:
        return None, count
    colour = float(np.nanmax(np.where(differing, np.nan, residuals)))
    return Match(count, round(colour, 2), patch), count
