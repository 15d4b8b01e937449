"""Quality: measure sharpness, exposure, contrast and text coverage of each image, then reject or flag by group.

Input element type: ``Sample`` (after ``normalise`` and ``text``). Outputs: ``kept`` (samples) and ``rejected``
(ledger rows). Every sample's normalised image is decoded once, as a copy at most ``quality.side`` pixels long
(JPEG draft mode, then a box reduction), and measured; the measures go into ``scores``, so they reach the shard
JSON and Parquet sidecar and a threshold can be re-tuned offline:

- ``quality_sharpness_lapvar``: variance of the 4-neighbour Laplacian over the subject divided by the subject's grey
  variance (contrast does not decide it; the fixed analysis size keeps image size from deciding it);
- ``quality_highlights_clipped``: share of subject pixels whose two brightest channels are both >= 250 (a saturated
  colour clips one channel and is not counted);
- ``quality_highlights_tinted``: share of subject pixels with one or two channels >= 250 and every channel >= 150: a
  light colour (skin, a pastel garment) pushed against the ceiling, its hue washed toward white. A vivid colour
  clips one channel with the others low and is not counted; an overexposed colour loses its hue this way first;
- ``quality_shadows_clipped``: share of subject pixels with every channel <= 5;
- ``quality_brightness_p99``: 99th percentile of the brightest channel over the whole frame (headroom);
- ``quality_contrast_rms``: standard deviation of the subject's grey level (0-1);
- ``quality_text_coverage``: share of the frame inside text blocks found by ``transforms._text_regions`` on a
  copy at most ``TEXT_SIDE`` pixels long (large enough for text that covers a frame, and 30% cheaper);
- ``quality_subject_share``: share of the frame measured as subject.

The subject is the frame without its backdrop: near-uniform regions (grey range within 5x5 at most
``UNIFORM_RANGE`` levels) that touch the border, removed only when they cover at least ``BACKDROP_BORDER`` of the
border (a product shot's white or flat background; a blown-out sky along one edge stays in).

Rules (config fields) and their reason codes, checked in this order, the first failing one naming the rejection:
``text_heavy`` (a document's white paper is not a blown highlight), ``underexposed``, ``overexposed`` (clipped
highlights) and ``tinted_highlights`` (reason ``overexposed``; neither for two-tone images, see
``OverexposedRule.max_shadows``), ``low_contrast``, ``blurry``. Each rule has an absolute threshold and/or a robust
outlier bound (median and MAD of its group, ``quality.group_by``) computed from fixed-bin histograms: integer counts
that sum the same whatever the bundling, so decisions do not depend on the worker count. The detail names the
measure, value, threshold, rule (``threshold`` or ``deviations``), the config field in ``check``, group (and median,
MAD, count for outlier bounds) and every failing rule's reason;
``text_heavy`` names the detector. ``report_only`` keeps every sample and lists its failing
rules in ``annotations["quality"]["flags"]``. The histograms are written to ``OUT/quality/histograms.json``; an
incremental run adds the earlier run's, so its bounds come from every image the output has measured, not only the
new ones. Config section: ``quality``. Metrics: ``quality/kept``,
``quality/rejected``, ``quality/flagged``, ``quality/failed``.
"""

import dataclasses
import io
import json
import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import apache_beam as beam
import cv2
import numpy as np
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from schemas import reasons
from schemas.config.quality import QualityConfig, QualityRule
from schemas.records.ledger import rejected
from schemas.records.samples import Sample
from transforms._common import REJECTED, StageFn, apply_stage
from transforms._io import join, write_atomic
from transforms._text_regions import DETECTOR, text_coverage
from transforms.image_store import read_image

STAGE = "quality"
UNIFORM_RANGE = 4
BACKDROP_BORDER = 0.6
MIN_SUBJECT = 0.02
CLIPPED_HIGH, CLIPPED_LOW = 250, 5
TINTED_FLOOR = 150
TEXT_SIDE = 192
BINS = 2048
MAD_SCALE = 1.4826
HISTOGRAMS = ("quality", "histograms.json")


