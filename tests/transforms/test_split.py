"""Split: no group straddles two splits, assignments survive added inputs, stratum minimums are met or reported."""

import json
import random
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.config import SplitConfig
from schemas.records import ImageInfo, Sample
from tests.helpers import jpeg_bytes, make_photo, run_job, write_sidecar
from transforms._components import components, union_find
from transforms.split import AssignSplits, key_node, plan_splits, stratum_of, unit_of

FAST = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPLIT = SplitConfig(
    fractions={"train": 0.7, "validation": 0.15, "test": 0.15},
    group_by=["doc_id", "sku", "line+date"],
    stratify_by=["label"],
    min_groups=1,
)


def _key(index: int) -> str:
    return f"{index:032x}"


@st.composite
def datasets(draw, most: int = 60):
    """Random samples with overlapping documents, SKUs, line+date keys and labels, plus duplicate chains."""
    n = draw(st.integers(1, most))
    samples = []
    for index in range(n):
        metadata = {}
        for field, choices in (("doc_id", 12), ("sku", 8), ("line", 3), ("date", 3)):
            if draw(st.booleans()):
                metadata[field] = f"{field}-{draw(st.integers(0, choices))}"
        if draw(st.integers(0, 3)) == 0:
            metadata["label"] = draw(st.sampled_from(["scratch", "dent", "none"]))
        samples.append((_key(index), draw(st.sampled_from(["factory", "marketing"])), metadata))
    links = []
    for _ in range(draw(st.integers(0, 3))):  # duplicate chains: k0 ~ k1 ~ k2 ...
        chain = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=6))
        links += [(_key(a), _key(b)) for a, b in zip(chain, chain[1:], strict=False)]
    return samples, links


def oracle_groups(samples, links, config):
    """Groups by plain union-find over the same relations, independent of the Beam method."""
    edges = [(_key_node(key), f"{spec}={[m.get(f) for f in spec.split('+')]}")
             for key, _, m in samples for spec in config.group_by
             if all(m.get(f) for f in spec.split("+"))]  # fmt: skip
    edges += [(_key_node(a), _key_node(b)) for a, b in links]
    labels = union_find(edges)
    return {key: labels.get(_key_node(key), _key_node(key)) for key, _, _ in samples}


def _key_node(key: str) -> str:
    return "k" + key


@FAST
@given(
    edges=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=80).map(
        lambda pairs: [(f"n{a:02d}", f"n{b:02d}") for a, b in pairs]
    ),
    rounds=st.integers(0, 4),
)
def test_components_equal_union_find_whatever_the_round_count(edges, rounds):
    labels, _ = components(edges, rounds)
    assert labels == union_find([(a, b) for a, b in edges if a != b])


@FAST
@given(data=datasets(), rounds=st.integers(0, 3))
def test_no_document_sku_line_date_or_duplicate_chain_spans_two_splits(data, rounds):
    samples, links = data
    config = SPLIT.model_copy(update={"rounds": rounds})
    split_of, _ = plan_splits(samples, links, config)
    assert set(split_of) == {key for key, _, _ in samples}
    for spec in config.group_by:
        by_value: dict = {}
        for key, _, metadata in samples:
            if all(metadata.get(f) for f in spec.split("+")):
                by_value.setdefault(tuple(metadata[f] for f in spec.split("+")), set()).add(split_of[key])
        assert all(len(splits) == 1 for splits in by_value.values()), spec
    for a, b in links:
        assert split_of[a] == split_of[b]
    groups = oracle_groups(samples, links, config)
    per_group: dict = {}
    for key, group in groups.items():
        per_group.setdefault(group, set()).add(split_of[key])
    assert all(len(splits) == 1 for splits in per_group.values())


@FAST
@given(data=datasets(most=80), min_groups=st.integers(0, 3))
def test_stratum_minimums_are_met_or_the_stratum_is_named(data, min_groups):
    samples, links = data
    config = SPLIT.model_copy(update={"min_groups": min_groups})
    split_of, decisions = plan_splits(samples, links, config)
    groups = oracle_groups(samples, links, config)
    strata = {key: stratum_of(domain, metadata, config.stratify_by) for key, domain, metadata in samples}
    sizes = Counter(strata.values())
    primary: dict = {}
    for key, group in groups.items():
        primary[group] = min(primary.get(group, strata[key]), strata[key], key=lambda s: (sizes[s], s))
    group_split = {group: split_of[key] for key, group in groups.items()}
    counts = Counter((primary[group], split) for group, split in group_split.items())
    assert set(decisions) == set(primary.values())
    for stratum, decision in decisions.items():
        assert {s: n for s, n in decision.by_split if n} == {s: n for (t, s), n in counts.items() if t == stratum}
        if decision.status == "ok":
            assert counts[(stratum, "validation")] >= min_groups
            assert counts[(stratum, "test")] >= min_groups
        else:
            assert decision.status in ("too_small", "unmet")
            assert (
                decision.status == "unmet"
                or 2 * min_groups > 0.5 * decision.groups
                or decision.groups <= 2 * min_groups
            )


