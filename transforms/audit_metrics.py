"""The audit's metric math: Skew, NDKL, PMI and exclusion rates; pure functions, no Beam.

Natural logarithms throughout. Definitions:

- ``Skew(a|c) = ln P(a|c) / P*(a)``, with ``P(a|c)`` over the items of concept value ``c`` that have a reference
  group of attribute ``a`` (abstentions and mixed captions left out), optionally with additive smoothing;
  ``MaxSkew = max_a Skew``, ``MinSkew = min_a Skew`` (Geyik et al., 2019). A reference group never seen gives
  ``P(a|c) = 0``: its Skew is reported as ``None`` and so is MinSkew (minus infinity).
- ``NDKL(tau) = 1/Z sum_{i=1..k} 1/log2(i+1) KL(D_{tau_i} || P*)``, ``Z = sum_{i=1..k} 1/log2(i+1)``, where
  ``D_{tau_i}`` is the attribute distribution of the top ``i`` results (Geyik et al., 2019).
- ``PMI(r, g) = ln P(r, g) / (P(r) P(g))`` with probabilities over captions.
- Exclusion rate of group ``v`` at stage ``s``: items of ``v`` the stage rejected / items of ``v`` measured; the
  overall rate is the same over every group of the dimension, and the ratio compares the two.

``transforms/audit_report.py`` assembles ``audit.json`` from these.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping


def uniform(values: Iterable[str]) -> dict[str, float]:
    """Equal shares over the distinct ``values``."""
    values = sorted(set(values))
    return {value: 1.0 / len(values) for value in values}


def kl_divergence(p: Mapping[str, float], q: Mapping[str, float]) -> float:
    """KL(p || q) with ``0 ln 0 = 0``; ``q`` must be positive wherever ``p`` is."""
    return float(sum(pv * math.log(pv / q[key]) for key, pv in p.items() if pv > 0))


def skew(counts: Mapping[str, int], reference: Mapping[str, float], smoothing: float = 0.0) -> dict[str, float | None]:
    """Skew of every reference group given its counts within one concept value."""
    total = sum(counts.get(group, 0) for group in reference) + smoothing * len(reference)
    result: dict[str, float | None] = {}
    for group, expected in sorted(reference.items()):
        observed = (counts.get(group, 0) + smoothing) / total if total > 0 else 0.0
        result[group] = math.log(observed / expected) if observed > 0 else None
    return result


def max_min_skew(skews: Mapping[str, float | None]) -> tuple[float | None, float | None]:
    """MaxSkew and MinSkew; MinSkew is ``None`` (minus infinity) when a reference group is absent."""
    finite = [value for value in skews.values() if value is not None]
    max_skew = max(finite) if finite else None
    min_skew = min(finite) if finite and len(finite) == len(skews) else None
    return max_skew, min_skew


def ndkl(ranked: list[str], reference: Mapping[str, float]) -> float:
    """NDKL of a ranked list of group labels against the reference distribution."""
    if not ranked:
        return 0.0
    seen: dict[str, int] = defaultdict(int)
    total = weight_sum = 0.0
    for i, label in enumerate(ranked, start=1):
        seen[label] += 1
        weight = 1.0 / math.log2(i + 1)
        total += weight * kl_divergence({k: v / i for k, v in seen.items()}, reference)
        weight_sum += weight
    return total / weight_sum


def pmi(together: int, first: int, second: int, total: int) -> float | None:
    """Pointwise mutual information from counts; ``None`` when the pair never occurs."""
    if together == 0 or total == 0:
        return None
    return math.log(together * total / (first * second))


def exclusion(excluded: Mapping[str, int], items: Mapping[str, int]) -> dict[str, tuple[float, float, float | None]]:
    """``(rate, overall_rate, ratio)`` per group of one dimension at one stage."""
    overall = sum(excluded.values()) / max(1, sum(items.values()))
    result = {}
    for value, count in sorted(items.items()):
        rate = excluded.get(value, 0) / count if count else 0.0
        result[value] = (rate, overall, rate / overall if overall > 0 else None)
    return result
