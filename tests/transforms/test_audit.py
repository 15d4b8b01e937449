"""Bias audit: metric math against hand-computed values, and the audit transforms recovering planted skews."""

import io
import json
import math
import re
import shutil

import apache_beam as beam
import numpy as np
import pytest
import skimage.data
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that
from PIL import Image

from pipeline.launch import RunError
from schemas.audit import AuditItem, AuditReport
from schemas.config.audit import AuditConfig
from schemas.records.ledger import LedgerRow
from schemas.records.samples import ImageInfo, Sample
from tests.helpers import Output, jpeg_bytes, make_photo, run_job, write_sidecar
from transforms.audit import AuditBias, Lexicon, caption_measures
from transforms.write_audit import WriteAudit

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


def _run_audits(tmp_path, configs: dict[str, AuditConfig]) -> dict[str, AuditReport]:
    """Audit the planted population once per config, all in one pipeline; reports by name."""
    population = _population()
    kept = [s for s in population if s.source not in REJECTED]
    ledger = [
        LedgerRow(s.source, s.key, "rejected", REJECTED[s.source], "r") if s.source in REJECTED
        else LedgerRow(s.source, s.key, "kept", "write_shards", "")
        for s in population
    ]  # fmt: skip
    with BeamTestPipeline() as p:
        pop = p | "Population" >> beam.Create(population)
        samples = p | "Kept" >> beam.Create(kept)
        rows = p | "Ledger" >> beam.Create(ledger)
        for name, config in configs.items():
            audited = samples | f"Audit{name}" >> AuditBias(config, model=FAKE, population=pop)
            write = WriteAudit(config, str(tmp_path / name), rows, audited.ranked)
            _ = audited.measures | f"WriteAudit{name}" >> write
            check = _labels_only_if_configured(config.write_labels)
            assert_that(audited.samples, check, label=f"Labels{name}")
    return {
        name: AuditReport.model_validate_json((tmp_path / name / "audit" / "audit.json").read_text())
        for name in configs
    }


@pytest.fixture(scope="module")
def audits(tmp_path_factory) -> dict[str, AuditReport]:
    configs = {"default": _config(), "labelled": _config(write_labels=True)}
    return _run_audits(tmp_path_factory.mktemp("audit"), configs)


@pytest.fixture(scope="module")
def planted(audits) -> AuditReport:
    return audits["default"]


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
    assert ("disproportionate_exclusion", "clip_filter") in codes  # 3 of 7 feminine
    assert ("disproportionate_exclusion", "safety") not in codes  # 1 of 6 in line l3: one item is no pattern

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


def test_no_per_image_labels_leave_the_audit_by_default(audits):
    # The pipeline asserted that no sample carries perceived labels by default, and every sample does when
    # audit.write_labels is set.
    report, labelled = audits["default"], audits["labelled"]
    assert report.labels_in_shards is False and labelled.labels_in_shards is True
    text = report.model_dump_json()
    assert "s00" not in text and "0" * 31 + "1" not in text  # no source or key of any item
    assert labelled.model_copy(update={"labels_in_shards": False}) == report
    assert json.loads(text)["schema_version"] == 1


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """One real run: a camera whose images are all truncated, an unsafe label, an operator name, a face."""
    root = tmp_path_factory.mktemp("planted")
    factory, marketing = root / "factory", root / "marketing"
    factory.mkdir()
    marketing.mkdir()
    for seed in range(6):
        path = factory / f"cam-a-{seed}.jpg"
        make_photo(seed=seed).save(path, quality=90)
        write_sidecar(path, label="scratch" if seed % 2 else "none", camera="cam-a", operator="Jane Roe")
    for seed in range(10, 15):
        path = factory / f"cam-b-{seed}.jpg"
        path.write_bytes(jpeg_bytes(make_photo(seed=seed))[:3000])
        write_sidecar(path, label="scratch", camera="cam-b")
    rude = factory / "cam-a-rude.jpg"
    make_photo(seed=20).save(rude, quality=90)
    write_sidecar(rude, label="shit happens", camera="cam-a")
    face = marketing / "astronaut.jpg"
    Image.fromarray(skimage.data.astronaut()).save(face, quality=95)
    write_sidecar(face, title="Astronaut portrait poster", category="posters")
    inputs = [{"path": str(factory), "domain": "factory"}, {"path": str(marketing), "domain": "marketing"}]
    output = root / "out"
    with pytest.raises(RunError, match="the audit crossed") as raised:
        run_job(inputs, output, audit={"fail_on_bounds": True})
    return Output(path=output, summary=None), str(raised.value)


def test_a_run_measures_slices_and_flags_a_vanished_camera(pipeline_run):
    out, message = pipeline_run
    report = AuditReport.model_validate_json((out.path / "audit" / "audit.json").read_text())
    assert report.items == {"kept": 7, "rejected": 6}
    cameras = {g.value: g for r in report.representation if r.dimension == "camera" for g in r.groups}
    assert (cameras["cam-b"].before, cameras["cam-b"].after) == (5, 0)
    assert (cameras["cam-a"].before, cameras["cam-a"].after) == (7, 6)
    normalise = {r.value: r for r in report.exclusion if r.dimension == "camera" and r.stage == "normalise"}
    assert normalise["cam-b"].rate == 1.0 and normalise["cam-b"].overall_rate == pytest.approx(5 / 12, abs=1e-6)
    warnings = {(w.code, w.message.split(":")[0]) for w in report.warnings}
    assert ("vanished", "camera=cam-b") in warnings
    assert "camera=cam-b" in message  # --fail-on-audit names the crossed bound
    labels = {c.value: (c.before, c.after, c.long_tail) for c in report.defect_classes}
    assert labels["scratch"] == (8, 3, True)
    assert report.people.with_faces == 1