@FAST
@given(first=datasets(most=40), second=datasets(most=40))
def test_assignments_are_stable_when_inputs_are_added(first, second):
    old, _ = first
    new = [(_key(1000 + int(key, 16)), domain, metadata) for key, domain, metadata in second[0]]
    # A pure function of the group: samples grouped by a stable token keep their split in a full rebuild.
    keyed = SPLIT.model_copy(update={"min_groups": 0, "group_by": ["doc_id"]})
    with_doc = [(k, d, {**m, "doc_id": m.get("doc_id", "doc-x")}) for k, d, m in old]
    added = [(k, d, {**m, "doc_id": m.get("doc_id", "doc-y")}) for k, d, m in new]
    before, _ = plan_splits(with_doc, [], keyed)
    after, _ = plan_splits(with_doc + added, [], keyed)
    assert {key: after[key] for key in before} == before
    # Incremental: shipped samples pin their groups, so a new sample joining one goes where the group shipped
    # (where new samples bridge groups that shipped to different splits, the first held-out split by name wins).
    shipped_split, _ = plan_splits(old, first[1], SPLIT)
    shipped = [(key, domain, metadata, shipped_split[key]) for key, domain, metadata in old]
    joined_links = [(new[i][0], old[i % len(old)][0]) for i in range(0, len(new), 3)]
    later, _ = plan_splits(new, joined_links + first[1], SPLIT, shipped=shipped)
    assert set(later) == {key for key, _, _ in new}
    groups = oracle_groups(old + new, joined_links + first[1], SPLIT)
    precedence = ["test", "validation", "train"]
    for key, _, _ in new:
        pinned = {shipped_split[old_key] for old_key, _, _ in old if groups[old_key] == groups[key]}
        if pinned:
            assert later[key] == min(pinned, key=precedence.index)


def test_the_hash_place_of_a_group_depends_only_on_salt_and_anchor():
    assert unit_of('0:doc_id=["a"]', "s") == unit_of('0:doc_id=["a"]', "s")
    assert unit_of('0:doc_id=["a"]', "s") != unit_of('0:doc_id=["a"]', "t")
    assert 0 <= unit_of(key_node(_key(7)), "s") < 1


def test_split_is_off_without_a_section_and_on_with_any_key():
    assert not SplitConfig().enabled
    assert SplitConfig.model_validate({"min_groups": 2}).enabled
    with pytest.raises(ValueError, match="add up to 1"):
        SplitConfig(fractions={"train": 0.9, "test": 0.2})
    with pytest.raises(ValueError, match="not a key"):
        SplitConfig(fractions={"all": 1.0})


def _sample(key: str, domain: str, metadata: dict, document: str = "") -> Sample:
    info = ImageInfo(8, 8, "JPEG", "RGB", 10)
    annotations = {"document_id": document} if document else {}
    return Sample(
        key, f"src-{key}", "", domain, metadata, b"img", "jpg", key, key, info, info, annotations=annotations
    )


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory):
    """One DirectRunner run of AssignSplits on a random data set with links, shipped samples and pins."""
    rng = random.Random(5)
    samples = []
    for index in range(60):
        metadata = {"doc_id": f"d{rng.randrange(50)}"} if rng.random() < 0.6 else {}
        if rng.random() < 0.5:
            metadata["label"] = rng.choice(["none", "none", "scratch", "dent"])
        if index % 25 == 0:
            metadata["split"] = "test"
        document = "page-1" if index in (3, 33) else ""  # one interleaved document from the documents stage
        samples.append((_key(index), rng.choice(["factory", "marketing"]), metadata, document))
    links = [(_key(rng.randrange(60)), _key(rng.randrange(60))) for _ in range(10)]
    links += [(_key(i), _key(i + 1)) for i in range(40, 55)]  # a long chain: one round leaves a residue to finish
    shipped = [(_key(500 + i), "factory", {"doc_id": f"d{i}", "label": "dent"}, "validation", "") for i in range(3)]
    config = SPLIT.model_copy(update={"group_by": ["doc_id"], "rounds": 1})
    output = str(tmp_path_factory.mktemp("split"))
    pipeline = BeamTestPipeline()
    result = (
        pipeline
        | "Samples" >> beam.Create([_sample(*sample) for sample in samples])
        | AssignSplits(
            config,
            output,
            links=pipeline | "Links" >> beam.Create(links),
            shipped=pipeline | "Shipped" >> beam.Create(shipped),
        )
    )
    expected, decisions = plan_splits(samples, links, config, shipped=shipped)
    assert_that(result.assignments, equal_to(sorted(expected.items())), label="AssignmentsMatchPlan")
    assert_that(
        result.samples | beam.Map(lambda s: (s.key, s.split)), equal_to(sorted(expected.items())), label="Samples"
    )
    outcome = pipeline.run()
    outcome.wait_until_finish()
    residual = outcome.metrics().query(MetricsFilter().with_name("residual_edges"))["counters"]
    assert residual and residual[0].committed > 0
    report = json.loads((Path(output) / "splits" / "splits.json").read_text())
    return samples, expected, decisions, report


