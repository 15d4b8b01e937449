"""CLIP filter: an absolute threshold or a keep-fraction per group, with the score and threshold in every rejection."""

import json
from collections import defaultdict

import apache_beam as beam
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline

from schemas.config.clip_filter import ClipFilterConfig
from schemas.config.load import load_config
from tests.transforms.model_samples import make_sample, solid
from transforms.clip_filter import ClipFilter, threshold_for

MODEL = "clip_vit_b_32_laion2b"
SCORES = {
    "factory": [0.10, 0.12, 0.14, 0.16],
    "marketing": [0.25, 0.30, 0.35, 0.40, 0.45],
}
RULES = {
    "threshold": ClipFilterConfig(threshold=0.28),
    "fraction": ClipFilterConfig(keep_fraction=0.5),
    "fraction_by_line": ClipFilterConfig(keep_fraction=0.5, group_by="metadata.line"),
    "off": ClipFilterConfig(),
}
_COLLECTED: dict[str, list] = defaultdict(list)


class _Collect(beam.DoFn):
    def __init__(self, tag: str):
        self._tag = tag

    def process(self, element):
        _COLLECTED[self._tag].append(element)


def _name(source: str) -> str:
    return source.rsplit("/", 1)[-1].removesuffix(".jpg")


@pytest.fixture(scope="module")
def decided():
    """Every rule in RULES applied to the same samples in one pipeline: rule -> (kept names, rejections by name)."""
    samples = [
        make_sample(
            solid("grey"),
            f"{domain}-{score}",
            domain,
            {"line": "line-1" if i % 2 else "line-2"},
            "x",
            "",
            {MODEL: score},
        )
        for domain, scores in SCORES.items()
        for i, score in enumerate(scores)
    ]
    samples.append(make_sample(solid("red"), "unscored", "marketing", text=""))
    _COLLECTED.clear()
    with BeamTestPipeline() as pipeline:
        created = pipeline | beam.Create(samples)
        for rule, config in RULES.items():
            result = created | f"Filter{rule}" >> ClipFilter(config, MODEL)
            _ = result.kept | f"Kept{rule}" >> beam.ParDo(_Collect(f"{rule}/kept"))
            _ = result.rejected | f"Rejected{rule}" >> beam.ParDo(_Collect(f"{rule}/rejected"))
    return {
        rule: (
            sorted(_name(s.source) for s in _COLLECTED[f"{rule}/kept"]),
            {_name(row.source): row for row in _COLLECTED[f"{rule}/rejected"]},
        )
        for rule in RULES
    }


def test_threshold_rejects_below_it_with_score_threshold_and_model(decided):
    kept, rejected = decided["threshold"]
    assert kept == ["marketing-0.3", "marketing-0.35", "marketing-0.4", "marketing-0.45", "unscored"]
    row = rejected["factory-0.16"]
    assert (row.status, row.stage, row.reason) == ("rejected", "clip_filter", "low_clip_score")
    assert json.loads(row.detail) == {"model": MODEL, "rule": "threshold", "score": 0.16, "threshold": 0.28}
    assert set(rejected) == {"factory-0.1", "factory-0.12", "factory-0.14", "factory-0.16", "marketing-0.25"}


def test_keep_fraction_calibrates_a_threshold_per_domain(decided):
    kept, rejected = decided["fraction"]
    assert kept == ["factory-0.14", "factory-0.16", "marketing-0.35", "marketing-0.4", "marketing-0.45", "unscored"]
    assert json.loads(rejected["factory-0.12"].detail) == {
        "group": "factory",
        "group_by": "domain",
        "keep_fraction": 0.5,
        "model": MODEL,
        "rule": "keep_fraction",
        "score": 0.12,
        "threshold": 0.14,
    }
    assert json.loads(rejected["marketing-0.3"].detail)["threshold"] == 0.35


def test_keep_fraction_groups_by_a_metadata_field(decided):
    kept, rejected = decided["fraction_by_line"]
    # line-2 holds the even positions (0.10, 0.14, 0.25, 0.35, 0.45), line-1 the odd ones (0.12, 0.16, 0.30, 0.40).
    # Each line keeps its top half whatever the domain: 0.25, 0.35, 0.45 of line-2 and 0.30, 0.40 of line-1.
    assert kept == ["marketing-0.25", "marketing-0.3", "marketing-0.35", "marketing-0.4", "marketing-0.45", "unscored"]
    assert {json.loads(row.detail)["group"] for row in rejected.values()} == {"line-1", "line-2"}


def test_without_a_rule_scores_stay_and_nothing_is_removed(decided):
    kept, rejected = decided["off"]
    assert len(kept) == 10 and rejected == {}


def test_threshold_and_keep_fraction_together_are_a_config_error():
    with pytest.raises(ValueError, match="threshold or keep_fraction, not both"):
        load_config(None, ["clip_filter.threshold=0.28", "clip_filter.keep_fraction=0.9"])
    with pytest.raises(ValueError, match="group_by"):
        ClipFilterConfig(keep_fraction=0.5, group_by="line")


@pytest.mark.parametrize(
    "count, fraction, kept", [(1, 0.5, 1), (6, 0.5, 3), (7, 0.5, 4), (10, 0.01, 1), (10, 1.0, 10)]
)
def test_threshold_from_quantiles_keeps_the_top_share_exactly(count, fraction, kept):
    from apache_beam.transforms.stats import ApproximateQuantilesCombineFn

    scores = [round(0.01 * i, 2) for i in range(count)]
    combine = ApproximateQuantilesCombineFn.create(1001)
    accumulator = combine.create_accumulator()
    for score in reversed(scores):
        accumulator = combine.add_input(accumulator, score)
    quantiles = combine.extract_output(accumulator)
    threshold = threshold_for(quantiles, count, ClipFilterConfig(keep_fraction=fraction))
    assert sum(score >= threshold for score in scores) == kept