def test_a_run_blurs_faces_drops_private_fields_and_unsafe_text_and_writes_no_labels(pipeline_run):
    out, _ = pipeline_run
    assert out.ledger_by_name()["cam-a-rude.jpg"]["reason"] == "unsafe_text"
    records = {json.loads(s["json"])["path"].rsplit("/", 1)[-1]: (json.loads(s["json"]), s) for s in out.samples()}
    assert len(records) == 7
    for record, _ in records.values():
        assert "audit" not in record["annotations"], "perceived labels in a shard without audit.write_labels"
        assert "operator" not in record["metadata"] and "Jane Roe" not in json.dumps(record)
    record, sample = records["astronaut.jpg"]
    faces = record["annotations"]["faces"]
    assert faces["action"] == "blurred" and faces["count"] == 1
    shard = np.asarray(Image.open(io.BytesIO(sample["jpg"])).convert("RGB")).astype(int)
    original = np.asarray(Image.fromarray(skimage.data.astronaut())).astype(int)
    (region,) = faces["blurred"]
    inside = np.abs(_crop(shard, region) - _crop(original, region)).mean()
    mask = np.ones(shard.shape[:2], bool)
    left, top, width, height = region
    mask[top : top + height, left : left + width] = False
    outside = np.abs(shard[mask] - original[mask]).mean()
    assert inside > 10 and outside < 3  # outside the face only JPEG re-encoding noise


def _crop(array: np.ndarray, region) -> np.ndarray:
    left, top, width, height = region
    return array[top : top + height, left : left + width]


def test_fail_on_audit_flag_sets_the_config_bound(monkeypatch):
    from pipeline import cli, launch

    seen = {}

    def fake_run(config, beam_args, text="", **options):
        seen["fail"] = config.audit.fail_on_bounds
        raise RunError("the audit crossed 1 bound(s)")

    monkeypatch.setattr(launch, "run", fake_run)
    assert cli.main(["run", "--input", "in", "--output", "out", "--fail-on-audit"]) == 1
    assert seen == {"fail": True}


def test_fail_on_audit_fails_a_rerun_that_finds_nothing_new_and_leaving_it_off_needs_no_rebuild(
    pipeline_run, tmp_path
):
    """A rerun with nothing new exited 0 under --fail-on-audit though its audit still crossed the bound (a CI gate
    passed on its second try), and a rerun without the flag was refused as a config that keeps different things."""
    out, _ = pipeline_run
    inputs = [{"path": str(out.path.parent / name), "domain": name} for name in ("factory", "marketing")]
    copy = tmp_path / "out"
    shutil.copytree(out.path, copy)
    before = Output(path=copy, summary=None).file_bytes()

    with pytest.raises(RunError, match="(?s)the audit crossed .* camera=cam-b"):
        run_job(inputs, copy, audit={"fail_on_bounds": True})
    run_job(inputs, copy)  # no RunError, no "rerun with --rebuild"

    assert Output(path=copy, summary=None).file_bytes() == before


def test_fail_on_audit_still_prints_the_run_s_summary_and_a_passing_run_names_its_crossed_bounds(
    pipeline_run, tmp_path, capsys
):
    """A run failed by --fail-on-audit printed no counts, though it committed its output; a run without the flag
    never said its audit crossed bounds."""
    from pipeline import cli

    out, _ = pipeline_run
    copy = tmp_path / "out"
    shutil.copytree(out.path, copy)
    args = ["run", "--output", str(copy), "--smoke-models"]
    for name in ("factory", "marketing"):
        args += ["--input", f"{out.path.parent / name}@{name}"]
    crossed = len(AuditReport.model_validate_json((copy / "audit" / "audit.json").read_text()).warnings)

    assert cli.main([*args, "--fail-on-audit"]) == 1
    printed = capsys.readouterr()
    assert "13 items: 7 kept, 6 rejected, 0 failed" in printed.out
    assert re.search(rf"^  audit: {crossed} bound\(s\) crossed \(.*vanished 1.*\): see ", printed.out, re.M)
    assert "the audit crossed" in printed.err and "the audit crossed" not in printed.out

    assert cli.main(args) == 0
    assert f"  audit: {crossed} bound(s) crossed" in capsys.readouterr().out


def test_an_image_with_a_detected_face_counts_in_the_group_person_before_and_after():
    """The population point comes before the faces stage: 12 images rejected as face_present counted as removed
    from "no_person", and blurred kept faces moved from "no_person" before to "person" after."""
    from transforms.write_audit import contributions

    population = AuditItem("a.jpg", "population", {"person": ("no_person",), "domain": ("marketing",)}, {}, None, "m")
    rejected = LedgerRow("a.jpg", "aa", "rejected", "faces", "face_present")
    keys = dict(contributions(("a.jpg", {"measures": [population], "outcome": [rejected]}), AuditConfig()))
    assert keys[("x", "person", "person", "faces")] == 1 and ("x", "person", "no_person", "faces") not in keys

    kept = AuditItem("b.jpg", "kept", {"person": ("person",)}, {}, 1, "m")
    row = LedgerRow("b.jpg", "bb", "kept", "write_shards", "")
    keys = dict(contributions(("b.jpg", {"measures": [population, kept], "outcome": [row]}), AuditConfig()))
    assert keys[("n", "person", "person")] == keys[("kept", "person", "person")] == 1
    assert ("n", "person", "no_person") not in keys