def test_beam_assignment_equals_the_in_memory_plan_and_honours_pins(beam_run):
    samples, expected, _, _ = beam_run
    assert expected[_key(3)] == expected[_key(33)]
    for key, _, metadata, _ in samples:
        if metadata.get("split") == "test":
            assert expected[key] == "test"
    for index in range(40, 56):
        assert expected[_key(index)] == expected[_key(40)]
    assert {s for s in expected.values()} == {"train", "validation", "test"}


def test_report_gives_fractions_per_stratum_and_names_small_strata(beam_run):
    samples, expected, decisions, report = beam_run
    assert report["config"]["fractions"] == {"train": 0.7, "validation": 0.15, "test": 0.15}
    assert sum(t["samples"] for t in report["totals"].values()) == len(samples) + 3
    strata = {entry["stratum"]: entry for entry in report["strata"]}
    assert set(strata) == set(decisions)
    for name, entry in strata.items():
        fractions = [split["sample_fraction"] for split in entry["splits"].values()]
        assert abs(sum(fractions) - 1) < 1e-4
        assert entry["status"] == decisions[name].status
    assert report["too_small"] == [name for name, entry in strata.items() if entry["status"] == "too_small"]
    assert report["largest_groups"][0]["samples"] >= report["largest_groups"][-1]["samples"]


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    """The real pipeline on two domains: documents of several images, a near duplicate in another document (near
    dedup in report_only mode keeps both and links them), a manifest-style split pin, two inputs that copy external
    eval images (one in a product document that ships, one alone), removed by decontamination, and a planted leak:
    one photo in both domains, pinned to test and train, which near dedup (scoped per domain) never compares."""
    root = tmp_path_factory.mktemp("split_e2e")
    images, excluded = root / "images", root / "benchmark"
    images.mkdir()
    excluded.mkdir()
    for doc in range(10):
        for view in range(1 + doc % 2):
            path = images / f"doc{doc}-{view}.jpg"
            path.write_bytes(jpeg_bytes(make_photo(96, 80, seed=10 * doc + view), quality=90))
            label = {"label": "dent" if doc % 4 == 1 else "none"} if doc % 2 else {"category": f"cat-{doc % 3}"}
            write_sidecar(path, title=f"item {doc} view {view}", doc_id=f"DOC-{doc}", domain=_domain(doc), **label)
    edited = make_photo(96, 80, seed=0)
    edited.putpixel((5, 5), (255, 0, 0))
    copy = images / "copy-of-doc0.jpg"
    copy.write_bytes(jpeg_bytes(edited, quality=90))
    write_sidecar(copy, title="doc 0 with one pixel changed", doc_id="DOC-99", domain="marketing", category="cat-0")
    write_sidecar(images / "doc3-0.jpg", title="pinned", doc_id="DOC-3", domain="factory", split="test", label="dent")
    leaked = make_photo(96, 80, seed=192)
    (images / "held.jpg").write_bytes(jpeg_bytes(leaked, quality=90))
    write_sidecar(images / "held.jpg", title="held out", doc_id="DOC-H", domain="marketing", split="test")
    leaked.putpixel((3, 3), (0, 255, 0))
    (images / "reused.jpg").write_bytes(jpeg_bytes(leaked, quality=90))
    write_sidecar(images / "reused.jpg", title="reused", doc_id="DOC-R", domain="factory", split="train", label="none")
    for name, seed, doc in (("in-doc2", 190, {"doc_id": "DOC-2"}), ("alone", 191, {})):
        data = jpeg_bytes(make_photo(96, 80, seed=seed), quality=90)
        (excluded / f"bench-{name}.jpg").write_bytes(data)
        (images / f"{name}.jpg").write_bytes(data)
        write_sidecar(images / f"{name}.jpg", title=f"contaminated {name}", domain="marketing", **doc)
    return run_job(
        [images],
        root / "out",
        split={"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}},
        near_dedup={"report_only": True, "scope": ["domain"]},
        decontaminate={"exclude": [str(excluded)]},
        eval_set={"fail_on_leak": False},
        faces={"enabled": False},
        audit={"enabled": False},
    )


def _domain(doc: int) -> str:
    return "factory" if doc % 2 else "marketing"


def _records(out) -> dict[str, dict]:
    return {json.loads(s["json"])["key"]: {**json.loads(s["json"]), "url": s["__url__"]} for s in out.samples()}


def test_each_split_has_its_own_shards_index_and_stats_and_ledger_rows_name_the_split(pipeline_run):
    out = pipeline_run
    records = _records(out)
    folders = {path.parent.name for path in out.shard_paths()}
    assert folders == {"train", "validation", "test"}
    for folder in folders:
        base = out.path / "shards" / "pairs" / folder
        assert (base / "index.json").exists()
        assert list(base.glob("*_stats.json"))
    kept = {row["key"]: row for row in out.ledger if row["status"] == "kept"}
    assert set(kept) == set(records) and len(records) >= 16
    by_doc: dict = {}
    for key, record in records.items():
        assert kept[key]["split"] == record["split"] == record["url"].split("/")[-2]
        by_doc.setdefault(record["metadata"]["doc_id"], set()).add(record["split"])
    assert all(len(splits) == 1 for splits in by_doc.values())
    assert by_doc["DOC-3"] == {"test"}
    assert by_doc["DOC-99"] == by_doc["DOC-0"]
    report = json.loads((out.path / "splits" / "splits.json").read_text())
    assert {entry["stratum"] for entry in report["strata"]} == {"factory", "marketing"}
    assert all(entry["splits"]["test"]["groups"] >= 1 for entry in report["strata"])


def test_eval_set_of_the_run_holds_test_images_with_answers_from_their_metadata(pipeline_run):
    out = pipeline_run
    records = _records(out)
    folder = out.path / "eval"
    understanding = [json.loads(line) for line in (folder / "understanding.jsonl").read_text().splitlines()]
    generation = [json.loads(line) for line in (folder / "generation.jsonl").read_text().splitlines()]
    assert understanding and generation
    shard_images = {}
    for sample in out.samples():
        shard_images[sample["__key__"]] = sample["jpg"]
    for item in understanding:
        assert records[item["key"]]["split"] == "test"
        assert records[item["key"]]["metadata"][item["answer_field"]] == item["answer"]
        assert (folder / item["image"]).read_bytes() == shard_images[item["key"]]
    assert {item["key"] for item in generation} == {k for k, r in records.items() if r["split"] == "test"}


def test_a_planted_leak_is_named_with_both_images(pipeline_run):
    folder = pipeline_run.path / "eval"
    (leak,) = [json.loads(line) for line in (folder / "leaks.json").read_text().splitlines()]
    assert (Path(leak["eval_source"]).name, Path(leak["train_source"]).name) == ("held.jpg", "reused.jpg")
    assert (leak["kind"], leak["evidence"], leak["train_split"]) == ("near", "phash", "train")
    assert json.loads((folder / "eval_set.json").read_text())["leak_check"]["leaks"] == 1


def test_external_eval_items_found_in_the_pool_are_reported_with_the_split_they_would_have_joined(pipeline_run):
    out = pipeline_run
    by_name = out.ledger_by_name()
    assert by_name["in-doc2.jpg"]["reason"] == by_name["alone.jpg"]["reason"] == "eval_contamination"
    audit = json.loads((out.path / "eval" / "contamination.json").read_text())
    assert audit["eval_items_found"] == 2
    found = {Path(item["eval_source"]).name: item["found"][0] for item in audit["items"]}
    doc2_split = {r["split"] for r in _records(out).values() if r["metadata"]["doc_id"] == "DOC-2"}
    assert {found["bench-in-doc2.jpg"]["would_be_split"]} == doc2_split
    assert found["bench-alone.jpg"]["would_be_split"] in ("train", "validation", "test")
    assert sum(audit["by_split"].values()) == 2
