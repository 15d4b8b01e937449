"""The audit's metric math against hand-computed values: Skew, NDKL, PMI, exclusion rates, KL divergence."""

import math

import pytest

from transforms import audit_metrics


def test_uniform_and_kl_divergence():
    assert audit_metrics.uniform(["b", "a", "b"]) == {"a": 0.5, "b": 0.5}
    assert audit_metrics.kl_divergence({"a": 1.0, "b": 0.0}, {"a": 0.5, "b": 0.5}) == pytest.approx(math.log(2))
    assert audit_metrics.kl_divergence({"a": 0.5, "b": 0.5}, {"a": 0.5, "b": 0.5}) == 0.0


def test_skew_max_and_min_against_hand_computed_values():
    reference = {"feminine": 0.5, "masculine": 0.5}
    skews = audit_metrics.skew({"feminine": 1, "masculine": 7}, reference)
    assert skews["feminine"] == pytest.approx(math.log(0.125 / 0.5))
    assert skews["masculine"] == pytest.approx(math.log(0.875 / 0.5))
    assert audit_metrics.max_min_skew(skews) == (pytest.approx(math.log(1.75)), pytest.approx(math.log(0.25)))
    absent = audit_metrics.skew({"feminine": 3}, reference)
    assert absent == {"feminine": pytest.approx(math.log(2)), "masculine": None}
    assert audit_metrics.max_min_skew(absent) == (pytest.approx(math.log(2)), None)
    smoothed = audit_metrics.skew({"feminine": 3}, reference, smoothing=1.0)
    assert smoothed["masculine"] == pytest.approx(math.log((1 / 5) / 0.5))


def test_ndkl_against_hand_computed_values():
    reference = {"a": 0.5, "b": 0.5}
    assert audit_metrics.ndkl(["a", "a", "a"], reference) == pytest.approx(math.log(2))
    assert audit_metrics.ndkl(["a", "b"], reference) == pytest.approx(math.log(2) / (1 + 1 / math.log2(3)))
    assert audit_metrics.ndkl([], reference) == 0.0
    # Three groups, top-3 = a, b, c against (0.5, 0.25, 0.25): KL of (1,0,0), (.5,.5,0), (1/3,1/3,1/3).
    reference = {"a": 0.5, "b": 0.25, "c": 0.25}
    kls = [math.log(2), 0.5 * math.log(1) + 0.5 * math.log(2), sum(x * math.log(x / q) for x, q in
           [(1 / 3, 0.5), (1 / 3, 0.25), (1 / 3, 0.25)])]  # fmt: skip
    weights = [1 / math.log2(i + 1) for i in range(1, 4)]
    expected = sum(w * k for w, k in zip(weights, kls, strict=True)) / sum(weights)
    assert audit_metrics.ndkl(["a", "b", "c"], reference) == pytest.approx(expected)


def test_pmi_and_exclusion_rates_against_hand_computed_values():
    assert audit_metrics.pmi(7, 8, 7, 20) == pytest.approx(math.log(2.5))
    assert audit_metrics.pmi(1, 8, 4, 20) == pytest.approx(math.log(0.625))
    assert audit_metrics.pmi(0, 3, 7, 20) is None
    rates = audit_metrics.exclusion({"f": 3, "m": 1}, {"f": 7, "m": 8, "abstain": 4})
    assert rates["f"] == (pytest.approx(3 / 7), pytest.approx(4 / 19), pytest.approx((3 / 7) / (4 / 19)))
    assert rates["abstain"][0] == 0.0
    assert audit_metrics.exclusion({}, {"f": 2})["f"] == (0.0, 0.0, None)
