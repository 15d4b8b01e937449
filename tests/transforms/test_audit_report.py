"""``audit.json`` from aggregate counts: representation against the reference, exclusion rates, Skew, PMI, people,
defect classes, and the warnings each bound raises."""

import math

import pytest

from schemas.config.audit import AuditConfig
from transforms.audit_report import GENDER_GROUPS, build_report, reference_for


def _config(**fields) -> AuditConfig:
    return AuditConfig(**{"min_count": 1, **fields})


def test_the_reference_is_configured_else_uniform_over_the_groups_else_none():
    config = _config(reference={"camera": {"a": 0.75, "b": 0.25}})
    assert reference_for("camera", ["a", "b", "c"], config) == {"a": 0.75, "b": 0.25}
    assert reference_for("caption_gender", [], config) == {group: 0.5 for group in GENDER_GROUPS}
    assert reference_for("unknown", ["x"], config) is None


def test_representation_exclusion_and_a_vanished_group_from_counts():
    counts = {
        ("items", "kept"): 3,
        ("items", "rejected"): 3,
        ("n", "camera", "a"): 4,
        ("n", "camera", "b"): 2,
        ("kept", "camera", "a"): 3,
        ("x", "camera", "b", "quality"): 2,
    }
    config = _config(reference={"camera": {"a": 0.5, "b": 0.5}})
    report = build_report(counts, {}, config, model_id=None)
    assert report.items == {"kept": 3, "rejected": 3}
    (representation,) = report.representation
    assert representation.measured == 6
    a, b = representation.groups
    assert (a.value, a.before, a.after, a.share_after, a.ratio_after) == ("a", 4, 3, 1.0, 2.0)
    assert (b.value, b.after, b.share_after, b.ratio_after) == ("b", 0, 0.0, 0.0)
    rates = {(row.stage, row.value): row for row in report.exclusion}
    assert rates["quality", "b"].rate == 1.0 and rates["quality", "b"].overall_rate == round(1 / 3, 6)
    assert rates["quality", "b"].ratio == 3.0 and rates["quality", "a"].ratio == 0.0
    codes = {warning.code for warning in report.warnings}
    assert {"vanished", "under_represented"} <= codes and "disproportionate_exclusion" not in codes  # 2 removed
    two = config.model_copy(update={"min_excluded": 2})
    assert "disproportionate_exclusion" in {w.code for w in build_report(counts, {}, two, model_id=None).warnings}


def test_a_group_of_fewer_than_min_count_items_is_never_under_represented():
    """One photo of 19 in a group, removed as a duplicate, failed --fail-on-audit: 0.00x its reference 0.053."""
    counts = {("items", "kept"): 30, ("n", "label", "cat"): 1, ("n", "label", "steel"): 18, ("n", "label", "tile"): 11}
    counts |= {("kept", "label", "steel"): 18, ("kept", "label", "tile"): 11}
    flagged = {}
    for tiles in (11, 2):  # 2 of 11 tiles kept: 0.3x the uniform reference, flagged; the cat's 1 item never
        counts[("kept", "label", "tile")] = tiles
        report = build_report(counts, {}, AuditConfig(min_count=5), model_id=None)
        flagged[tiles] = sorted(w.message.split(":")[0] for w in report.warnings if w.code == "under_represented")
    assert flagged == {11: [], 2: ["label=tile"]}


def test_skew_and_pmi_rows_come_from_pair_and_caption_counts():
    counts = {
        ("pair", "occupation", "nurse", "caption_gender", "feminine"): 3,
        ("pair", "occupation", "nurse", "caption_gender", "masculine"): 1,
        ("captions",): 20,
        ("role", "nurse"): 8,
        ("gender", "feminine"): 7,
        ("gender", "masculine"): 7,
        ("cooc", "nurse", "feminine"): 7,
    }
    report = build_report(counts, {}, _config(skew=[("occupation", "caption_gender")]), model_id="m")
    (row,) = report.skew
    assert (row.value, row.items, row.counts) == ("nurse", 4, {"feminine": 3, "masculine": 1})
    assert row.max_skew == round(math.log(0.75 / 0.5), 6)
    pmis = {(row.role, row.gender): row for row in report.pmi}
    assert pmis["nurse", "feminine"].pmi == pytest.approx(math.log(2.5), abs=1e-6)
    assert pmis["nurse", "masculine"].pmi is None and report.model_id == "m"


def test_a_skew_warning_for_a_group_never_seen_names_the_group():
    counts = {("pair", "occupation", "welder", "caption_gender", "masculine"): 5}
    report = build_report(counts, {}, _config(skew=[("occupation", "caption_gender")]), model_id="m")
    (row,) = report.skew
    assert row.min_skew is None and row.skew["feminine"] is None
    (warning,) = [warning for warning in report.warnings if warning.code == "skew"]
    assert "MinSkew -inf (no caption_gender=feminine among them), 5 items" in warning.message