class Measures(NamedTuple):
    """The quality measures of one image, each finite."""

    sharpness_lapvar: float
    highlights_clipped: float
    highlights_tinted: float
    shadows_clipped: float
    brightness_p99: float
    contrast_rms: float
    text_coverage: float
    subject_share: float

    def scores(self) -> dict[str, float]:
        return {f"quality_{name}": round(float(value), 6) for name, value in self._asdict().items()}

    @classmethod
    def from_scores(cls, scores: Mapping[str, float]) -> "Measures":
        return cls(*(float(scores[f"quality_{name}"]) for name in cls._fields))


class Check(NamedTuple):
    """How a rule reads its measure: its reason code, which measure, which side is bad, on which scale, and the
    histogram's range."""

    reason: str
    measure: str
    low_is_bad: bool
    log: bool
    lower: float
    upper: float


# Keyed by the rule's config field, in decision order.
CHECKS = {
    "text_heavy": Check(reasons.TEXT_HEAVY, "text_coverage", False, False, 0.0, 1.0),
    "underexposed": Check(reasons.UNDEREXPOSED, "brightness_p99", True, False, 0.0, 1.0),
    "overexposed": Check(reasons.OVEREXPOSED, "highlights_clipped", False, False, 0.0, 1.0),
    "tinted_highlights": Check(reasons.OVEREXPOSED, "highlights_tinted", False, False, 0.0, 1.0),
    "low_contrast": Check(reasons.LOW_CONTRAST, "contrast_rms", True, True, -4.0, 0.0),
    "blurry": Check(reasons.BLURRY, "sharpness_lapvar", True, True, -5.0, 2.0),
}


