"""Quality rules on their scales: which measure each rule reads, fixed-bin histograms, group median, MAD, bounds.

``CHECKS`` says, per rule (keyed by its config field, in decision order), its reason code, the measure it reads (see
``transforms/quality_measures.py``), which side is bad, and the scale and range of its histogram: ``BINS`` fixed
bins over ``[lower, upper)``, on ``log10`` for contrast and sharpness. A group's histogram rows are integer counts
that sum the same whatever the bundling, so ``group_stats`` (median and MAD to bin width, and the count) and the
outlier ``bound`` (median -/+ ``deviations`` x max(``MAD_SCALE`` x MAD, ``min_mad``)) do not depend on the worker
count. Used by ``transforms/quality.py``; the report's quality charts read ``CHECKS`` too.

Pure functions (NumPy, no Beam).
"""

import math
from typing import NamedTuple

import numpy as np

from schemas import reasons
from schemas.config.quality import QualityConfig, QualityRule
from schemas.records.samples import Sample
from transforms.quality_measures import Measures

BINS = 2048
MAD_SCALE = 1.4826


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


def rules(config: QualityConfig) -> dict[str, QualityRule]:
    """The enabled rules by config field, in decision order."""
    return {name: getattr(config, name) for name in CHECKS if getattr(config, name).enabled}


def relative_rules(config: QualityConfig) -> list[str]:
    """Config fields of the rules with an outlier bound, in decision order (the histogram rows)."""
    return [name for name, rule in rules(config).items() if rule.deviations > 0]


def to_scale(value: float, check: Check) -> float:
    """``value`` on the rule's histogram scale (``log10``, floored at the range's lower end, or as it is)."""
    return math.log10(max(value, 10**check.lower)) if check.log else value


def from_scale(value: float, check: Check) -> float:
    """A value on the rule's histogram scale back in its measure's units."""
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
