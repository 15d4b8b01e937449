"""Bias audit: metric math against hand-computed values, and the audit transforms recovering planted skews."""

import json
import math

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that

from schemas.audit import AuditReport
from schemas.config import AuditConfig
from schemas.records import ImageInfo, LedgerRow, Sample
from transforms import audit_metrics
from transforms.audit import AuditBias, Lexicon, WriteAudit, caption_measures

DIM = 16
E = np.eye(DIM, dtype=np.float32)


class FakeClip:
    """Prompt texts looked up in a table of basis vectors."""

    model_id = "fake_clip"

    def __init__(self, table: dict[str, np.ndarray]):
        self.table = table

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.table[text] for text in texts])


def _config(**overrides) -> AuditConfig:
    values = dict(
        person_prompts=["person"],
        non_person_prompts=["thing"],
        attributes={"gender_presentation": {"feminine": ["woman"], "masculine": ["man"]}},
        margin=0.2,
        slices=["line"],
        defect_columns=[],
        skew=[("occupation", "gender_presentation")],
        neutral_queries=["doctor query"],
        ndkl_k=4,
        min_count=5,
    )
    return AuditConfig(**{**values, **overrides})


FAKE = FakeClip({"person": E[0], "thing": E[1], "woman": E[2], "man": E[3], "doctor query": E[6]})


def _embedding(*weights: tuple[int, float]) -> bytes:
    vector = sum(weight * E[axis] for axis, weight in weights)
    return (vector / np.linalg.norm(vector)).astype(np.float16).tobytes()


def _sample(index: int, text: str, embedding: bytes, line: str) -> Sample:
    info = ImageInfo(64, 64, "JPEG", "RGB", 10)
    return Sample(
        key=f"{index:032x}",
        source=f"s{index:02d}",
        path="",
        domain="marketing",
        metadata={"line": line},
        image=b"",
        image_ext="jpg",
        sha256="",
        pixel_sha256="",
        original=info,
        normalised=info,
        text=text,
        embedding=embedding,
    )


# The planted population: (count, caption, embedding, line). Masculine doctors rank first for the doctor query.
PLANTED = [
    (8, "he is a doctor", _embedding((0, 2), (3, 1), (6, 1.0)), "l1"),
    (2, "she is a doctor", _embedding((0, 2), (2, 1), (6, 0.2)), "l1"),
    (5, "she is a nurse", _embedding((0, 2), (2, 1)), "l2"),
    (4, "a person", _embedding((0, 2), (2, 0.7), (3, 0.7)), "l2"),  # equal evidence: abstain
    (6, "a red mug", _embedding((1, 2), (4, 1)), "l3"),
]
# Rejected by a filter: 1 masculine doctor, 1 feminine doctor and 2 nurses at clip_filter; 1 mug at safety.
REJECTED = {"s00": "clip_filter", "s08": "clip_filter", "s10": "clip_filter", "s11": "clip_filter", "s24": "safety"}


def _population() -> list[Sample]:
    samples, index = [], 0
    for count, text, embedding, line in PLANTED:
        for _ in range(count):
            samples.append(_sample(index, text, embedding, line))
            index += 1
    return samples


def _labels_only_if_configured(write_labels: bool):
    def check(samples: list[Sample]) -> None:
        labelled = [s.annotations["audit"]["perceived"] for s in samples if "audit" in s.annotations]
        assert len(samples) == 20
        if not write_labels:
            assert labelled == [], "perceived labels reached the samples without audit.write_labels"
        else:
            assert len(labelled) == 20 and sorted({p["person"] for p in labelled}) == ["no_person", "person"]

    return check


def _run_audit(tmp_path, config: AuditConfig) -> AuditReport:
    population = _population()
    kept = [s for s in population if s.source not in REJECTED]
    ledger = [
        LedgerRow(s.source, s.key, "rejected", REJECTED[s.source], "r") if s.source in REJECTED
        else LedgerRow(s.source, s.key, "kept", "write_shards", "")
        for s in population
    ]  # fmt: skip
    with BeamTestPipeline() as p:
        pop = p | "Population" >> beam.Create(population)
        audited = (p | "Kept" >> beam.Create(kept)) | "Audit" >> AuditBias(config, model=FAKE, population=pop)
        rows = p | "Ledger" >> beam.Create(ledger)
        _ = audited.measures | "WriteAudit" >> WriteAudit(config, str(tmp_path), rows, audited.ranked)
        assert_that(audited.samples, _labels_only_if_configured(config.write_labels), label="Labels")
    return AuditReport.model_validate_json((tmp_path / "audit" / "audit.json").read_text())


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> AuditReport:
    return _run_audit(tmp_path_factory.mktemp("audit"), _config())


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


