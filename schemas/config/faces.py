"""The ``[faces]`` section (``transforms/faces.py``)."""

from typing import Literal

import pydantic

from schemas.config.base import Section

FaceAction = Literal["blur", "reject", "keep"]


class FacesConfig(Section):
    """Face detection (OpenCV Haar cascade) and what to do with images that show faces, per domain."""

    enabled: bool = pydantic.Field(True, description="Detect faces; when false the stage passes samples through.")
    default_action: FaceAction = pydantic.Field("blur", description="Action for domains not listed in `domains`.")
    domains: dict[str, FaceAction] = pydantic.Field(
        default_factory=lambda: {"marketing": "blur"}, description="Action by domain: blur, reject or keep."
    )
    detect_side: int = pydantic.Field(384, gt=0, description="Longer side of the grey copy the detector scans.")
    min_face: float = pydantic.Field(0.05, gt=0.0, le=1.0, description="Smallest face side, share of the short side.")
    scale_factor: float = pydantic.Field(1.1, gt=1.0, description="Haar cascade pyramid step.")
    coarse_scale_factor: float | None = pydantic.Field(
        1.3,
        gt=1.0,
        description="Pyramid step of a first, coarse scan; the scan at scale_factor then runs only around the windows "
        "it accepts. Unset (none) scans the whole frame at scale_factor.",
    )
    min_neighbors: int = pydantic.Field(5, ge=1, description="Haar cascade overlapping detections needed.")
    margin: float = pydantic.Field(0.15, ge=0.0, le=1.0, description="Blurred region grows by this share per side.")
    strength: float = pydantic.Field(0.2, gt=0.0, description="Blur radius as a share of the region's longer side.")
