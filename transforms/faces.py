"""Faces: detect faces with OpenCV's Haar cascade, then blur them, reject the image, or keep it, per domain.

Input and output element type: ``Sample``. Every sample is measured: ``annotations["faces"]`` records the detector,
the boxes found (``[x, y, width, height]`` in pixels of the normalised image), the regions blurred and the action
taken. The action comes from ``faces.domains`` (by domain) or ``faces.default_action``:

- ``blur``: each face region (the box grown by ``faces.margin``) is Gaussian-blurred and nothing outside it changes;
  the image is re-encoded once with the normalise settings, and only when a face was found;
- ``reject``: the sample leaves with reason ``face_present`` (the boxes in the ledger detail);
- ``keep``: the image is left as it is (the boxes are still recorded, for the audit).

The detector is ``haarcascade_frontalface_default.xml`` from ``opencv-python-headless<5`` (BSD; version 5 ships no
cascades). It finds frontal faces only: profiles and small faces are missed, so ``blur`` lowers identifiability, it
does not guarantee anonymity. A coarse first scan (``faces.coarse_scale_factor``) picks the regions the configured
scan then covers: on ``benchmarks/bench_faces.py`` it finds the faces the whole-frame scan finds (as many as that scan
itself keeps when the frame moves by one pixel) at two thirds of its time. Config section: ``faces``. Metrics:
``faces/images_with_faces``, ``faces/faces``, ``faces/blurred``, ``faces/rejected``, ``faces/failed``.
"""

import dataclasses
import io
import math
from collections.abc import Iterator
from typing import NamedTuple

import apache_beam as beam
import numpy as np
from PIL import Image, ImageFilter

from schemas import reasons
from schemas.config.faces import FacesConfig
from schemas.config.normalise import NormaliseConfig
from schemas.records.ledger import RejectItem
from schemas.records.samples import ImageInfo, Sample
from transforms._common import StageFn, apply_stage
from transforms.image_store import read_image, replace_image
from transforms.normalise import encode

STAGE = "faces"
DETECTOR = "opencv_haar_frontalface_default"
_CASCADE_FILE = "haarcascade_frontalface_default.xml"
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}
_MAX_HITS = 256  # coarse windows past which the whole frame is scanned (the corpora's photos give at most 41)

Box = tuple[int, int, int, int]


class FacesOutputs(NamedTuple):
    samples: beam.PCollection
    rejected: beam.PCollection


class BlurFaces(beam.PTransform):
    """Detect faces in every sample, record the boxes, then blur, reject or keep as its domain says."""

    def __init__(self, config: FacesConfig, normalise: NormaliseConfig):
        super().__init__()
        self._config = config
        self._normalise = normalise

    def expand(self, samples: beam.PCollection) -> FacesOutputs:
        if not self._config.enabled:
            empty = samples.pipeline | "NoRejections" >> beam.Create([])
            return FacesOutputs(samples=samples, rejected=empty)
        kept, dropped = apply_stage(samples, "Detect", _FacesFn(self._config, self._normalise))
        return FacesOutputs(samples=kept, rejected=dropped)


def action_for(domain: str, config: FacesConfig) -> str:
    """The configured action for a domain: ``blur``, ``reject`` or ``keep``."""
    return config.domains.get(domain, config.default_action)


def load_detector():
    """Load the Haar cascade that ships inside ``opencv-python-headless``."""
    import cv2

    path = cv2.data.haarcascades + _CASCADE_FILE
    detector = cv2.CascadeClassifier(path)
    if detector.empty():
        raise RuntimeError(f"OpenCV could not load {path}; install opencv-python-headless<5 (version 5 ships none)")
    return detector