def test_caption_measures_find_gendered_roles_and_identity_terms():
    lexicon = Lexicon.load("")
    groups, terms = caption_measures("She is a Police Officer; her brother is a welder.", lexicon)
    assert groups == {"caption_gender": ("mixed",), "occupation": ("police_officer", "welder")}
    assert terms["gendered:feminine"] == ("she", "her") and terms["gendered:masculine"] == ("brother",)
    groups, _ = caption_measures("A black cotton t-shirt for deaf and Muslim customers", lexicon)
    assert groups == {"identity": ("disability", "religion")}


def test_audit_recovers_planted_exclusion_skew_pmi_and_ndkl(planted):
    report = planted
    assert report.model_id == "fake_clip"
    assert report.items == {"kept": 20, "rejected": 5}
    gender = {(r.stage, r.value): r for r in report.exclusion if r.dimension == "gender_presentation"}
    feminine = gender[("clip_filter", "feminine")]
    assert (feminine.items, feminine.excluded) == (7, 3)
    assert feminine.rate == pytest.approx(3 / 7, abs=1e-6)
    assert feminine.overall_rate == pytest.approx(4 / 19, abs=1e-6)
    assert feminine.ratio == pytest.approx(57 / 28, abs=1e-5)
    line = {(r.stage, r.value): r for r in report.exclusion if r.dimension == "line"}
    assert line[("safety", "l3")].ratio == pytest.approx((1 / 6) / (1 / 25), abs=1e-5)
    codes = {(w.code, w.message.split(" ")[0]) for w in report.warnings}
    assert ("disproportionate_exclusion", "clip_filter") in codes and ("disproportionate_exclusion", "safety") in codes

    skews = {s.value: s for s in report.skew}
    assert skews["doctor"].counts == {"feminine": 1, "masculine": 7}
    assert skews["doctor"].min_skew == pytest.approx(math.log(0.25), abs=1e-6)
    assert skews["doctor"].max_skew == pytest.approx(math.log(1.75), abs=1e-6)
    assert skews["nurse"].min_skew is None and skews["nurse"].skew["masculine"] is None
    assert any(w.code == "skew" and w.message.startswith("occupation=doctor") for w in report.warnings)
    assert not any(w.code == "skew" and "nurse" in w.message for w in report.warnings)  # 3 items < min_count

    pmi = {(row.role, row.gender): row.pmi for row in report.pmi}
    assert pmi[("doctor", "masculine")] == pytest.approx(math.log(2.5), abs=1e-6)
    assert pmi[("doctor", "feminine")] == pytest.approx(math.log(0.625), abs=1e-6)
    assert pmi[("nurse", "feminine")] == pytest.approx(math.log(5), abs=1e-6)
    assert pmi[("nurse", "masculine")] is None
    assert report.terms["occupation"] == {"doctor": 8, "nurse": 3}

    (ndkl,) = report.ndkl
    assert ndkl.top_k_counts == {"feminine": 0, "masculine": 4}
    assert ndkl.ndkl == pytest.approx(math.log(2), abs=1e-6)


def test_abstains_below_the_margin_and_counts_people(planted):
    report = planted
    representation = {r.dimension: {g.value: g for g in r.groups} for r in report.representation}
    gender = representation["gender_presentation"]
    assert (gender["abstain"].before, gender["abstain"].after) == (4, 4)
    assert gender["abstain"].share_after is None and gender["abstain"].reference is None
    assert (gender["feminine"].after, gender["masculine"].after) == (4, 7)
    assert gender["feminine"].share_after == pytest.approx(4 / 11, abs=1e-6)
    assert representation["person"]["no_person"].before == 6
    assert report.people.images == 20 and report.people.with_person == 15
    assert report.people.attributes == {"gender_presentation": {"abstain": 4, "feminine": 4, "masculine": 7}}


def test_no_per_image_labels_leave_the_audit_by_default(planted, tmp_path):
    report = planted  # its run asserted that no sample carries perceived labels
    assert report.labels_in_shards is False
    text = report.model_dump_json()
    assert "s00" not in text and "0" * 31 + "1" not in text  # no source or key of any item
    labelled = _run_audit(tmp_path, _config(write_labels=True))  # its run asserted that every sample is labelled
    assert labelled.labels_in_shards is True
    # The same measurements from a second run: the report does not depend on arrival order.
    assert labelled.model_copy(update={"labels_in_shards": False}) == report
    assert json.loads(report.model_dump_json())["schema_version"] == 1
