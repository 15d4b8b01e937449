"""The assembly of ``audit.json`` (``AuditReport``) from the audit's aggregate counts; pure functions, no Beam.

Counts arrive as one mapping from tuple keys to integers (built by ``transforms.audit``):
``("items", status)``, ``("n", dim, value)`` measured, ``("kept", dim, value)``, ``("x", dim, value, stage)``
rejected, ``("pair", concept, c, attribute, a)``, ``("term", category, term)``, ``("captions",)``,
``("role", r)``, ``("gender", g)``, ``("cooc", r, g)``, ``("people", key)``, ``("people_attr", dim, value)``,
``("measured", point)``.

Representation, exclusion rates, Skew, NDKL and PMI use the metric math of ``transforms/audit_metrics.py``; a
dimension's reference distribution is configured (``audit.reference``), else uniform over its groups, else none
(``reference_for``). A value beyond a configured bound adds an ``AuditWarning``. Figures are rounded to ``DIGITS``
decimals.
"""

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping

from schemas.audit import (
    ABSTAIN,
    AuditReport,
    AuditWarning,
    ClassCount,
    ConceptSkew,
    ExclusionRate,
    GroupShare,
    Ndkl,
    People,
    Pmi,
    Representation,
)
from schemas.config.audit import AuditConfig
from transforms.audit_metrics import exclusion, max_min_skew, ndkl, pmi, skew, uniform

GENDER_GROUPS = ("feminine", "masculine")
DIGITS = 6


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, DIGITS)


def _nested(counts: Mapping[tuple, int], tag: str) -> dict:
    """Counts of one tag as nested dictionaries: ``("n", dim, value)`` -> ``{dim: {value: count}}``."""
    tree: dict = {}
    for key, count in counts.items():
        if key[0] != tag:
            continue
        node = tree
        for part in key[1:-1]:
            node = node.setdefault(part, {})
        node[key[-1]] = node.get(key[-1], 0) + count
    return tree


def reference_for(dim: str, observed: Iterable[str], config: AuditConfig) -> dict[str, float] | None:
    """The reference distribution of a dimension: configured, else uniform over its groups, else none."""
    if dim in config.reference:
        return dict(config.reference[dim])
    if dim in config.attributes:
        return uniform(config.attributes[dim])
    if dim == "caption_gender":
        return uniform(GENDER_GROUPS)
    if dim in config.slices:
        values = [v for v in observed if v != ABSTAIN]
        return uniform(values) if values else None
    return None


def build_report(
    counts: Mapping[tuple, int],
    rankings: Mapping[tuple[str, str], list[str]],
    config: AuditConfig,
    model_id: str | None,
) -> AuditReport:
    """Assemble ``audit.json`` from the aggregate counts and the top-k label rankings of the neutral queries."""
    warnings: list[AuditWarning] = []
    measured, kept, rejected = _nested(counts, "n"), _nested(counts, "kept"), _nested(counts, "x")
    references = {dim: reference_for(dim, values, config) for dim, values in measured.items()}
    representation = []
    for dim in sorted(measured):
        before, after, reference = measured[dim], kept.get(dim, {}), references[dim] or {}
        labelled_before = sum(before.get(v, 0) for v in reference) if reference else sum(before.values())
        labelled_after = sum(after.get(v, 0) for v in reference) if reference else sum(after.values())
        groups = []
        for value in sorted(set(before) | set(reference)):
            n_before, n_after = before.get(value, 0), after.get(value, 0)
            counted = not reference or value in reference
            share_before = n_before / labelled_before if counted and labelled_before else None
            share_after = n_after / labelled_after if counted and labelled_after else None
            expected = reference.get(value)
            ratio = share_after / expected if share_after is not None and expected else None
            groups.append(
                GroupShare(
                    value=value,
                    before=n_before,
                    after=n_after,
                    share_before=_round(share_before),
                    share_after=_round(share_after),
                    reference=_round(expected),
                    ratio_after=_round(ratio),
                )
            )
            # A group of fewer than min_count items is reported, never flagged: one item more or less swings its
            # ratio (a group of one that a dedup removed failed --fail-on-audit).
            enough = labelled_after >= config.min_count and n_before >= config.min_count
            if ratio is not None and enough and ratio < config.min_representation_ratio:
                message = f"{dim}={value}: kept share {share_after:.3f} is {ratio:.2f}x its reference {expected:.3f}"
                warnings.append(_warn("under_represented", message, ratio, config.min_representation_ratio))
            if n_before >= config.min_count and n_after == 0:
                warnings.append(_warn("vanished", f"{dim}={value}: all {n_before} items were removed", 0.0, 1.0))
        representation.append(Representation(dimension=dim, measured=sum(before.values()), groups=groups))
    exclusion_rows = []
    for dim in sorted(rejected):
        by_stage: dict[str, dict[str, int]] = defaultdict(dict)
        for value, stages in rejected[dim].items():
            for stage, count in stages.items():
                by_stage[stage][value] = count
        for stage in sorted(by_stage):
            for value, (rate, overall, ratio) in exclusion(by_stage[stage], measured[dim]).items():
                items, excluded = measured[dim][value], by_stage[stage].get(value, 0)
                exclusion_rows.append(
                    ExclusionRate(
                        stage=stage,
                        dimension=dim,
                        value=value,
                        items=items,
                        excluded=excluded,
                        rate=_round(rate),
                        overall_rate=_round(overall),
                        ratio=_round(ratio),
                    )
                )
                if (
                    ratio is not None
                    and items >= config.min_count
                    and excluded >= config.min_excluded
                    and ratio > config.max_exclusion_ratio
                ):
                    message = f"{stage} removed {rate:.1%} of {dim}={value} against {overall:.1%} overall"
                    warnings.append(_warn("disproportionate_exclusion", message, ratio, config.max_exclusion_ratio))
    skews = _skews(counts, references, config, warnings)
    ndkls = []
    for (query, attribute), labels in sorted(rankings.items()):
        reference = references.get(attribute) or reference_for(attribute, labels, config)
        labels = [label for label in labels if reference and label in reference][: config.ndkl_k]
        if not labels:
            continue
        value = ndkl(labels, reference)
        top = {group: labels.count(group) for group in sorted(reference)}
        ndkls.append(
            Ndkl(
                query=query,
                attribute=attribute,
                k=config.ndkl_k,
                retrieved=len(labels),
                ndkl=_round(value),
                top_k_counts=top,
            )
        )
        if len(labels) >= config.min_count and value > config.max_ndkl:
            message = f"query {query!r}: NDKL@{config.ndkl_k} of {attribute} is {value:.3f}"
            warnings.append(_warn("ndkl", message, value, config.max_ndkl))
    return AuditReport(
        model_id=model_id,
        items=dict(sorted(_nested(counts, "items").items())),
        measured=dict(sorted(_nested(counts, "measured").items())),
        labels_in_shards=config.write_labels,
        representation=representation,
        exclusion=exclusion_rows,
        skew=skews,
        ndkl=ndkls,
        pmi=_pmis(counts),
        terms={category: dict(sorted(terms.items())) for category, terms in sorted(_nested(counts, "term").items())},
        people=_people(counts),
        defect_classes=_defect_classes(measured, kept, config),
        warnings=warnings,
    )


