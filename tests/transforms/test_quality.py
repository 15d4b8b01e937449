"""Quality: measures that follow from how an image was made, group outlier bounds, report_only, and a real run."""

import dataclasses
import io
import json
import math
import random
import re
from collections import defaultdict
from pathlib import Path

import apache_beam as beam
import numpy as np
import pydantic
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from schemas.config.normalise import NormaliseConfig
from schemas.config.quality import QualityConfig
from schemas.records.inputs import InputItem
from tests.helpers import jpeg_bytes, make_photo, write_sidecar
from tests.transforms.model_samples import make_sample
from transforms._text_regions import DETECTOR
from transforms.normalise import normalise_item
from transforms.quality import FilterLowQuality, _HistogramFn, failures
from transforms.quality_bounds import BINS
from transforms.quality_measures import Measures, analysis_pixels, measure

_COLLECTED: dict[str, list] = defaultdict(list)


def _encoded(image: Image.Image) -> bytes:
    """Lossless bytes of ``image`` (TIFF for float pixels, which PNG cannot hold)."""
    buffer = io.BytesIO()
    image.save(buffer, format="TIFF" if image.mode == "F" else "PNG")
    return buffer.getvalue()


def measured(image: Image.Image, side: int = 256) -> Measures:
    """The measures the stage takes of ``image``: on a copy ``side`` long, and larger ones for print on paper."""
    data = _encoded(image)
    return measure(analysis_pixels(data, side), lambda larger: analysis_pixels(data, larger))


def reasons_of(image: Image.Image, config: QualityConfig | None = None) -> list[str]:
    return [item["reason"] for item in failures(measured(image), config or QualityConfig())]