class QualityOutputs(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection


class FilterLowQuality(beam.PTransform):
    """Measure every sample, then reject (or, with ``report_only``, flag) those failing a quality rule."""

    def __init__(self, config: QualityConfig, output: str | None = None, earlier: str | None = None):
        """``output``: where ``quality/histograms.json`` goes (nowhere when ``None``); ``earlier``: the output of
        the run an incremental run builds on, whose histograms count too."""
        super().__init__()
        self._config = config
        self._output = output
        self._earlier = earlier

    def expand(self, samples: beam.PCollection) -> QualityOutputs:
        config = self._config
        if not config.enabled:
            return QualityOutputs(kept=samples, rejected=samples.pipeline | "NoRejections" >> beam.Create([]))
        measured, failed = apply_stage(samples, "Measure", _MeasureFn(config.side))
        stats = None
        if relative_rules(config):
            histograms = (
                measured
                | "Bins" >> beam.Map(lambda sample: (group_key(sample, config.group_by), bins_of(sample, config)))
                | "Histograms" >> beam.CombinePerKey(_HistogramFn(len(relative_rules(config))))
            )
            if self._earlier is not None:
                earlier = (
                    samples.pipeline
                    | "EarlierOutput" >> beam.Create([self._earlier])
                    | "EarlierHistograms" >> beam.FlatMap(read_histograms, config=config)
                )
                histograms = (
                    (histograms, earlier) | "WithEarlier" >> beam.Flatten() | "AddUp" >> beam.CombinePerKey(sum)
                )
            if self._output is not None:
                _ = (
                    histograms
                    | "AllHistograms" >> beam.combiners.ToList()
                    | "WriteHistograms" >> beam.Map(write_histograms, output=self._output, config=config)
                )
            stats = beam.pvalue.AsDict(
                histograms | "GroupStats" >> beam.MapTuple(lambda key, counts: (key, group_stats(counts, config)))
            )
        decided = measured | "Decide" >> beam.ParDo(_DecideFn(config), stats).with_outputs(REJECTED, main="kept")
        dropped = (failed, decided[REJECTED]) | "Rejected" >> beam.Flatten()
        return QualityOutputs(kept=decided.kept, rejected=dropped)


def analysis_pixels(data: bytes, side: int) -> np.ndarray:
    """Decode ``data`` once into an RGB uint8 array at most ``side`` pixels long (never upscaled).

    JPEG is decoded in draft mode at the smallest scale that stays at least ``side`` long; palette, alpha (on white),
    grey and 16-bit or float images are converted to 8-bit RGB, high bit depths scaled by their range.
    """
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    longest = max(width, height)
    if image.format == "JPEG" and longest > side:
        # Pillow picks the largest reduction that keeps the image at least this size, so ask for the floor.
        image.draft("RGB", (max(1, width * side // longest), max(1, height * side // longest)))
    image = _to_rgb8(image)
    if max(image.size) > side:
        scale = side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BOX, reducing_gap=2.0)
    return np.asarray(image)


def _to_rgb8(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        finite = values[np.isfinite(values)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        top = 65535.0 if image.mode.startswith("I;16") else max(high - min(low, 0.0), 1e-12)
        scaled = np.nan_to_num((values - min(low, 0.0)) / top, nan=0.0)
        image = Image.fromarray(np.clip(np.rint(scaled * 255.0), 0, 255).astype(np.uint8), "L")
    if image.mode in ("RGBA", "LA", "PA", "P", "La", "RGBa"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def subject_mask(grey: np.ndarray) -> np.ndarray:
    """The pixels of ``grey`` (uint8) that are not backdrop; the whole frame when no backdrop frames it."""
    window = np.ones((5, 5), np.uint8)
    uniform = (cv2.dilate(grey, window) - cv2.erode(grey, window) <= UNIFORM_RANGE).view(np.uint8)
    count, labels = cv2.connectedComponents(uniform, connectivity=4)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    if count <= 1 or np.count_nonzero(border) < BACKDROP_BORDER * border.size:
        return np.ones(grey.shape, bool)
    touching = np.zeros(count, bool)
    touching[np.unique(border)] = True
    touching[0] = False
    subject = ~touching[labels]
    return subject if subject.mean() >= MIN_SUBJECT else np.ones(grey.shape, bool)


def measure(rgb: np.ndarray) -> Measures:
    """All measures of an RGB uint8 image (any size, at least 1x1)."""
    rgb = np.ascontiguousarray(rgb)
    grey8 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    grey = grey8.astype(np.float32) / 255.0
    subject = subject_mask(grey8)
    mask = None if subject.all() else subject.astype(np.uint8)
    pixels = int(np.count_nonzero(subject))
    red, green, blue = cv2.split(rgb)
    brightest = cv2.max(cv2.max(red, green), blue)
    clipped = (red >= CLIPPED_HIGH).view(np.uint8) + (green >= CLIPPED_HIGH) + (blue >= CLIPPED_HIGH)
    light = cv2.min(cv2.min(red, green), blue) >= TINTED_FLOOR
    tinted = (clipped >= 1) & (clipped <= 2) & light
    if mask is not None:
        clipped, shadows, tinted = clipped * mask, (brightest <= CLIPPED_LOW) & subject, tinted & subject
    else:
        shadows = brightest <= CLIPPED_LOW
    _, tone_std = cv2.meanStdDev(grey, mask=mask)
    _, detail_std = cv2.meanStdDev(cv2.Laplacian(grey, cv2.CV_32F, ksize=1), mask=mask)
    variance = float(tone_std[0, 0]) ** 2
    histogram = np.cumsum(np.bincount(brightest.ravel(), minlength=256))
    return Measures(
        sharpness_lapvar=float(detail_std[0, 0]) ** 2 / max(variance, (1 / 255) ** 2),
        highlights_clipped=float(np.count_nonzero(clipped >= 2)) / pixels,
        highlights_tinted=float(np.count_nonzero(tinted)) / pixels,
        shadows_clipped=float(np.count_nonzero(shadows)) / pixels,
        brightness_p99=float(np.searchsorted(histogram, 0.99 * histogram[-1])) / 255.0,
        contrast_rms=math.sqrt(variance),
        text_coverage=text_coverage(_at_most(grey8, TEXT_SIDE)),
        subject_share=pixels / subject.size,
    )


def _at_most(grey: np.ndarray, side: int) -> np.ndarray:
    if max(grey.shape) <= side:
        return grey
    scale = side / max(grey.shape)
    size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA)


def rules(config: QualityConfig) -> dict[str, QualityRule]:
    """The enabled rules by config field, in decision order."""
    return {name: getattr(config, name) for name in CHECKS if getattr(config, name).enabled}


def relative_rules(config: QualityConfig) -> list[str]:
    """Config fields of the rules with an outlier bound, in decision order (the histogram rows)."""
    return [name for name, rule in rules(config).items() if rule.deviations > 0]


def write_histograms(histograms: list[tuple[str, np.ndarray]], output: str, config: QualityConfig) -> None:
    """Write every group's histogram rows sparsely (``[bin, count]`` pairs per rule) as canonical JSON."""
    groups = {
        key: {
            rule: [[int(b), int(row[b])] for b in np.flatnonzero(row)]
            for rule, row in zip(relative_rules(config), counts, strict=True)
        }
        for key, counts in histograms
    }
    data = {"bins": BINS, "group_by": config.group_by, "groups": groups}
    write_atomic(join(output, *HISTOGRAMS), json.dumps(data, sort_keys=True, ensure_ascii=False).encode() + b"\n")


def read_histograms(output: str, config: QualityConfig) -> Iterator[tuple[str, np.ndarray]]:
    """The histograms an earlier run wrote into ``output``, for the rules ``config`` has (none if it wrote none)."""
    path = join(output, *HISTOGRAMS)
    if not FileSystems.exists(path):
        return
    with FileSystems.open(path) as handle:
        data = json.loads(handle.read())
    if data["bins"] != BINS or data["group_by"] != config.group_by:
        return
    for key, rows in sorted(data["groups"].items()):
        counts = np.zeros((len(relative_rules(config)), BINS), np.int64)
        for index, rule in enumerate(relative_rules(config)):
            for b, count in rows.get(rule, []):
                counts[index, b] = count
        yield key, counts


def group_key(sample: Sample, group_by: list[str]) -> str:
    """The sample's group as canonical JSON text: its domain and metadata values, missing ones empty."""
    values = [sample.domain if name == "domain" else sample.metadata.get(name) for name in group_by]
    return json.dumps(["" if value is None else str(value) for value in values], ensure_ascii=False)


def to_scale(value: float, check: Check) -> float:
    return math.log10(max(value, 10**check.lower)) if check.log else value


def from_scale(value: float, check: Check) -> float:
    return 10**value if check.log else value


def bins_of(sample: Sample, config: QualityConfig) -> tuple[int, ...]:
    """The histogram bin of each relative rule's measure, on its scale."""
    measures = Measures.from_scores(sample.scores)._asdict()
    found = []
    for code in relative_rules(config):
        check = CHECKS[code]
        share = (to_scale(measures[check.measure], check) - check.lower) / (check.upper - check.lower)
        found.append(min(BINS - 1, max(0, int(share * BINS))))
    return tuple(found)


def _nth(counts: np.ndarray, centres: np.ndarray, rank: int) -> float:
    order = np.argsort(centres, kind="stable")
    return float(centres[order][np.searchsorted(np.cumsum(counts[order]), rank)])


def group_stats(counts: np.ndarray, config: QualityConfig) -> dict[str, tuple[float, float, int]]:
    """``(median, MAD, count)`` per relative rule from its histogram row, on the rule's scale, to bin width."""
    stats = {}
    for row, code in zip(counts, relative_rules(config), strict=True):
        check = CHECKS[code]
        centres = check.lower + (np.arange(BINS) + 0.5) * (check.upper - check.lower) / BINS
        total = int(row.sum())
        rank = (total + 1) // 2
        median = _nth(row, centres, rank)
        stats[code] = (median, _nth(row, np.abs(centres - median), rank), total)
    return stats


def bound(check: Check, rule: QualityRule, median: float, mad: float) -> float:
    """The outlier bound of a rule in its measure's units."""
    spread = rule.deviations * max(MAD_SCALE * mad, rule.min_mad)
    return from_scale(median - spread if check.low_is_bad else median + spread, check)


def failures(
    measures: Measures, config: QualityConfig, stats: Mapping[str, tuple[float, float, int]] | None = None
) -> list[dict]:
    """Every rule ``measures`` fail, in decision order, each with what a person needs to check it."""
    values = measures._asdict()
    found = []
    for code, rule in rules(config).items():
        check = CHECKS[code]
        value = values[check.measure]
        if check.reason == reasons.OVEREXPOSED and measures.shadows_clipped >= config.overexposed.max_shadows:
            continue
        limits = []
        if rule.threshold is not None:
            limits.append(({"rule": "threshold"}, rule.threshold))
        if rule.deviations > 0 and stats and code in stats and stats[code][2] >= config.min_group:
            median, mad, count = stats[code]
            detail = {"rule": "deviations", "deviations": rule.deviations, "count": count}
            detail.update(median=round(from_scale(median, check), 6), mad=round(mad, 6), scale=_scale(check))
            limits.append((detail, bound(check, rule, median, mad)))
        for detail, limit in limits:
            if (value < limit) if check.low_is_bad else (value >= limit):
                found.append(
                    {"reason": check.reason, "check": code, "measure": f"quality_{check.measure}", "value": value}
                )
                found[-1].update(detail)
                found[-1]["threshold"] = round(limit, 6)
                break
    return found


def _scale(check: Check) -> str:
    return "log10" if check.log else "linear"


class _MeasureFn(StageFn):
    stage = STAGE

    def __init__(self, side: int):
        super().__init__()
        self._side = side

    def setup(self):
        # One thread per worker: Beam already runs one bundle per core.
        cv2.setNumThreads(1)

    def apply(self, sample: Sample) -> Iterator[Sample]:
        measures = measure(analysis_pixels(read_image(sample), self._side))
        yield dataclasses.replace(sample, scores={**sample.scores, **measures.scores()})


class _HistogramFn(beam.CombineFn):
    """Per-group counts of each relative rule's bins: integer sums, equal for any bundling and merge order."""

    def __init__(self, rows: int):
        self._rows = rows

    def create_accumulator(self) -> np.ndarray:
        return np.zeros((self._rows, BINS), np.int64)

    def add_input(self, counts: np.ndarray, bins: tuple[int, ...]) -> np.ndarray:
        counts[np.arange(self._rows), list(bins)] += 1
        return counts

    def merge_accumulators(self, accumulators) -> np.ndarray:
        merged = self.create_accumulator()
        for counts in accumulators:
            merged += counts
        return merged

    def extract_output(self, counts: np.ndarray) -> np.ndarray:
        return counts


class _DecideFn(beam.DoFn):
    def __init__(self, config: QualityConfig):
        self._config = config
        self._kept = beam.metrics.Metrics.counter(STAGE, "kept")
        self._rejected = beam.metrics.Metrics.counter(STAGE, "rejected")
        self._flagged = beam.metrics.Metrics.counter(STAGE, "flagged")

    def process(self, sample: Sample, stats: Mapping[str, dict] | None = None) -> Iterator:
        config = self._config
        key = group_key(sample, config.group_by)
        failed = failures(Measures.from_scores(sample.scores), config, (stats or {}).get(key))
        if failed and not config.report_only:
            self._rejected.inc()
            first = failed[0]
            detail = {k: v for k, v in first.items() if k != "reason"}
            detail.update(group_by=config.group_by, group=json.loads(key), side=config.side)
            detail["failed"] = list(dict.fromkeys(item["reason"] for item in failed))
            if first["reason"] == reasons.TEXT_HEAVY:
                detail["detector"] = DETECTOR
            row = rejected(STAGE, first["reason"], sample.source, sample.key, sample.domain, **detail)
            yield pvalue.TaggedOutput(REJECTED, row)
            return
        if failed:
            self._flagged.inc()
        self._kept.inc()
        flags = list(dict.fromkeys(item["reason"] for item in failed))
        record = {"flags": flags, "side": config.side, "text_detector": DETECTOR}
        yield dataclasses.replace(sample, annotations={**sample.annotations, "quality": record})