def _warn(code: str, message: str, value: float, bound: float) -> AuditWarning:
    return AuditWarning(code=code, message=message, value=round(value, DIGITS), bound=bound)


def _skews(
    counts: Mapping[tuple, int], references: Mapping[str, dict | None], config: AuditConfig, warnings: list
) -> list[ConceptSkew]:
    pairs = _nested(counts, "pair")
    rows = []
    for concept, attribute in config.skew:
        seen = {group for by_attribute in pairs.get(concept, {}).values() for group in by_attribute.get(attribute, {})}
        reference = references.get(attribute) or reference_for(attribute, seen, config)
        if not reference:
            continue
        for value, by_attribute in sorted(pairs.get(concept, {}).items()):
            observed = by_attribute.get(attribute, {})
            items = sum(observed.get(group, 0) for group in reference)
            if items == 0:
                continue
            values = skew(observed, reference, config.smoothing)
            max_skew, min_skew = max_min_skew(values)
            rows.append(
                ConceptSkew(
                    concept=concept,
                    value=value,
                    attribute=attribute,
                    items=items,
                    counts={group: observed.get(group, 0) for group in sorted(reference)},
                    skew={group: _round(s) for group, s in values.items()},
                    max_skew=_round(max_skew),
                    min_skew=_round(min_skew),
                )
            )
            worst = max(abs(max_skew or 0.0), math.inf if min_skew is None else abs(min_skew))
            if items >= config.min_count and worst > config.max_abs_skew:
                absent = ", ".join(sorted(group for group in reference if not observed.get(group)))
                shown = f"-inf (no {attribute}={absent} among them)" if min_skew is None else f"{min_skew:.2f}"
                message = (
                    f"{concept}={value} vs {attribute}: MaxSkew {max_skew or 0:.2f}, MinSkew {shown}, {items} items"
                )
                warnings.append(_warn("skew", message, min(worst, 1e9), config.max_abs_skew))
    return rows


def _pmis(counts: Mapping[tuple, int]) -> list[Pmi]:
    total = counts.get(("captions",), 0)
    roles, genders, together = _nested(counts, "role"), _nested(counts, "gender"), _nested(counts, "cooc")
    rows = []
    for role in sorted(roles):
        for gender in GENDER_GROUPS:
            both = together.get(role, {}).get(gender, 0)
            value = pmi(both, roles[role], genders.get(gender, 0), total)
            count = genders.get(gender, 0)
            rows.append(
                Pmi(
                    role=role,
                    gender=gender,
                    together=both,
                    role_count=roles[role],
                    gender_count=count,
                    pmi=_round(value),
                )
            )
    return rows


def _people(counts: Mapping[tuple, int]) -> People:
    people = _nested(counts, "people")
    attributes = _nested(counts, "people_attr")
    return People(
        images=people.get("images", 0),
        with_person=people.get("with_person", 0),
        with_faces=people.get("with_faces", 0),
        faces=people.get("faces", 0),
        attributes={dim: dict(sorted(groups.items())) for dim, groups in sorted(attributes.items())},
    )


def _defect_classes(measured: dict, kept: dict, config: AuditConfig) -> list[ClassCount]:
    rows = []
    for column in config.defect_columns:
        before, after = measured.get(column, {}), kept.get(column, {})
        for value in sorted(before, key=lambda v: (-before[v], v)):
            count = before[value]
            rows.append(
                ClassCount(
                    column=column,
                    value=value,
                    before=count,
                    after=after.get(value, 0),
                    long_tail=count <= config.long_tail_max,
                )
            )
    return rows