def scene(width: int = 480, height: int = 360, seed: int = 0) -> Image.Image:
    """An in-focus picture: a smooth photo with sharp-edged shapes and lines of many colours over it."""
    image = make_photo(width, height, seed=seed)
    draw = ImageDraw.Draw(image)
    rng = random.Random(seed)
    for _ in range(40):
        x, y = rng.randrange(width), rng.randrange(height)
        w, h = rng.randrange(8, width // 4), rng.randrange(8, height // 4)
        colour = tuple(rng.randrange(30, 225) for _ in range(3))
        if rng.random() < 0.5:
            draw.rectangle((x, y, x + w, y + h), fill=colour)
        else:
            draw.line((x, y, x + w, y + h), fill=colour, width=rng.randrange(1, 4))
    return image


def product_shot(size: tuple[int, int] = (480, 600), seed: int = 3) -> Image.Image:
    """A textured, shaded object on a pure white studio background, as a marketing product photo."""
    canvas = Image.new("RGB", size, (255, 255, 255))
    width, height = size
    item = scene(width // 2, height * 2 // 3, seed=seed)
    mask = Image.new("L", item.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, item.width - 1, item.height - 1), fill=255)
    canvas.paste(item, (width // 4, height // 6), mask)
    return canvas


def dark_product(framed: bool = True, size: tuple[int, int] = (480, 600), seed: int = 3) -> Image.Image:
    """A dark garment with a shaded band of skin at its top and a light-grey stripe across it, on a white studio
    background (``framed``) or filling the frame."""
    width, height = size
    item = np.asarray(ImageEnhance.Brightness(scene(width // 2, height * 2 // 3, seed=seed)).enhance(0.35)).copy()
    rows, columns, _ = item.shape
    grain = np.random.default_rng(seed).normal(0.0, 5.0, (rows, columns, 1))
    shade = np.linspace(0.3, 1.0, columns)[None, :, None]
    skin = np.clip(np.array((205, 160, 130), float) * shade + grain, 0, 255)
    item[: rows // 5] = skin[: rows // 5]
    stripe = (slice(rows // 2, rows // 2 + round(rows * 0.15)), slice(columns // 5, columns * 4 // 5))
    item[stripe] = np.clip(170 + grain[stripe], 0, 255)
    garment = Image.fromarray(item)
    if not framed:
        return garment.resize(size)
    canvas = Image.new("RGB", size, (255, 255, 255))
    mask = Image.new("L", garment.size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, garment.width - 1, garment.height - 1), fill=255)
    canvas.paste(garment, (width // 4, height // 6), mask)
    return canvas


def banner(image: Image.Image, share: float = 0.4) -> Image.Image:
    """A dark band over ``share`` of the frame with two lines of white capitals filling it."""
    result = image.copy()
    draw = ImageDraw.Draw(result)
    band = round(image.height * share)
    top = (image.height - band) // 2
    draw.rectangle((0, top, image.width, top + band), fill=(25, 30, 120))
    font = ImageFont.load_default(size=round(band * 0.3))
    for index, text in enumerate(("SUMMER SALE", "UP TO 50% OFF")):
        left, upper, right, lower = draw.textbbox((0, 0), text, font=font, stroke_width=2)
        x = (image.width - (right - left)) / 2 - left
        y = top + band / 2 * index + (band / 2 - (lower - upper)) / 2 - upper
        draw.text((x, y), text, font=font, fill=(255, 255, 255), stroke_width=2, stroke_fill=(255, 255, 255))
    return result


def _with_alpha(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(image.size))
    return rgba


def label_scan(
    size: tuple[int, int] = (400, 300), paper: int = 250, font_size: int = 22, rows: int = 10, words: int = 5
) -> Image.Image:
    """A scanned label: black lines of text on white paper, edge to edge."""
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    rng = random.Random(1)
    pitch = (size[1] - 16) // rows
    for row in range(rows):
        line = " ".join(
            rng.choice(["LOT", "A-113", "SERIAL", "0042", "BATCH", "QC", "PASS", "2024"]) for _ in range(words)
        )
        draw.text((12, 8 + row * pitch), line, font=font, fill=15)
    return image


def test_a_blurred_copy_scores_lower_sharpness_than_its_original():
    original = scene(seed=5)
    sharp = measured(original).sharpness_lapvar
    blurred = measured(original.filter(ImageFilter.GaussianBlur(4.8))).sharpness_lapvar
    assert blurred < sharp / 10
    assert "blurry" in reasons_of(original.filter(ImageFilter.GaussianBlur(4.8)))


def test_sharpness_does_not_depend_on_contrast_or_on_the_image_size():
    grain = np.random.default_rng(6).normal(0.0, 6.0, (360, 480, 3))
    original = Image.fromarray(np.clip(np.asarray(scene(seed=6)) + grain, 0, 255).astype(np.uint8))
    sharp = measured(original).sharpness_lapvar
    assert measured(ImageEnhance.Contrast(original).enhance(0.5)).sharpness_lapvar == pytest.approx(sharp, rel=0.3)
    assert measured(original.resize((960, 720), Image.Resampling.LANCZOS)).sharpness_lapvar == pytest.approx(
        sharp, rel=0.3
    )


def test_brightness_times_two_and_a_half_clips_a_large_share_of_highlights():
    original = scene(seed=7)
    bright = ImageEnhance.Brightness(original).enhance(2.5)
    assert measured(original).highlights_clipped < 0.05
    assert measured(bright).highlights_clipped > 0.3
    assert reasons_of(bright)[0] == "overexposed"


def test_a_light_colour_pushed_to_the_ceiling_is_tinted_and_a_vivid_one_is_not():
    grain = np.random.default_rng(11).normal(0.0, 6.0, (240, 320, 1))
    skin = Image.fromarray(np.clip(np.full((240, 320, 3), (205, 160, 130), float) + grain, 0, 255).astype(np.uint8))
    vivid = Image.fromarray(np.clip(np.full((240, 320, 3), (255, 30, 40), float) + grain, 0, 255).astype(np.uint8))
    assert measured(skin).highlights_tinted == 0.0
    washed = measured(ImageEnhance.Brightness(skin).enhance(1.6))
    # R and (with the grain, mostly) G clip: about (255, 255, 208), a flat pale yellow; B keeps 208 >= 150.
    assert washed.highlights_tinted > 0.9 and washed.highlights_clipped > 0.5
    assert measured(ImageEnhance.Brightness(skin).enhance(1.3)).highlights_tinted > 0.4  # only R clips (255, 208, 169)
    assert measured(vivid).highlights_tinted == 0.0 and "overexposed" not in reasons_of(vivid)


def test_an_outdoor_photo_with_a_bright_blue_sky_is_kept_and_its_overexposed_copy_is_not():
    photo = np.asarray(scene(seed=5)).copy()
    rng = np.random.default_rng(5)
    height, width = photo.shape[0] * 2 // 5, photo.shape[1]
    # A clear sky fading from pale blue at the horizon to a deeper blue overhead, blue at the ceiling throughout.
    fade = np.linspace(1.0, 0.0, height)[:, None]
    photo[:height, :, 0] = np.clip(150 + 60 * fade + rng.normal(0, 2, (height, width)), 0, 249)
    photo[:height, :, 1] = np.clip(195 + 45 * fade + rng.normal(0, 2, (height, width)), 0, 249)
    photo[:height, :, 2] = 255
    outdoor = Image.fromarray(photo)
    assert reasons_of(outdoor) == []
    assert reasons_of(ImageEnhance.Brightness(outdoor).enhance(2.5))[0] == "overexposed"


def test_a_white_background_product_shot_is_not_overexposed():
    shot = product_shot()
    measures = measured(shot)
    assert measures.subject_share < 0.6
    assert measures.highlights_clipped < 0.1
    assert "overexposed" not in reasons_of(shot)
    assert reasons_of(ImageEnhance.Brightness(shot).enhance(2.5))[:1] == ["overexposed"]


def test_a_dark_product_whose_skin_and_stripe_blow_out_is_overexposed_on_a_backdrop_only():
    # x2.5: the skin's light side clips into the white backdrop and leaves the subject, its shaded side keeps a
    # tint, the stripe clips inside the garment; neither share reaches its own threshold.
    shot = dark_product()
    pushed = ImageEnhance.Brightness(shot).enhance(2.5)
    measures = measured(pushed)
    config = QualityConfig()
    assert reasons_of(shot) == []
    assert measures.subject_share < 0.5
    tinted = config.tinted_highlights
    assert tinted.framed_clipped <= measures.highlights_clipped < config.overexposed.threshold
    assert tinted.framed_threshold <= measures.highlights_tinted < tinted.threshold
    first = failures(measures, config)[0]
    assert (first["reason"], first["check"], first["rule"]) == ("overexposed", "tinted_highlights", "framed")
    assert first["subject_share"] == measures.subject_share and first["threshold"] == tinted.framed_threshold
    off = QualityConfig.model_validate({"tinted_highlights": {"threshold": 0.1, "framed_threshold": None}})
    assert "overexposed" not in reasons_of(pushed, off)
    # The same garment filling the frame has no backdrop to lose its highlights to: only the plain thresholds.
    filling = measured(ImageEnhance.Brightness(dark_product(framed=False)).enhance(2.5))
    assert filling.subject_share == 1.0 and filling.highlights_tinted < config.tinted_highlights.threshold
    assert "overexposed" not in reasons_of(ImageEnhance.Brightness(dark_product(framed=False)).enhance(2.5))


def test_brightness_times_a_fifth_is_underexposed_and_a_two_tone_scan_is_not_overexposed():
    dark = ImageEnhance.Brightness(scene(320, 240, seed=8)).enhance(0.2)
    assert measured(dark).brightness_p99 < 0.25
    assert reasons_of(dark)[0] == "underexposed"
    scan = Image.new("L", (320, 240), 255)
    ImageDraw.Draw(scan).rectangle((0, 0, 319, 110), fill=0)
    assert "overexposed" not in reasons_of(scan)


def test_a_banner_over_forty_percent_of_the_frame_is_text_heavy_and_the_detail_names_the_detector():
    photo = scene(seed=9)
    assert measured(photo).text_coverage == 0.0
    covered = banner(photo)
    assert 0.15 <= measured(covered).text_coverage <= 0.4
    assert reasons_of(covered)[0] == "text_heavy"
    detail = failures(measured(covered), QualityConfig())[0]
    assert detail["measure"] == "quality_text_coverage" and detail["threshold"] == 0.15


def text_banner(width: int, height: int) -> Image.Image:
    """A solid blue web banner filled with lines of white words, the font a sixth of its height."""
    image = Image.new("RGB", (width, height), (20, 60, 170))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=height // 6)
    words = "SUMMER SALE UP TO 50% OFF NEW COLLECTION FREE SHIPPING BUY NOW LIMITED OFFER SHOP THE LOOK".split()
    for row, y in enumerate(range(height // 12, height - height // 6, height // 4)):
        line = " ".join(words[(row * 3 + index) % len(words)] for index in range(width // height * 4 + 3))
        draw.text((height // 12, y), line, font=font, fill=(255, 255, 255))
    return image


def test_a_text_banner_is_text_heavy_whatever_its_aspect_ratio():
    """Banners of 5:1 and 8:1 measured 0.08 and 0.0: their ~256 px copies left glyphs a few pixels tall."""
    for width, height in ((600, 600), (1200, 400), (1500, 300), (2000, 250)):
        item = InputItem(source="/b.png", path="/b.png", domain="marketing", data=_encoded(text_banner(width, height)))
        sample = normalise_item(item, NormaliseConfig(), ["phash"], quality_side=256)
        coverage = sample.scores["quality_text_coverage"]
        assert coverage >= 0.5, (width, height, coverage)
        assert measured(text_banner(width, height)).text_coverage == pytest.approx(coverage, abs=0.05)


def pebbles(size: int = 256, seed: int = 0) -> Image.Image:
    """Gravel: a few hundred shaded stones of random grey over grainy mortar, blurred a little, then grained."""
    rng = np.random.default_rng(seed)
    image = Image.fromarray(rng.normal(90, 25, (size, size)).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(260):
        x, y = rng.integers(0, size, 2)
        radius, squash = int(rng.integers(4, 14)), rng.uniform(0.5, 1.0)
        draw.ellipse(
            (x - radius, y - radius * squash, x + radius, y + radius * squash), fill=int(rng.integers(120, 230))
        )
    grain = rng.normal(0, 18, (size, size))
    pixels = np.asarray(image.filter(ImageFilter.GaussianBlur(1.0))) + grain
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).convert("RGB")


def demo_tiles() -> list[Image.Image]:
    """The README demo's factory tiles: 256 px crops of scikit-image's gravel and grass along their top edge."""
    import skimage.data

    tiles = []
    for name in ("gravel", "grass"):
        texture = Image.fromarray(getattr(skimage.data, name)()).convert("RGB")
        step = (texture.width - 256) // 4
        tiles += [texture.crop((index * step, 0, index * step + 256, 256)) for index in range(4)]
    return tiles


def test_textures_are_not_text_heavy_and_a_banner_over_the_same_texture_is():
    # Stones and grass blades are blobs and strokes of glyph size, but their box around them is as busy as they are.
    for texture in [pebbles(seed=seed) for seed in range(6)] + demo_tiles():
        assert measured(texture).text_coverage < 0.05
        assert "text_heavy" not in reasons_of(texture)
    for seed in range(3):
        # The two lines of text fill most of the band over 40% of the frame (stones at its edge may join the block).
        covered = banner(pebbles(seed=seed))
        assert measured(covered).text_coverage >= 0.2
        assert reasons_of(covered)[0] == "text_heavy"


@pytest.mark.parametrize(
    "name, image, reason",
    [
        ("1x1", Image.new("RGB", (1, 1), (90, 120, 200)), "low_contrast"),
        ("uniform white", Image.new("RGB", (64, 48), (255, 255, 255)), "overexposed"),
        ("uniform black", Image.new("L", (64, 48), 0), "underexposed"),
        ("uniform grey", Image.new("RGB", (64, 48), (128, 128, 128)), "low_contrast"),
        ("palette", scene(200, 150, seed=1).convert("P", palette=Image.Palette.ADAPTIVE), None),
        ("alpha", _with_alpha(scene(200, 150, seed=2)), None),
        ("16-bit", Image.fromarray(np.asarray(scene(200, 150).convert("L")).astype(np.uint16) * 257), None),
        ("float", Image.fromarray(np.asarray(scene(200, 150).convert("L"), np.float32) * 3.5), None),
        ("label scan", label_scan(), "text_heavy"),
        # Small print on paper at 255: its letters are too small at the text detector's first look, and its white
        # paper is clipped; it was rejected as overexposed.
        ("small print on white", label_scan((800, 600), paper=255, font_size=24, rows=16, words=9), "text_heavy"),
        # Print of 10 to 14 pixels (a page scan normalised to 1024): nothing at the measured copy's 256 pixels, and
        # it was overexposed; the paper pass reads a larger copy.
        (
            "12-px print on a 600x400 label",
            label_scan((600, 400), paper=255, font_size=12, rows=20, words=8),
            "text_heavy",
        ),
        ("10-px print on a page", label_scan((724, 1024), paper=255, font_size=10, rows=60, words=12), "text_heavy"),
    ],
)
def test_degenerate_and_unusual_images_are_measured_finite_with_a_clear_reason_or_kept(name, image, reason):
    measures = measured(image)
    assert all(math.isfinite(value) and value >= 0 for value in measures), measures
    assert all(value <= 1 for name, value in measures._asdict().items() if name != "sharpness_lapvar")
    found = reasons_of(image)
    assert (found[0] if found else None) == reason, (name, found, measures)
    assert all(math.isfinite(value) for value in measures.scores().values())


def test_group_histograms_do_not_depend_on_how_samples_are_bundled():
    combine = _HistogramFn(2)
    inputs = [(random.Random(i).randrange(BINS), random.Random(-i).randrange(BINS)) for i in range(500)]
    outputs = []
    for seed in range(3):
        shuffled = inputs[:]
        random.Random(seed).shuffle(shuffled)
        parts = [shuffled[i :: seed + 2] for i in range(seed + 2)]
        accumulators = []
        for part in parts:
            accumulator = combine.create_accumulator()
            for item in part:
                accumulator = combine.add_input(accumulator, item)
            accumulators.append(accumulator)
        outputs.append(combine.extract_output(combine.merge_accumulators(reversed(accumulators))))
    assert all(np.array_equal(outputs[0], other) for other in outputs[1:])


def test_config_refuses_a_group_field_that_is_not_a_name_and_unknown_keys():
    with pytest.raises(pydantic.ValidationError):
        QualityConfig(group_by=["domain", "metadata.line"])
    with pytest.raises(pydantic.ValidationError):
        QualityConfig.model_validate({"blurry": {"threshhold": 0.1}})


class _Collect(beam.DoFn):
    def __init__(self, tag: str):
        self._tag = tag

    def process(self, element):
        _COLLECTED[self._tag].append(element)


def texture(rms: float, seed: int, size: tuple[int, int] = (96, 72)) -> Image.Image:
    """Grey grain around mid-grey whose standard deviation is ``rms`` of the range: a known contrast."""
    field = np.asarray(
        Image.fromarray(np.random.default_rng(seed).normal(128, 40, size[::-1]).clip(0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(1)
        )
    ).astype(np.float64)
    field = (field - field.mean()) / field.std()
    return Image.fromarray(np.clip(128 + rms * 255 * field, 0, 255).astype(np.uint8)).convert("RGB")


def _group_samples() -> list:
    """30 vivid factory textures, one flattened to a quarter of their contrast, and 30 natively dull marketing ones."""
    samples = []
    for index in range(30):
        vivid = texture(0.18 + 0.01 * (index % 5), index)
        samples.append(make_sample(vivid, f"vivid-{index}", "factory", text="x"))
        dull = texture(0.045 + 0.0025 * (index % 5), 100 + index)
        samples.append(make_sample(dull, f"dull-{index}", "marketing", text="x"))
    samples.append(make_sample(texture(0.05, 7), "flattened", "factory", text="x"))
    return samples


@pytest.fixture(scope="module")
def grouped():
    """The stage with only a per-domain contrast outlier bound (no absolute threshold), filtering and report_only."""
    only_contrast = {
        "enabled": True,
        "group_by": ["domain"],
        "min_group": 20,
        "low_contrast": {"deviations": 3.0},
        **{
            code: {"enabled": False}
            for code in ("text_heavy", "underexposed", "overexposed", "tinted_highlights", "blurry")
        },
    }
    rules = {
        "filter": QualityConfig.model_validate(only_contrast),
        "report": QualityConfig.model_validate({**only_contrast, "report_only": True}),
    }
    _COLLECTED.clear()
    with BeamTestPipeline() as pipeline:
        created = pipeline | beam.Create(_group_samples())
        for name, config in rules.items():
            result = created | f"Quality{name}" >> FilterLowQuality(config)
            _ = result.kept | f"Kept{name}" >> beam.ParDo(_Collect(f"{name}/kept"))
            _ = result.rejected | f"Rejected{name}" >> beam.ParDo(_Collect(f"{name}/rejected"))
    return {name: (_COLLECTED[f"{name}/kept"], _COLLECTED[f"{name}/rejected"]) for name in rules}


def test_normalise_measures_the_pixels_it_holds_as_the_stage_would_measure_the_stored_image():
    photo = scene(1224, 816, seed=12)  # a 1 MP camera photo
    item = InputItem(source="/data/p.jpg", path="/data/p.jpg", domain="marketing", data=jpeg_bytes(photo, quality=90))
    sample = normalise_item(item, NormaliseConfig(), ["phash"], quality_side=256)
    held = Measures.from_scores(sample.scores)
    stored = measure(analysis_pixels(sample.image, 256))
    # Reduced to 256 pixels, the stored JPEG's artefacts average away: both measure the same image.
    assert held.sharpness_lapvar == pytest.approx(stored.sharpness_lapvar, rel=0.1)
    assert held.contrast_rms == pytest.approx(stored.contrast_rms, rel=0.02)
    for name in ("highlights_clipped", "highlights_tinted", "shadows_clipped", "brightness_p99", "subject_share"):
        assert getattr(held, name) == pytest.approx(getattr(stored, name), abs=0.01), name
    assert normalise_item(item, NormaliseConfig(), ["phash"]).scores == {}
    # The stage keeps normalise's measures and decodes nothing: bytes it could not read do not matter.
    _COLLECTED.clear()
    with BeamTestPipeline() as pipeline:
        result = (
            pipeline
            | beam.Create([dataclasses.replace(sample, image=b"not an image")])
            | FilterLowQuality(QualityConfig())
        )
        _ = result.kept | "Kept" >> beam.ParDo(_Collect("kept"))
        _ = result.rejected | "Rejected" >> beam.ParDo(_Collect("rejected"))
    assert _COLLECTED["rejected"] == []
    assert [kept.scores for kept in _COLLECTED["kept"]] == [sample.scores]


def test_an_animation_rejected_on_its_first_frame_says_which_frame_was_measured():
    """A fade-in GIF (black first frame) was rejected underexposed with nothing saying only frame 0 was looked at."""
    frames = [Image.new("RGB", (320, 240), (0, 0, 0)), scene(320, 240, seed=4)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    item = InputItem(source="/data/fade.gif", path="/data/fade.gif", domain="marketing", data=buffer.getvalue())
    sample = normalise_item(item, NormaliseConfig(), ["phash"], quality_side=256)
    _COLLECTED.clear()
    with BeamTestPipeline() as pipeline:
        result = pipeline | beam.Create([sample]) | FilterLowQuality(QualityConfig())
        _ = result.rejected | beam.ParDo(_Collect("rejected"))
    [row] = _COLLECTED["rejected"]
    assert row.reason == "underexposed"
    assert json.loads(row.detail)["frame"] == "first frame of 2"


def _name(source: str) -> str:
    return source.rsplit("/", 1)[-1].removesuffix(".jpg")


def test_contrast_outlier_bound_is_per_domain(grouped):
    kept, rejected = grouped["filter"]
    assert [(_name(row.source), row.stage, row.reason) for row in rejected] == [
        ("flattened", "quality", "low_contrast")
    ]
    detail = json.loads(rejected[0].detail)
    assert detail["rule"] == "deviations" and detail["group"] == ["factory"] and detail["count"] == 31
    assert detail["value"] < detail["threshold"] < detail["median"]
    assert detail["measure"] == "quality_contrast_rms"
    assert {_name(s.source) for s in kept} >= {f"dull-{i}" for i in range(30)}
    assert all(s.annotations["quality"]["flags"] == [] for s in kept)


def test_unlabelled_images_are_held_to_absolute_thresholds_only():
    # Product shots and natively dull steel scans in one folder, no domain: each kind is the other's outlier.
    config = QualityConfig.model_validate(
        {
            "group_by": ["domain"],
            "min_group": 20,
            "low_contrast": {"deviations": 3.0},
            **{
                code: {"enabled": False} for code in ("text_heavy", "underexposed", "overexposed", "tinted_highlights")
            },
            "blurry": {"enabled": False},
        }
    )
    pool = [texture(0.18 + 0.01 * (i % 5), i) for i in range(40)] + [texture(0.045, 200 + i) for i in range(10)]
    rejected = {}
    for domain in ("", "unknown", "pool"):  # no domain given: ingest's default_domain, "unknown"
        _COLLECTED.clear()
        with BeamTestPipeline() as pipeline:
            samples = [make_sample(image, f"{domain}-{i}", domain, text="x") for i, image in enumerate(pool)]
            result = pipeline | beam.Create(samples) | FilterLowQuality(config)
            _ = result.rejected | beam.ParDo(_Collect("rejected"))
        rejected[domain] = sorted(int(_name(row.source).rsplit("-", 1)[1]) for row in _COLLECTED["rejected"])
    assert rejected[""] == rejected["unknown"] == []
    assert rejected["pool"] == list(range(40, 50))  # named as one group, the dull ones are its outliers


def test_report_only_flags_without_removing(grouped):
    kept, rejected = grouped["report"]
    assert rejected == []
    assert len(kept) == 61
    flags = {_name(s.source): s.annotations["quality"]["flags"] for s in kept}
    assert flags["flattened"] == ["low_contrast"]
    assert sum(1 for value in flags.values() if value) == 1
    assert all(s.annotations["quality"]["text_detector"] == DETECTOR for s in kept)


def test_a_real_run_rejects_degraded_images_with_their_reasons_and_writes_measures_into_the_shards(tmp_path, run):
    folder = tmp_path / "images"
    folder.mkdir()
    images = {
        "clean0": scene(seed=20),
        "clean1": scene(seed=21),
        "product": product_shot(),
        "blurred": scene(seed=22).filter(ImageFilter.GaussianBlur(4.8)),
        "dark": ImageEnhance.Brightness(scene(seed=23)).enhance(0.2),
        "bright": ImageEnhance.Brightness(scene(seed=24)).enhance(2.5),
        "banner": banner(scene(seed=25)),
    }
    for name, image in images.items():
        path = folder / f"{name}.jpg"
        image.save(path, quality=92)
        write_sidecar(path, title=f"picture {name}", domain="marketing")
    off = {"semantic_dedup": {"enabled": False}, "faces": {"enabled": False}}
    out = run([folder], **off)  # quality on by default

    rows = out.ledger_by_name()
    expected = {"blurred": "blurry", "dark": "underexposed", "bright": "overexposed", "banner": "text_heavy"}
    for name, reason in expected.items():
        row = rows[f"{name}.jpg"]
        assert (row["status"], row["stage"], row["reason"]) == ("rejected", "quality", reason), row
        detail = json.loads(row["detail"])
        assert detail["rule"] == "threshold" and math.isfinite(detail["value"]) and "threshold" in detail
    assert json.loads(rows["banner.jpg"]["detail"])["detector"] == DETECTOR
    samples = out.samples()
    assert len(samples) == 3
    for sample in samples:
        record = json.loads(sample["json"])
        scores = {name: value for name, value in record["scores"].items() if name.startswith("quality_")}
        assert set(scores) == {f"quality_{name}" for name in Measures._fields}
        assert all(math.isfinite(value) for value in scores.values())
        assert record["annotations"]["quality"]["flags"] == []
    audit = json.loads((out.path / "audit" / "audit.json").read_text())
    excluded = {(row["stage"], row["dimension"], row["value"]): row["excluded"] for row in audit["exclusion"]}
    assert excluded[("quality", "domain", "marketing")] == 4

    # The report: a histogram per measure, kept values beside each rejected one, the configured thresholds; and a
    # gallery per reason. Expected values come from the images made here and the shards read back above.
    report = json.loads((out.path / "report" / "report.json").read_text(encoding="utf-8"))
    charts = {chart["name"]: chart for chart in report["distributions"]}
    assert {f"quality_{name}" for name in Measures._fields} <= set(charts)
    measured_by = {
        "text_heavy": ("quality_text_coverage", 0.15),
        "underexposed": ("quality_brightness_p99", 0.25),
        "overexposed": ("quality_highlights_clipped", 0.35),
        "blurry": ("quality_sharpness_lapvar", 0.03),
    }
    kept_p99 = sorted(json.loads(sample["json"])["scores"]["quality_brightness_p99"] for sample in samples)
    for reason, (name, threshold) in measured_by.items():
        chart = charts[name]
        counts = {series: sum(values) for series, values in chart["series"].items()}
        assert counts == {"marketing": 3, "marketing · rejected by quality": 1}, (name, counts)
        assert threshold in [mark["value"] for mark in chart["thresholds"]], (name, chart["thresholds"])
        rejected_value = chart["stats"]["marketing · rejected by quality"]["max"]
        assert rejected_value == pytest.approx(json.loads(rows[f"{_dropped_by(reason)}.jpg"]["detail"])["value"])
        assert math.isfinite(rejected_value)
    assert charts["quality_brightness_p99"]["stats"]["marketing"]["median"] == pytest.approx(kept_p99[1])
    galleries = {(g["stage"], g["reason"]): g for g in report["galleries"]["rejected"]}
    for reason in measured_by:
        gallery = galleries[("quality", reason)]
        assert gallery["count"] == 1 and gallery["items"][0]["source"].endswith(f"{_dropped_by(reason)}.jpg")
        assert gallery["items"][0]["has_thumbnail"]
    page = (out.path / "report" / "index.html").read_text(encoding="utf-8")
    assert "Quality · highlights clipped" in page and not re.search(r"\bnan\b", page, re.IGNORECASE)
    assert not re.search(r"\b(NaN|-?Infinity)\b", (out.path / "report" / "report.json").read_text(encoding="utf-8"))

    # report_only: nothing removed, and the report shows each flag's samples (their flags read from the shards).
    flagged = run([folder], output=tmp_path / "flagged", quality={"report_only": True}, **off)
    flags = {}
    for sample in flagged.samples():
        for flag in json.loads(sample["json"])["annotations"]["quality"]["flags"]:
            flags.setdefault(flag, set()).add(json.loads(sample["json"])["source"])
    assert {flag: len(sources) for flag, sources in flags.items()} == {reason: 1 for reason in measured_by}
    report = json.loads((flagged.path / "report" / "report.json").read_text(encoding="utf-8"))
    shown = {g["reason"]: g for g in report["galleries"]["rejected"] if g["status"] == "flagged"}
    assert {reason: {i["source"] for i in g["items"]} for reason, g in shown.items()} == flags
    assert all(g["stage"] == "quality" and item["has_thumbnail"] for g in shown.values() for item in g["items"])


def _dropped_by(reason: str) -> str:
    return {"text_heavy": "banner", "underexposed": "dark", "overexposed": "bright", "blurry": "blurred"}[reason]


def test_bad_inputs_through_a_real_run_get_a_clear_reason_or_finite_measures_and_no_nan_in_the_report(tmp_path, run):
    folder = tmp_path / "bad"
    folder.mkdir()
    grey16 = np.asarray(scene(200, 150, seed=30).convert("L")).astype(np.uint16) * 257
    images = {
        "tiny.png": Image.new("RGB", (1, 1), (90, 120, 200)),
        "uniform.png": Image.new("RGB", (64, 48), (128, 128, 128)),
        "palette.png": scene(200, 150, seed=31).convert("P", palette=Image.Palette.ADAPTIVE),
        "deep.png": Image.fromarray(grey16),
        "label.png": label_scan(),
        "photo.png": scene(seed=32),
    }
    for name, image in images.items():
        image.save(folder / name)
        camera = "line-1" if name in ("tiny.png", "uniform.png", "label.png") else "line-2"
        write_sidecar(folder / name, title=f"bad input {name}", domain="factory", camera=camera)
    out = run([folder], semantic_dedup={"enabled": False}, faces={"enabled": False}, normalise={"min_side": 1})

    rows = out.ledger_by_name()
    expected = {"tiny.png": "low_contrast", "uniform.png": "low_contrast", "label.png": "text_heavy"}
    for name, reason in expected.items():
        assert (rows[name]["stage"], rows[name]["reason"]) == ("quality", reason), rows[name]
        assert math.isfinite(json.loads(rows[name]["detail"])["value"])
    kept = {Path(json.loads(s["json"])["source"]).name: json.loads(s["json"]) for s in out.samples()}
    assert {"palette.png", "deep.png", "photo.png"} <= set(kept)
    for record in kept.values():
        scores = [value for key, value in record["scores"].items() if key.startswith("quality_")]
        assert len(scores) == len(Measures._fields) and all(math.isfinite(value) for value in scores)
    # The audit's exclusion table says which camera the quality stage took images from.
    audit = json.loads((out.path / "audit" / "audit.json").read_text(encoding="utf-8"))
    excluded = {(row["stage"], row["dimension"], row["value"]): row["excluded"] for row in audit["exclusion"]}
    assert excluded[("quality", "camera", "line-1")] == 3 and excluded.get(("quality", "camera", "line-2"), 0) == 0
    report = (out.path / "report" / "report.json").read_text(encoding="utf-8")
    assert not re.search(r"\b(NaN|-?Infinity)\b", report)
    assert not re.search(r"\bnan\b", (out.path / "report" / "index.html").read_text(encoding="utf-8"), re.IGNORECASE)
