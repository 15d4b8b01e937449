"""Faces: the Haar cascade finds the astronaut's face; blurring changes that region and nothing else."""

import io
import json

import apache_beam as beam
import numpy as np
import pytest
import skimage.data
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from PIL import Image

from schemas.config.faces import FacesConfig
from schemas.config.normalise import NormaliseConfig
from schemas.records.samples import ImageInfo, Sample
from transforms.faces import BlurFaces, blur_faces, blur_region, detect_faces, load_detector
from transforms.normalise import encode

# Where the astronaut's face is in skimage's 512x512 picture (eyes to chin), by eye.
FACE_CENTRE = (225, 115)


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skimage.data.astronaut())


def _outside(array: np.ndarray, regions: list) -> np.ndarray:
    mask = np.ones(array.shape[:2], bool)
    for left, top, width, height in regions:
        mask[top : top + height, left : left + width] = False
    return array[mask]


def _inside(array: np.ndarray, region) -> np.ndarray:
    left, top, width, height = region
    return array[top : top + height, left : left + width]


def test_detects_the_astronaut_face_and_nothing_on_a_texture(astronaut, photo):
    detector = load_detector()
    (box,) = detect_faces(astronaut, detector, FacesConfig())
    x, y, w, h = box
    assert x < FACE_CENTRE[0] < x + w and y < FACE_CENTRE[1] < y + h
    assert 60 <= w <= 160
    assert detect_faces(photo(seed=3), detector, FacesConfig()) == []


def _whole_frame_scan(image: Image.Image, config: FacesConfig) -> list[tuple]:
    """The plain OpenCV call on the grey copy the stage scans, mapped back to ``image`` pixels: the reference."""
    import cv2

    grey = np.asarray(image.convert("L"))
    scale = min(1.0, config.detect_side / max(grey.shape))
    size = (round(grey.shape[1] * scale), round(grey.shape[0] * scale))
    grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA) if scale < 1 else grey
    smallest = max(12, round(config.min_face * min(grey.shape)))
    found = load_detector().detectMultiScale(grey, config.scale_factor, config.min_neighbors, minSize=(smallest,) * 2)
    return [tuple(round(v / scale) for v in box) for box in np.asarray(found).reshape(-1, 4).tolist()]


def _iou(a: tuple, b: tuple) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter = max(0, min(ax + aw, bx + bw) - max(ax, bx)) * max(0, min(ay + ah, by + bh) - max(ay, by))
    return inter / (aw * ah + bw * bh - inter)


def _with_heads(background: Image.Image, places: list[tuple[int, int, int]]) -> Image.Image:
    """``background`` with the astronaut's head pasted at each ``(x, y, side)``."""
    head, image = Image.fromarray(skimage.data.astronaut()).crop((165, 45, 285, 175)), background.copy()
    for x, y, side in places:
        image.paste(head.resize((side, round(side * 130 / 120))), (x, y))
    return image


@pytest.mark.parametrize(
    "size, places",
    [
        ((900, 600), [(40, 30, 150)]),
        ((900, 600), [(700, 420, 120), (60, 50, 220)]),
        ((640, 480), [(300, 10, 60), (0, 300, 140), (480, 200, 90)]),
        ((1200, 500), [(1080, 380, 100)]),
    ],
    ids=["one large", "two in corners", "three sizes, one at the edge", "wide frame, bottom right"],
)
def test_the_coarse_first_scan_finds_the_faces_the_whole_frame_scan_finds(photo, size, places):
    image = _with_heads(photo(*size, seed=11), places)
    reference = _whole_frame_scan(image, FacesConfig())
    assert len(reference) == len(places)  # the reference itself sees every pasted head
    found = detect_faces(image, load_detector(), FacesConfig())
    assert len(found) == len(reference)
    for box in reference:
        assert max(_iou(box, mine) for mine in found) > 0.5, (box, found)
    unset = detect_faces(image, load_detector(), FacesConfig(coarse_scale_factor=None))
    assert len(unset) == len(reference)
    for box in reference:  # the same boxes, but for a pixel of rounding
        assert max(_iou(box, mine) for mine in unset) > 0.95


class _Recording:
    """A detector that records the window sizes each scan asked for, then runs the real one."""

    def __init__(self):
        self.scans, self._detector = [], load_detector()

    def detectMultiScale(self, grey, scaleFactor, minNeighbors, minSize, maxSize=(0, 0)):  # noqa: N802, N803
        self.scans.append((scaleFactor, minNeighbors, minSize[0], maxSize[0]))
        return self._detector.detectMultiScale(
            grey, scaleFactor=scaleFactor, minNeighbors=minNeighbors, minSize=minSize, maxSize=maxSize
        )


