"""The ``[near_dedup]`` section (``transforms/near_dedup.py``)."""

from typing import Literal

import pydantic

from schemas.config.base import DuplicateRules


class NearDedupConfig(DuplicateRules):
    """Near-duplicate removal on perceptual hashes (``transforms/near_dedup.py``); defaults from its benchmark."""

    max_distance: int = pydantic.Field(
        8, ge=0, le=31, description="Largest pHash Hamming distance (of 64 bits) between near duplicates."
    )
    second_hash: Literal["dhash", "whash"] | None = pydantic.Field(
        None, description="A second 64-bit hash that must also be within second_max_distance."
    )
    second_max_distance: int = pydantic.Field(10, ge=0, le=64)
    max_colour_distance: float | None = pydantic.Field(
        8.0,
        gt=0,
        description="Largest colour-signature distance (CIELAB, after brightness and contrast compensation); keeps "
        "colour variants of one product apart. Unset to turn the check and its hash off.",
    )
    related_max_distance: int | None = pydantic.Field(
        6,
        ge=0,
        le=31,
        description="Largest pHash distance at which a pair the colour test keeps apart (a product in another "
        "colour) is still one picture for the split: both are kept, in one split group. 6 keeps 108 of 122 such "
        "pairs of one product in the marketing corpus, and 8 of 35 pairs of two look-alike products (all of both "
        "at 8). Never above max_distance. Unset to let the split place colourways apart.",
    )
    subwindow_max_distance: int | None = pydantic.Field(
        None,
        ge=0,
        le=31,
        description="Largest pHash distance between two keypoint-anchored windows that makes a crop or overlay "
        "candidate; candidates are kept only when keypoints verify them (8 is the benchmarked value). Unset "
        "(the default) turns off the geometric path and its 'subwindow' hash: its candidates are bounded per image "
        "(subwindow_candidates), but it costs several times the stage's CPU (transforms/near_dedup.py).",
    )
    subwindow_min_windows: int = pydantic.Field(
        1, ge=1, description="Windows two images must share (within subwindow_max_distance) to be a candidate."
    )
    subwindow_candidates: int = pydantic.Field(
        8,
        ge=1,
        description="Crop and overlay candidate pairs each image keeps for keypoint verification (most shared "
        "windows first): bounds the pairs verified to this many per image, so the work grows with the image count.",
    )
    candidate_distance: int = pydantic.Field(
        10,
        ge=0,
        le=31,
        description="Whole-image pHash distance up to which a pair the pHash test rejects is still verified on "
        "keypoints (a crop of a few percent, an overlay).",
    )
    min_inliers: int = pydantic.Field(
        10, ge=4, description="Keypoint matches consistent with one similarity transform that accept a candidate pair."
    )
    keypoints: int = pydantic.Field(
        500, ge=16, le=5000, description="ORB keypoints per candidate image (on the image scaled to 512 pixels)."
    )

    def hash_names(self) -> list[str]:
        """The hashes normalise must compute for this section (and for decontamination)."""
        names = ["phash"] + ([self.second_hash] if self.second_hash else [])
        names += ["subwindow"] if self.subwindow_max_distance is not None else []
        return names + (["colour"] if self.max_colour_distance is not None else [])
