"""Quality: measure sharpness, exposure, contrast and text coverage of each image, then reject or flag by group.

Input element type: ``Sample`` (after ``normalise`` and ``text``). Outputs: ``kept`` (samples) and ``rejected``
(ledger rows). Every sample's normalised pixels are measured on a copy at most ``quality.side`` pixels long (a box
reduction; ``transforms/quality_measures.py`` defines each measure and the subject, the frame without its backdrop):
by ``normalise``, which has them in memory, in a run (``pipeline/assemble.py``), and otherwise here, decoding the
stored image (JPEG draft mode); the measures go into ``scores``, so they reach the shard JSON and
Parquet sidecar and a threshold can be re-tuned offline: ``quality_sharpness_lapvar``,
``quality_highlights_clipped``, ``quality_highlights_tinted``, ``quality_shadows_clipped``,
``quality_brightness_p99``, ``quality_contrast_rms``, ``quality_text_coverage``, ``quality_subject_share``.

Rules (config fields) and their reason codes, checked in this order, the first failing one naming the rejection:
``text_heavy`` (a document's white paper is not a blown highlight), ``underexposed``, ``overexposed`` (clipped
highlights) and ``tinted_highlights`` (reason ``overexposed``; neither for two-tone images, see
``OverexposedRule.max_shadows``; on a product shot, tinted highlights fail from a lower share beside clipped
ones, see ``TintedRule``), ``low_contrast``, ``blurry``. Each rule has an absolute threshold and/or a robust
outlier bound (median and MAD of its group, ``quality.group_by``) computed from fixed-bin histograms
(``transforms/quality_bounds.py``): integer counts that sum the same whatever the bundling, so decisions do not
depend on the worker count. A sample none of whose ``group_by`` values is set (domain ``unknown``, no camera) gets the
absolute thresholds only: unlabelled images are one pool of every kind, where a steel scan is a low-contrast
outlier among product shots and a product on white an overexposed one among tiles. The detail names the
measure, value, threshold, rule (``threshold``, ``framed`` or
``deviations``), the config field in ``check``, group (and median, MAD, count for outlier bounds) and every failing
rule's reason;
``text_heavy`` names the detector; an animation (GIF, WebP, APNG) is measured on its first frame, the one
``normalise`` keeps, and its rejection says so (``frame``: ``first frame of N``). ``report_only`` keeps every
sample and lists its failing rules in
``annotations["quality"]["flags"]``. The histograms are written to ``OUT/quality/histograms.json``; an incremental
run adds the earlier run's, so its bounds come from every image the output has measured, not only the new ones.
Config section: ``quality``. Metrics: ``quality/kept``, ``quality/rejected``, ``quality/flagged``,
``quality/failed``.
"""

import dataclasses
import json
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import apache_beam as beam
import cv2
import numpy as np
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.ingest import UNKNOWN_DOMAIN
from schemas.config.quality import QualityConfig, TintedRule
from schemas.records.ledger import rejected
from schemas.records.samples import Sample
from transforms._common import REJECTED, StageFn, apply_stage
from transforms._io import join, write_atomic
from transforms._text_regions import DETECTOR
from transforms.image_store import read_image
from transforms.quality_bounds import (
    BINS,
    CHECKS,
    Check,
    bins_of,
    bound,
    from_scale,
    group_stats,
    relative_rules,
    rules,
)
from transforms.quality_measures import Measures, analysis_pixels, measure

STAGE = "quality"
HISTOGRAMS = ("quality", "histograms.json")


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


def group_values(sample: Sample, group_by: list[str]) -> list[str]:
    """The sample's domain and metadata values that name its group, missing ones empty."""
    values = [sample.domain if name == "domain" else sample.metadata.get(name) for name in group_by]
    return ["" if value is None else str(value) for value in values]


def group_key(sample: Sample, group_by: list[str]) -> str:
    """The sample's group as canonical JSON text (``group_values``)."""
    return json.dumps(group_values(sample, group_by), ensure_ascii=False)


def labelled(values: list[str], group_by: list[str]) -> bool:
    """Whether group values (``group_values``) name a group: a domain other than ``UNKNOWN_DOMAIN``, or a field."""
    unset = {"domain": ("", UNKNOWN_DOMAIN)}
    return any(value not in unset.get(name, ("",)) for name, value in zip(group_by, values, strict=True))


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
        if isinstance(rule, TintedRule) and framed_and_clipped(measures, rule):
            framing = {"highlights_clipped": measures.highlights_clipped, "subject_share": measures.subject_share}
            limits.append(({"rule": "framed", **framing}, rule.framed_threshold))
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


def framed_and_clipped(measures: Measures, rule: TintedRule) -> bool:
    """Whether a backdrop frames the subject and enough of it clips for ``rule.framed_threshold`` to apply."""
    return (
        rule.framed_threshold is not None
        and measures.subject_share <= rule.framed_max_subject
        and measures.highlights_clipped >= rule.framed_clipped
    )


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
        if measured(sample):
            yield sample
            return
        data = read_image(sample)
        measures = measure(analysis_pixels(data, self._side), lambda side: analysis_pixels(data, side))
        yield dataclasses.replace(sample, scores={**sample.scores, **measures.scores()})


def measured(sample: Sample) -> bool:
    """Whether ``sample`` already carries every quality measure (normalise measures what it decodes)."""
    return all(f"quality_{name}" in sample.scores for name in Measures._fields)


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
        values = group_values(sample, config.group_by)
        key = json.dumps(values, ensure_ascii=False)
        # Outlier bounds only within a group someone named: a sample with no domain and no group field is in the
        # pool of everything unlabelled, where steel scans and product shots are each other's outliers.
        bounds = (stats or {}).get(key) if labelled(values, config.group_by) else None
        failed = failures(Measures.from_scores(sample.scores), config, bounds)
        if failed and not config.report_only:
            self._rejected.inc()
            first = failed[0]
            detail = {k: v for k, v in first.items() if k != "reason"}
            detail.update(group_by=config.group_by, group=json.loads(key), side=config.side)
            detail["failed"] = list(dict.fromkeys(item["reason"] for item in failed))
            if first["reason"] == reasons.TEXT_HEAVY:
                detail["detector"] = DETECTOR
            if sample.original.frames > 1:
                detail["frame"] = f"first frame of {sample.original.frames}"
            row = rejected(STAGE, first["reason"], sample.source, sample.key, sample.domain, **detail)
            yield pvalue.TaggedOutput(REJECTED, row)
            return
        if failed:
            self._flagged.inc()
        self._kept.inc()
        flags = list(dict.fromkeys(item["reason"] for item in failed))
        record = {"flags": flags, "side": config.side, "text_detector": DETECTOR}
        yield dataclasses.replace(sample, annotations={**sample.annotations, "quality": record})