def test_the_fine_scans_skip_window_sizes_far_from_the_faces_the_coarse_scan_saw(photo):
    config = FacesConfig()
    image = _with_heads(photo(900, 600, seed=11), [(700, 420, 120), (60, 50, 220)])
    detector = _Recording()
    found = detect_faces(image, detector, config)
    assert len(found) == 2
    coarse, *fine = detector.scans
    assert coarse[:2] == (config.coarse_scale_factor, 0)
    # The heads are 51 and 94 px on the 384-px grey copy. Without limits every fine scan would start at the
    # smallest wanted face, 13 px here (5% of the 256-px short side), and run to the region's size.
    assert fine and all(scan[:2] == (config.scale_factor, config.min_neighbors) for scan in fine)
    assert all(low > 13 and 0 < high < 256 for *_, low, high in fine), detector.scans


def test_past_the_cap_on_coarse_windows_the_whole_frame_is_scanned(photo, monkeypatch):
    import transforms.faces

    image = _with_heads(photo(900, 600, seed=11), [(40, 30, 150), (600, 300, 120)])
    whole = detect_faces(image, load_detector(), FacesConfig(coarse_scale_factor=None))
    monkeypatch.setattr(transforms.faces, "_MAX_HITS", 0)
    assert detect_faces(image, load_detector(), FacesConfig()) == whole and len(whole) == 2


def test_blur_changes_the_face_region_and_nothing_else(astronaut):
    config = FacesConfig()
    boxes = detect_faces(astronaut, load_detector(), config)
    regions = [blur_region(box, astronaut.size, config.margin) for box in boxes]
    before, after = np.asarray(astronaut), np.asarray(blur_faces(astronaut, regions, config.strength))
    np.testing.assert_array_equal(_outside(before, regions), _outside(after, regions))
    changed = np.abs(_inside(before, regions[0]).astype(int) - _inside(after, regions[0]).astype(int))
    assert changed.mean() > 10
    assert detect_faces(Image.fromarray(after), load_detector(), config) == []


def _sample(source: str, image: Image.Image, domain: str, normalise: NormaliseConfig) -> Sample:
    data = encode(image, normalise)
    info = ImageInfo(image.width, image.height, "PNG", "RGB", len(data))
    return Sample(source.encode().hex(), source, "", domain, {}, data, normalise.format, "", "", info, info)


def _decoded(sample: Sample) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(sample.image)).convert("RGB"))


def test_blurs_rejects_or_keeps_per_domain_and_reencodes_only_changed_images(astronaut, photo):
    normalise = NormaliseConfig(format="png")
    config = FacesConfig(default_action="blur", domains={"factory": "reject", "archive": "keep"})
    inputs = [("marketing-face", "marketing"), ("factory-face", "factory"), ("archive-face", "archive")]
    inputs.append(("marketing-noface", "marketing"))

    def build(name_domain: tuple[str, str]) -> Sample:
        # Built inside the pipeline: Create would pickle and bz2-compress the image bytes, which is slow.
        name, domain = name_domain
        image = photo(seed=3) if name.endswith("noface") else Image.fromarray(skimage.data.astronaut())
        return _sample(name, image, domain, normalise)

    def check(outputs: list[Sample]) -> None:
        original = np.asarray(skimage.data.astronaut())
        unchanged = {name: build((name, domain)).image for name, domain in inputs[2:]}
        by_source = {s.source: s for s in outputs}
        assert sorted(by_source) == ["archive-face", "marketing-face", "marketing-noface"]
        blurred = by_source["marketing-face"]
        faces = blurred.annotations["faces"]
        assert faces["action"] == "blurred" and faces["count"] == 1
        assert faces["detector"] == "opencv_haar_frontalface_default"
        after = _decoded(blurred)
        np.testing.assert_array_equal(_outside(original, faces["blurred"]), _outside(after, faces["blurred"]))
        assert (
            np.abs(_inside(original, faces["blurred"][0]).astype(int) - _inside(after, faces["blurred"][0])).mean()
            > 10
        )
        assert blurred.normalised.bytes == len(blurred.image) and blurred.notes == ("blurred 1 face(s)",)
        assert by_source["archive-face"].annotations["faces"]["action"] == "kept"
        assert by_source["marketing-noface"].annotations["faces"] == {
            "detector": "opencv_haar_frontalface_default",
            "count": 0,
            "boxes": [],
            "action": "none",
        }
        for source, data in unchanged.items():
            assert by_source[source].image == data, f"{source} was re-encoded without a change"

    with BeamTestPipeline() as p:
        out = p | beam.Create(inputs) | beam.Map(build) | BlurFaces(config, normalise)
        assert_that(out.samples | beam.combiners.ToList(), lambda lists: check(lists[0]), label="Kept")
        reasons = out.rejected | beam.Map(lambda row: (row.source, row.reason, len(json.loads(row.detail)["boxes"])))
        assert_that(reasons, equal_to([("factory-face", "face_present", 1)]), label="Rejected")