def detect_faces(image: Image.Image, detector, config: FacesConfig) -> list[Box]:
    """Return face boxes ``(x, y, width, height)`` in ``image`` pixels, sorted.

    The detector sees a grey copy whose longer side is at most ``faces.detect_side`` (the cascade's cost grows with
    the pixel count, and faces smaller than ``faces.min_face`` of the shorter side are not wanted anyway). With
    ``faces.coarse_scale_factor`` set, a first scan at that coarser pyramid step keeps every window the cascade
    accepts (no neighbours needed), and the configured scan runs only around them (``_scan_around``).
    """
    import cv2

    grey = np.asarray(image.convert("L"))
    scale = min(1.0, config.detect_side / max(grey.shape))
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    smallest = max(12, round(config.min_face * min(grey.shape)))
    if config.coarse_scale_factor is None:
        found = _scan(grey, detector, config, smallest)
    else:
        found = _scan_around(grey, detector, config, smallest)
    boxes = []
    for x, y, w, h in found:
        left, top = round(x / scale), round(y / scale)
        right, bottom = min(image.width, round((x + w) / scale)), min(image.height, round((y + h) / scale))
        boxes.append((left, top, right - left, bottom - top))
    return sorted(boxes)


def _scan(grey: np.ndarray, detector, config: FacesConfig, smallest: int, largest: int = 0) -> list[Box]:
    """The configured scan for windows from ``smallest`` to ``largest`` pixels (0: as large as the frame)."""
    found = detector.detectMultiScale(
        grey,
        scaleFactor=config.scale_factor,
        minNeighbors=config.min_neighbors,
        minSize=(smallest, smallest),
        maxSize=(largest, largest),
    )
    return [tuple(box) for box in np.asarray(found).reshape(-1, 4).tolist()]


def _scan_around(grey: np.ndarray, detector, config: FacesConfig, smallest: int) -> list[Box]:
    """The configured scan, run only on the regions around the windows a coarse scan accepts, at their sizes.

    Most of a frame holds no window that passes every stage of the cascade even at a coarse step, and the fine
    scan's cost is its pixel count: a region is a coarse window grown by its own size on each side, and overlapping
    regions are merged, so each face is scanned once with its neighbours. A face lies within one coarse step of the
    window that accepted it, so a region is scanned for windows within two coarse steps of the sizes accepted in it;
    that skips the pyramid levels of smaller windows, which hold most of a region's pixels. On
    ``benchmarks/bench_faces.py`` every face the whole-frame scan finds has a coarse window on it; the boxes differ
    from a whole-frame scan's as much as a one-pixel shift of the frame moves them (the cascade's grid starts at the
    region's corner).
    """
    hits = detector.detectMultiScale(
        grey, scaleFactor=config.coarse_scale_factor, minNeighbors=0, minSize=(smallest, smallest)
    )
    if len(hits) > _MAX_HITS:  # a crowd or a pathological texture: the regions would cover the frame anyway
        return _scan(grey, detector, config, smallest)
    height, width = grey.shape
    grown = [
        ((max(0, x - w), max(0, y - h), min(width, x + 2 * w), min(height, y + 2 * h)), w)
        for x, y, w, h in np.asarray(hits).reshape(-1, 4).tolist()
    ]
    spread = config.coarse_scale_factor**2
    found = []
    for left, top, right, bottom in _merged([region for region, _ in grown]):
        sizes = [w for (x0, y0, x1, y1), w in grown if left <= x0 and x1 <= right and top <= y0 and y1 <= bottom]
        low, high = max(smallest, math.floor(min(sizes) / spread)), math.ceil(max(sizes) * spread)
        crop = np.ascontiguousarray(grey[top:bottom, left:right])
        found += [(x + left, y + top, w, h) for x, y, w, h in _scan(crop, detector, config, low, high)]
    return found


def _merged(regions: list[Box]) -> list[Box]:
    """``(left, top, right, bottom)`` regions merged into the bounding boxes of those that overlap, until none do."""
    merged = sorted(regions)
    changed = True
    while changed:
        changed, out = False, []
        for region in merged:
            for index, other in enumerate(out):
                if region[0] < other[2] and other[0] < region[2] and region[1] < other[3] and other[1] < region[3]:
                    out[index] = (
                        min(region[0], other[0]),
                        min(region[1], other[1]),
                        max(region[2], other[2]),
                        max(region[3], other[3]),
                    )
                    changed = True
                    break
            else:
                out.append(region)
        merged = sorted(out)
    return merged


