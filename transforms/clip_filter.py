"""CLIP filter: keep the samples whose caption matches their image, by an absolute threshold or a share per group.

Input element type: ``Sample`` carrying the CLIP score the caption stage wrote: the cosine similarity between the
image embedding and the chosen caption, in ``scores[<model id>]`` (e.g. ``clip_vit_b_32_laion2b``). Outputs:
``kept`` (samples) and ``rejected`` (ledger rows). Exactly one rule filters (``clip_filter`` config section):

- ``threshold``: keep a sample scoring at least the threshold (LAION-5B used 0.28 with ViT-B/32);
- ``keep_fraction``: per group (``group_by``: ``domain``, ``all`` or ``metadata.FIELD``) the threshold is the score
  quantile that keeps that share, from Beam's ``ApproximateQuantiles`` (exact while a group's scores fit its buffer,
  tens of thousands; beyond, approximate within 1/``num_quantiles`` of the share, and the collapse order of its
  buffers can move the threshold by one quantile between runners); web-calibrated thresholds do not transfer to
  factory captions, a share per group does.

With neither, scores stay on the samples and nothing is removed. A sample without a score (no caption, with
``caption.required = false``) is kept and counted. Reason code: ``low_clip_score``; the detail carries the score,
the threshold, the rule, the group and the model. Metrics: ``clip_filter/kept``, ``clip_filter/rejected``,
``clip_filter/unscored``.
"""

import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue

from schemas import reasons
from schemas.config.clip_filter import ClipFilterConfig
from schemas.records.ledger import rejected
from schemas.records.samples import Sample
from transforms._common import REJECTED

STAGE = "clip_filter"


class ClipFilterOutputs(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection


class ClipFilter(beam.PTransform):
    """Reject samples whose CLIP score (under ``model_id``) is below their group's threshold.

    Args:
        config: The ``clip_filter`` section.
        model_id: The score field to read, the id of the CLIP model (``transforms.model_weights.clip_model_id``).
    """

    def __init__(self, config: ClipFilterConfig, model_id: str):
        super().__init__()
        self._config = config
        self._model_id = model_id

    def expand(self, samples: beam.PCollection):
        config = self._config
        if config.threshold is None and config.keep_fraction is None:
            return ClipFilterOutputs(kept=samples, rejected=samples.pipeline | "NoRejections" >> beam.Create([]))
        thresholds = None
        if config.keep_fraction is not None:
            scores = samples | "ScoreByGroup" >> beam.FlatMap(_group_score, config.group_by, self._model_id)
            per_group = {
                "quantiles": scores | "Quantiles" >> beam.ApproximateQuantiles.PerKey(config.num_quantiles),
                "count": scores | "Count" >> beam.combiners.Count.PerKey(),
            }
            thresholds = beam.pvalue.AsDict(
                per_group
                | "Join" >> beam.CoGroupByKey()
                | "Thresholds"
                >> beam.MapTuple(lambda group, g: (group, threshold_for(*g["quantiles"], *g["count"], config)))
            )
        decided = samples | "Decide" >> beam.ParDo(_DecideFn(config, self._model_id), thresholds).with_outputs(
            REJECTED, main="kept"
        )
        return ClipFilterOutputs(kept=decided.kept, rejected=decided[REJECTED])


def group_of(sample: Sample, group_by: str) -> str:
    """The group a sample's keep-fraction is computed in."""
    if group_by == "all":
        return "all"
    if group_by == "domain":
        return sample.domain
    value = sample.metadata.get(group_by.removeprefix("metadata."))
    return "" if value is None else str(value)


def threshold_for(quantiles: list[float], count: int, config: ClipFilterConfig) -> float:
    """The lowest score kept in a group of ``count`` scores whose ``ApproximateQuantiles`` are ``quantiles``.

    The top ``ceil(keep_fraction * count)`` scores are kept: the threshold is the score of rank
    ``count - ceil(keep_fraction * count)``. ``ApproximateQuantiles`` puts the score of rank
    ``floor((i * count - 1) / (num_quantiles - 1))`` at index ``i`` (exactly, while the group fits its buffer), so
    the index of that rank is computed from it.
    """
    lowest_kept = count - max(1, math.ceil(config.keep_fraction * count - 1e-9))
    if lowest_kept <= 0:
        return float(quantiles[0])
    index = math.ceil((lowest_kept * (len(quantiles) - 1) + 1) / count)
    return float(quantiles[min(max(index, 1), len(quantiles) - 1)])


def decide(score: float, threshold: float) -> bool:
    """Keep a sample scoring at least the threshold."""
    return score >= threshold


def _group_score(sample: Sample, group_by: str, model_id: str) -> Iterator[tuple[str, float]]:
    if model_id in sample.scores:
        yield group_of(sample, group_by), float(sample.scores[model_id])


class _DecideFn(beam.DoFn):
    def __init__(self, config: ClipFilterConfig, model_id: str):
        self._config = config
        self._model_id = model_id
        self._kept = beam.metrics.Metrics.counter(STAGE, "kept")
        self._rejected = beam.metrics.Metrics.counter(STAGE, "rejected")
        self._unscored = beam.metrics.Metrics.counter(STAGE, "unscored")

    def process(self, sample: Sample, thresholds: Mapping[str, float] | None = None) -> Iterator:
        if self._model_id not in sample.scores:
            self._unscored.inc()
            yield sample
            return
        score = float(sample.scores[self._model_id])
        group = group_of(sample, self._config.group_by)
        if thresholds is None:
            threshold, rule = self._config.threshold, "threshold"
        else:
            threshold, rule = thresholds[group], "keep_fraction"
        if decide(score, threshold):
            self._kept.inc()
            yield sample
            return
        self._rejected.inc()
        detail = {"score": score, "threshold": threshold, "rule": rule, "model": self._model_id}
        if rule == "keep_fraction":
            detail.update(group_by=self._config.group_by, group=group, keep_fraction=self._config.keep_fraction)
        row = rejected(STAGE, reasons.LOW_CLIP_SCORE, sample.source, sample.key, sample.domain, **detail)
        yield pvalue.TaggedOutput(REJECTED, row)
