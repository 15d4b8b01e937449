"""Quality rules on their scales: decision order, histogram bins, group median and MAD to bin width, bounds."""

import math

import numpy as np
import pytest
from PIL import Image

from schemas.config.quality import OverexposedRule, QualityConfig, QualityRule
from tests.transforms.model_samples import make_sample
from transforms.quality_bounds import (
    BINS,
    CHECKS,
    MAD_SCALE,
    bins_of,
    bound,
    from_scale,
    group_stats,
    relative_rules,
    rules,
    to_scale,
)
from transforms.quality_measures import Measures


def test_rules_keep_the_decision_order_and_leave_out_disabled_ones():
    config = QualityConfig(low_contrast=QualityRule(enabled=False), blurry=QualityRule(deviations=2.0))
    assert list(rules(config)) == [name for name in CHECKS if name != "low_contrast"]
    assert relative_rules(config) == [name for name in rules(config) if rules(config)[name].deviations > 0]
    assert "blurry" in relative_rules(config)
    assert "blurry" not in relative_rules(QualityConfig(blurry=QualityRule(threshold=0.1, deviations=0.0)))


def test_log_scale_floors_at_the_range_and_round_trips():
    check = CHECKS["blurry"]
    assert check.log
    assert to_scale(0.0, check) == check.lower
    assert from_scale(to_scale(3.5, check), check) == pytest.approx(3.5)
    linear = CHECKS["overexposed"]
    assert to_scale(0.25, linear) == 0.25 == from_scale(0.25, linear)


def test_bins_of_puts_each_relative_measure_in_its_bin_and_clamps_the_ends():
    config = QualityConfig(low_contrast=QualityRule(deviations=3.0), blurry=QualityRule(deviations=2.0))
    assert relative_rules(config)[-2:] == ["low_contrast", "blurry"]
    measures = Measures(1e9, 0.0, 0.0, 0.0, 0.5, 0.1, 0.0, 1.0)
    sample = make_sample(Image.new("RGB", (8, 8)), "a", scores=measures.scores())
    found = dict(zip(relative_rules(config), bins_of(sample, config), strict=True))
    check = CHECKS["low_contrast"]
    assert found["low_contrast"] == int((math.log10(0.1) - check.lower) / (check.upper - check.lower) * BINS)
    assert found["blurry"] == BINS - 1


def test_bound_is_median_minus_deviations_times_the_scaled_mad_with_a_floor():
    rule = QualityRule(deviations=3.0, min_mad=0.05)
    low = CHECKS["low_contrast"]
    assert bound(low, rule, -1.0, 0.1) == pytest.approx(10 ** (-1.0 - 3.0 * MAD_SCALE * 0.1))
    assert bound(low, rule, -1.0, 0.0) == pytest.approx(10 ** (-1.0 - 3.0 * 0.05))
    high = CHECKS["overexposed"]
    assert bound(high, rule, 0.1, 0.05) == pytest.approx(0.1 + 3.0 * MAD_SCALE * 0.05)


def test_group_median_and_mad_come_from_the_histogram_to_bin_width():
    config = QualityConfig(
        overexposed=OverexposedRule(threshold=0.35),
        low_contrast=QualityRule(deviations=3.0),
        blurry=QualityRule(deviations=2.0),
    )
    rng = np.random.default_rng(0)
    contrast = rng.uniform(0.05, 0.3, 101)
    sharpness = rng.lognormal(-1.0, 0.5, 101)
    counts = np.zeros((2, BINS), np.int64)
    for row, (code, values) in enumerate((("low_contrast", contrast), ("blurry", sharpness))):
        check = CHECKS[code]
        scaled = np.log10(values)
        counts[row] = np.bincount(
            ((scaled - check.lower) / (check.upper - check.lower) * BINS).astype(int), minlength=BINS
        )
    stats = group_stats(counts, config)
    for code, values in (("low_contrast", contrast), ("blurry", sharpness)):
        check = CHECKS[code]
        width = (check.upper - check.lower) / BINS
        scaled = np.log10(values)
        median, mad, count = stats[code]
        assert count == 101
        assert median == pytest.approx(np.median(scaled), abs=width)
        assert mad == pytest.approx(np.median(np.abs(scaled - np.median(scaled))), abs=2 * width)