def blur_region(box: Box, size: tuple[int, int], margin: float) -> Box:
    """The region blurred for a face box: the box grown by ``margin`` of its size on each side, inside the image."""
    x, y, w, h = box
    grow_x, grow_y = round(w * margin), round(h * margin)
    left, top = max(0, x - grow_x), max(0, y - grow_y)
    right, bottom = min(size[0], x + w + grow_x), min(size[1], y + h + grow_y)
    return left, top, right - left, bottom - top


def blur_faces(image: Image.Image, regions: list[Box], strength: float) -> Image.Image:
    """Return a copy of ``image`` with each region Gaussian-blurred; pixels outside every region are untouched.

    The blur radius is ``strength`` times the region's longer side, so a large face is blurred as much as a small
    one relative to its size.
    """
    result = image.copy()
    for left, top, width, height in regions:
        if width <= 0 or height <= 0:
            continue
        crop = result.crop((left, top, left + width, top + height))
        radius = max(2.0, strength * max(width, height))
        blurred = crop.filter(ImageFilter.GaussianBlur(radius))
        result.paste(blurred, (left, top))
    return result


def blur_boxes(image: Image.Image, boxes: list[Box], config: FacesConfig) -> tuple[list[Box], Image.Image]:
    """The regions blurred for face ``boxes`` (``blur_region``) and ``image`` with them blurred (``blur_faces``)."""
    regions = [blur_region(box, image.size, config.margin) for box in boxes]
    return regions, blur_faces(image, regions, config.strength)


def decode(sample: Sample) -> Image.Image:
    image = Image.open(io.BytesIO(read_image(sample)))
    image.load()
    return image.convert("RGB")


class _FacesFn(StageFn):
    stage = STAGE

    def __init__(self, config: FacesConfig, normalise: NormaliseConfig):
        super().__init__()
        self._config = config
        self._normalise = normalise
        self._with_faces = beam.metrics.Metrics.counter(STAGE, "images_with_faces")
        self._faces = beam.metrics.Metrics.counter(STAGE, "faces")
        self._blurred = beam.metrics.Metrics.counter(STAGE, "blurred")
        self._detector = None

    def setup(self):
        import cv2

        # One thread per detector: Beam already runs one bundle per core.
        cv2.setNumThreads(1)
        self._detector = load_detector()

    def apply(self, sample: Sample) -> Iterator[Sample]:
        image = decode(sample)
        boxes = detect_faces(image, self._detector, self._config)
        action = action_for(sample.domain, self._config)
        record = {"detector": DETECTOR, "count": len(boxes), "boxes": [list(b) for b in boxes], "action": "none"}
        if boxes:
            self._with_faces.inc()
            self._faces.inc(len(boxes))
        if boxes and action == "reject":
            raise RejectItem(
                reasons.FACE_PRESENT,
                f"{len(boxes)} face(s) found; the faces action for domain {sample.domain!r} is 'reject'",
                boxes=record["boxes"],
            )
        if not boxes or action == "keep":
            record["action"] = "kept" if boxes else "none"
            yield dataclasses.replace(sample, annotations={**sample.annotations, "faces": record})
            return
        regions, blurred = blur_boxes(image, boxes, self._config)
        normalise = self._normalise
        if normalise.format != sample.image_ext:
            normalise = normalise.model_copy(update={"format": sample.image_ext})
        encoded = encode(blurred, normalise)
        self._blurred.inc()
        record.update(action="blurred", blurred=[list(r) for r in regions])
        facts = ImageInfo(image.width, image.height, _PIL_FORMATS[sample.image_ext], "RGB", len(encoded))
        yield replace_image(
            sample,
            encoded,
            normalised=facts,
            notes=(*sample.notes, f"blurred {len(boxes)} face(s)"),
            annotations={**sample.annotations, "faces": record},
        )
