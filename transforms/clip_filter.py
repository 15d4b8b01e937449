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

The scores a ``keep_fraction`` threshold is computed from are written to ``OUT/clip_filter/scores/`` (key, group,
score; Parquet parts like the ledger's). An incremental run adds the earlier run's scores (a retried key counts once,
with its new score), so its thresholds come from every sample the output has scored, not only the new ones; the
earlier samples keep the verdicts they had.

With neither, scores stay on the samples and nothing is removed. A sample without a score (no caption, with
``caption.required = false``) is kept and counted. Reason code: ``low_clip_score``; the detail carries the score,
the threshold, the rule, the group and the model. Metrics: ``clip_filter/kept``, ``clip_filter/rejected``,
``clip_filter/unscored``.
"""

import math
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.clip_filter import ClipFilterConfig
from schemas.records.ledger import rejected
from schemas.records.samples import Sample
from transforms._common import REJECTED
from transforms._io import pattern
from transforms._parts import WriteParts

STAGE = "clip_filter"
SCORES = "clip_filter/scores"
SCORES_SCHEMA = pa.schema([("key", pa.string()), ("group", pa.string()), ("score", pa.float64())])


class ClipFilterOutputs(NamedTuple):
    kept: beam.PCollection
    rejected: beam.PCollection


class ClipFilter(beam.PTransform):
    """Reject samples whose CLIP score (under ``model_id``) is below their group's threshold.

    Args:
        config: The ``clip_filter`` section.
        model_id: The score field to read, the id of the CLIP model (``transforms.model_weights.clip_model_id``).
        output: Where ``clip_filter/scores/`` goes (nowhere when ``None``).
        earlier: The output an incremental run builds on, whose scores count too.
        rows_per_part: Scores per Parquet part.
    """

    def __init__(
        self,
        config: ClipFilterConfig,
        model_id: str,
        output: str | None = None,
        earlier: str | None = None,
        rows_per_part: int = 100_000,
    ):
        super().__init__()
        self._config = config
        self._model_id = model_id
        self._output, self._earlier, self._rows_per_part = output, earlier, rows_per_part

    def expand(self, samples: beam.PCollection):
        config = self._config
        if config.threshold is None and config.keep_fraction is None:
            return ClipFilterOutputs(kept=samples, rejected=samples.pipeline | "NoRejections" >> beam.Create([]))
        thresholds = None
        if config.keep_fraction is not None:
            scored = samples | "ScoreByKey" >> beam.FlatMap(_keyed_score, config.group_by, self._model_id)
            if self._earlier is not None and FileSystems.match([earlier_scores(self._earlier)])[0].metadata_list:
                earlier = (
                    samples.pipeline
                    | "ReadEarlierScores" >> beam.io.ReadFromParquet(earlier_scores(self._earlier))
                    | "EarlierByKey" >> beam.Map(lambda row: (row["key"], (row["group"], row["score"])))
                )
                scored = (
                    {"new": scored, "earlier": earlier}
                    | "WithEarlierScores" >> beam.CoGroupByKey()
                    | "NewestScore" >> beam.MapTuple(_newest)
                )
            if self._output is not None:
                _ = scored | "WriteScores" >> WriteParts(
                    self._output, SCORES, SCORES_SCHEMA, _key_of, _score_row, "clip filter scores", self._rows_per_part
                )
            scores = scored | "ScoreByGroup" >> beam.Map(lambda keyed: keyed[1])
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


def earlier_scores(output: str) -> str:
    """The pattern of the scores an earlier run into ``output`` wrote."""
    return pattern(output, SCORES, "part-*.parquet")


def _keyed_score(sample: Sample, group_by: str, model_id: str) -> Iterator[tuple[str, tuple[str, float]]]:
    if model_id in sample.scores:
        yield sample.key, (group_of(sample, group_by), float(sample.scores[model_id]))


def _newest(key: str, found: Mapping[str, list]) -> tuple[str, tuple[str, float]]:
    """A key's score from this run when it scored it again (a retried item), else the earlier run's."""
    new = sorted(found["new"])
    return key, (new or sorted(found["earlier"]))[0]


def _key_of(keyed: tuple[str, tuple[str, float]]) -> str:
    return keyed[0]


def _score_row(keyed: tuple[str, tuple[str, float]]) -> list[dict]:
    key, (group, score) = keyed
    return [{"key": key, "group": group, "score": score}]


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
