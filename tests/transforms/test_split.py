"""Split: no group straddles two splits, assignments survive added inputs, stratum minimums are met or reported."""

import json
import logging
import math
import random
import tarfile
from collections import Counter, defaultdict, deque
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from schemas.config.split import SplitConfig
from schemas.records.samples import ImageInfo, Sample
from tests.helpers import jpeg_bytes, make_photo, run_job, write_sidecar
from transforms._components import components
from transforms._split_rules import key_node, plan_splits, unit_of
from transforms.changed_content import ChangedContent
from transforms.split import AssignSplits

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
def datasets(draw, most: int = 60, pins: bool = False):
    """Random samples with overlapping documents, SKUs, line+date keys and labels, plus duplicate chains; with
    ``pins``, some samples name the split they must go to (the ``split`` metadata field)."""
    n = draw(st.integers(1, most))
    samples = []
    for index in range(n):
        metadata = {}
        for field, choices in (("doc_id", 12), ("sku", 8), ("line", 3), ("date", 3)):
            if draw(st.booleans()):
                metadata[field] = f"{field}-{draw(st.integers(0, choices))}"
        if draw(st.integers(0, 3)) == 0:
            metadata["label"] = draw(st.sampled_from(["scratch", "dent", "none"]))
        if pins and draw(st.integers(0, 2)) == 0:
            metadata["split"] = draw(st.sampled_from(["train", "validation", "test"]))
        samples.append((_key(index), draw(st.sampled_from(["factory", "marketing"])), metadata))
    links = []
    for _ in range(draw(st.integers(0, 3))):  # duplicate chains: k0 ~ k1 ~ k2 ...
        chain = draw(st.lists(st.integers(0, n - 1), min_size=2, max_size=6))
        links += [(_key(a), _key(b)) for a, b in zip(chain, chain[1:], strict=False)]
    return samples, links


def bfs_labels(edges) -> dict[str, str]:
    """Every node of a non-loop edge, labelled by the smallest node of its component: breadth-first search over an
    adjacency dict, sharing nothing with ``transforms._components``."""
    around = defaultdict(set)
    for a, b in edges:
        if a != b:
            around[a].add(b)
            around[b].add(a)
    labels: dict[str, str] = {}
    for start in around:
        if start in labels:
            continue
        seen, queue = {start}, deque([start])
        while queue:
            for neighbour in around[queue.popleft()] - seen:
                seen.add(neighbour)
                queue.append(neighbour)
        labels.update(dict.fromkeys(seen, min(seen)))
    return labels


def oracle_groups(samples, links, config):
    """Groups by breadth-first search over the same relations, independent of the code under test."""
    edges = [(_key_node(key), f"{spec}={[m.get(f) for f in spec.split('+')]}")
             for key, _, m in samples for spec in config.group_by
             if all(m.get(f) for f in spec.split("+"))]  # fmt: skip
    edges += [(_key_node(a), _key_node(b)) for a, b in links]
    labels = bfs_labels(edges)
    return {key: labels.get(_key_node(key), _key_node(key)) for key, _, _ in samples}


def _key_node(key: str) -> str:
    return "k" + key


def _stratum(domain: str, metadata: dict) -> str:
    """The documented stratum for ``stratify_by = ["label"]``: the domain, plus the label when there is one."""
    return f"{domain}/label={metadata['label']}" if metadata.get("label") else domain


PRECEDENCE = ["test", "validation", "train"]  # held-out splits by name, then train: who wins a pin conflict


@FAST
@given(
    edges=st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=80).map(
        lambda pairs: [(f"n{a:02d}", f"n{b:02d}") for a, b in pairs]
    ),
    rounds=st.integers(0, 4),
)
def test_components_equal_breadth_first_search_whatever_the_round_count(edges, rounds):
    labels, _ = components(edges, rounds)
    assert labels == bfs_labels(edges)


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


def _pinned_stratum() -> list:
    """Five groups of one stratum: four pinned to test, one to train."""
    return [(_key(i), "factory", {"doc_id": f"d{i}", "split": "test" if i < 4 else "train"}) for i in range(5)]


@FAST
@given(data=datasets(most=80, pins=True), min_groups=st.integers(0, 3))
@example(data=(_pinned_stratum(), []), min_groups=1)
def test_stratum_minimums_are_met_or_the_stratum_is_named(data, min_groups):
    samples, links = data
    config = SPLIT.model_copy(update={"min_groups": min_groups})
    split_of, decisions = plan_splits(samples, links, config)
    groups = oracle_groups(samples, links, config)
    strata = {key: _stratum(domain, metadata) for key, domain, metadata in samples}
    sizes = Counter(strata.values())
    primary: dict = {}  # a group's stratum: the rarest of its members'
    pins: dict = defaultdict(set)
    for key, _, metadata in samples:
        group = groups[key]
        primary[group] = min(primary.get(group, strata[key]), strata[key], key=lambda s: (sizes[s], s))
        if metadata.get("split"):
            pins[group].add(metadata["split"])
    group_split = {group: split_of[key] for key, group in groups.items()}
    for group, pinned in pins.items():
        assert group_split[group] == min(pinned, key=PRECEDENCE.index)
    counts = Counter((primary[group], split) for group, split in group_split.items())
    total = Counter(primary.values())
    free_train = Counter(primary[g] for g, split in group_split.items() if split == "train" and g not in pins)
    assert set(decisions) == set(total)
    need = 2 * min_groups  # validation and test each get min_groups
    for stratum, decision in decisions.items():
        assert {s: n for s, n in decision.by_split if n} == {s: n for (t, s), n in counts.items() if t == stratum}
        assert decision.groups == total[stratum]
        short = [s for s in ("validation", "test") if counts[(stratum, s)] < min_groups]
        if need and (need > 0.5 * total[stratum] or total[stratum] - need < 1):
            assert decision.status == "too_small"
        elif short:
            # Only unpinned train groups move, so the minimum is unmet only when none is left to move.
            assert (decision.status, free_train[stratum]) == ("unmet", 0)
        else:
            assert decision.status == "ok"


def test_a_stratum_whose_train_groups_are_all_pinned_reports_its_minimum_unmet():
    # Holding out 2 of 5 groups is allowed (not too small); validation gets none, and no train group may move.
    split_of, decisions = plan_splits(_pinned_stratum(), [], SPLIT)
    assert sorted(split_of.values()) == ["test", "test", "test", "test", "train"]
    assert (decisions["factory"].status, decisions["factory"].groups) == ("unmet", 5)


@pytest.mark.parametrize("salt", ["unishard-split-v1", "another salt"])
def test_hashing_gives_each_split_its_fraction_of_groups(salt):
    samples = [(_key(index), "factory", {"doc_id": f"doc-{index}"}) for index in range(3000)]
    config = SPLIT.model_copy(update={"min_groups": 0, "group_by": ["doc_id"], "salt": salt})
    split_of, _ = plan_splits(samples, [], config)
    counts = Counter(split_of.values())
    for name, fraction in config.fractions.items():
        sigma = math.sqrt(fraction * (1 - fraction) / len(samples))
        assert abs(counts[name] / len(samples) - fraction) < 4.5 * sigma, (name, counts)


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
    # Incremental: shipped samples pin their groups, so a new sample joining one goes where the group shipped;
    # where new samples bridge groups that shipped to different splits, a shipped sample would have to leave its
    # shard, so the plan stops (the launcher rebuilds).
    shipped_split, _ = plan_splits(old, first[1], SPLIT)
    shipped = [(key, domain, metadata, shipped_split[key]) for key, domain, metadata in old]
    joined_links = [(new[i][0], old[i % len(old)][0]) for i in range(0, len(new), 3)]
    groups = oracle_groups(old + new, joined_links + first[1], SPLIT)
    shipped_in = defaultdict(set)
    for key, _, _ in old:
        shipped_in[groups[key]].add(shipped_split[key])
    if any(len(splits) > 1 for splits in shipped_in.values()):
        with pytest.raises(ChangedContent, match="^split group .* changed content"):
            plan_splits(new, joined_links + first[1], SPLIT, shipped=shipped)
        return
    later, _ = plan_splits(new, joined_links + first[1], SPLIT, shipped=shipped)
    assert set(later) == {key for key, _, _ in new}
    for key, _, _ in new:
        if shipped_in[groups[key]]:
            assert {later[key]} == shipped_in[groups[key]]


@FAST
@given(first=datasets(most=40), second=datasets(most=40), same_settings=st.booleans())
def test_a_rebuild_keeps_held_out_samples_out_of_train_whatever_new_data_merges(first, second, same_settings):
    """A rebuild pins every sample of the output it replaces to the split it shipped in (when the split settings
    are the same): a group of several goes to the first held-out split among them, so no held-out sample moves into
    train, and groups stay whole."""
    old, old_links = first
    new = [(_key(1000 + int(key, 16)), domain, metadata) for key, domain, metadata in second[0]]
    links = old_links + [(new[i][0], old[i % len(old)][0]) for i in range(0, len(new), 2)]
    before, _ = plan_splits(old, old_links, SPLIT)
    earlier = [(key, split, same_settings) for key, split in before.items()]
    after, _ = plan_splits(old + new, links, SPLIT, earlier=earlier)
    groups = oracle_groups(old + new, links, SPLIT)
    held = defaultdict(set)
    for key, split in before.items():
        held[groups[key]].add(split)
    assert all(len({after[k] for k, g in groups.items() if g == group}) == 1 for group in set(groups.values()))
    if same_settings:
        for key, split in before.items():
            assert after[key] == min(held[groups[key]], key=PRECEDENCE.index)
            assert split == "train" or after[key] != "train"


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
    return Sample(key, f"src-{key}", "", domain, metadata, b"img", "jpg", key, key, info, info, document_id=document)


SAMPLES = 600  # enough groups (about 280) for the split fractions to be checked


@pytest.fixture(scope="module")
def beam_run(tmp_path_factory):
    """One DirectRunner run of AssignSplits on a random data set with links, shipped samples and pins."""
    rng = random.Random(5)
    samples = []
    for index in range(SAMPLES):
        metadata = {"doc_id": f"d{rng.randrange(50)}"} if rng.random() < 0.6 else {}
        if rng.random() < 0.5:
            metadata["label"] = rng.choice(["none", "none", "scratch", "dent"])
        if index % 25 == 0:
            metadata["split"] = "test"
        document = "page-1" if index in (3, 33) else ""  # one interleaved document from the documents stage
        samples.append((_key(index), rng.choice(["factory", "marketing"]), metadata, document))
    links = [(_key(rng.randrange(SAMPLES)), _key(rng.randrange(SAMPLES))) for _ in range(10)]
    links += [(_key(i), _key(i + 1)) for i in range(40, 55)]  # a long chain: one round leaves a residue to finish
    shipped = [  # in test, which no pin outranks: an incremental run never has to move them
        (_key(SAMPLES + i), "factory", {"doc_id": f"d{i}", "label": "dent"}, "test", "") for i in range(3)
    ]
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
    # The Beam graph and its in-memory mirror agree; the properties below are checked on Beam's own output.
    assert_that(result.assignments, equal_to(sorted(expected.items())), label="AssignmentsMatchPlan")
    assert_that(
        result.samples | beam.Map(lambda s: (s.key, s.split)), equal_to(sorted(expected.items())), label="Samples"
    )
    saved = Path(output) / "assignments.json"
    _ = (
        result.assignments
        | "ListAssignments" >> beam.combiners.ToList()
        | "SaveAssignments" >> beam.Map(lambda rows: saved.write_text(json.dumps(sorted(rows))))
    )
    outcome = pipeline.run()
    outcome.wait_until_finish()
    residual = outcome.metrics().query(MetricsFilter().with_name("residual_edges"))["counters"]
    assert residual and residual[0].committed > 0
    report = json.loads((Path(output) / "splits" / "splits.json").read_text())
    assigned = [tuple(row) for row in json.loads(saved.read_text())]
    return samples, expected, decisions, report, (assigned, links, shipped)


def test_beam_assignment_keeps_groups_whole_honours_pins_and_fractions(beam_run):
    samples, _, _, _, (assigned, links, shipped) = beam_run
    assert sorted(key for key, _ in assigned) == sorted(key for key, *_ in samples)  # every sample exactly once
    split_of = dict(assigned)
    assert set(split_of.values()) == {"train", "validation", "test"}
    # Groups by breadth-first search: documents, doc_id values (of this run and of shipped samples) and links.
    edges = [(f"k:{key}", f"doc_id:{m['doc_id']}") for key, _, m, _ in samples if m.get("doc_id")]
    edges += [(f"k:{key}", f"document:{document}") for key, _, _, document in samples if document]
    edges += [(f"k:{key}", f"doc_id:{m['doc_id']}") for key, _, m, _, _ in shipped]
    edges += [(f"k:{a}", f"k:{b}") for a, b in links]
    labels = bfs_labels(edges)
    group_of = {key: labels.get(f"k:{key}", f"k:{key}") for key, *_ in samples}
    pins = defaultdict(set)
    for key, _, metadata, _ in samples:
        if metadata.get("split"):
            pins[group_of[key]].add(metadata["split"])
    for key, _, _, split, _ in shipped:
        if f"k:{key}" in labels:
            pins[labels[f"k:{key}"]].add(split)
    splits_of_group = defaultdict(set)
    for key, group in group_of.items():
        splits_of_group[group].add(split_of[key])
    assert all(len(splits) == 1 for splits in splits_of_group.values())  # no group straddles two splits
    assert {split_of[_key(3)], split_of[_key(33)]} == {split_of[_key(3)]}  # one interleaved document
    assert len({split_of[_key(index)] for index in range(40, 56)}) == 1  # the long duplicate chain
    assert pins, "the data set has pinned groups"
    for group, pinned in pins.items():
        if group in splits_of_group:
            assert splits_of_group[group] == {min(pinned, key=PRECEDENCE.index)}, group
    # Train's share of the unpinned groups: hashing gives 0.7 (within 4 sigma); top-ups only move groups out of
    # train, at most min_groups per held-out split and stratum.
    free = [next(iter(splits)) for group, splits in splits_of_group.items() if group not in pins]
    strata = {_stratum(domain, metadata) for _, domain, metadata, _ in samples}
    moved_at_most = SPLIT.min_groups * 2 * len(strata)
    slack = 4 * math.sqrt(0.7 * 0.3 * len(free))
    assert 0.7 * len(free) - slack - moved_at_most <= free.count("train") <= 0.7 * len(free) + slack


def test_report_gives_fractions_per_stratum_and_names_small_strata(beam_run):
    samples, expected, decisions, report, _ = beam_run
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


def test_the_largest_groups_of_splits_json_name_the_split_a_stratum_s_top_up_moved_them_to():
    """``largest_groups`` showed a group's split before the top-up, not where its samples went."""
    from transforms._split_rules import SplitGroup, StratumDecision, build_report

    config = SplitConfig(fractions={"train": 0.8, "validation": 0.1, "test": 0.1})
    groups = [SplitGroup(f"1:{n}", 3 - n, (("all", 1),), (), "all", n / 10, "train", False) for n in range(3)]
    decision = StratumDecision("all", 3, (("test", 1), ("train", 2)), (("1:1", "test"),), "ok")
    counts = [(("all", "train"), 5), (("all", "test"), 2)]
    report = build_report([decision], counts, groups, [], 0, config)
    assert [(g["anchor"], g["split"]) for g in report.largest_groups] == [
        ("1:0", "train"),
        ("1:1", "test"),
        ("1:2", "train"),
    ]


def test_samples_pinned_to_two_splits_in_one_group_are_named_in_a_warning(tmp_path, caplog):
    """A document with one image pinned to train and one to validation went whole to validation; only
    splits/splits.json counted it (pin_conflicts), and the train-pinned image's JSON still said split train."""
    images = tmp_path / "in"
    images.mkdir()
    for name, seed, pin in (("front", 200, "train"), ("back", 201, "validation"), ("other", 202, "")):
        make_photo(96, 80, seed=seed).save(images / f"{name}.jpg", quality=90)
        pinned = {"split": pin} if pin else {}
        write_sidecar(images / f"{name}.jpg", title=f"{name} of the box", doc_id=f"DOC-{name == 'other'}", **pinned)

    with caplog.at_level(logging.WARNING, logger="unishard"):
        out = run_job([images], tmp_path / "out", split={"fractions": {"train": 0.5, "validation": 0.5}})

    report = json.loads((out.path / "splits" / "splits.json").read_text())
    assert report["pin_conflicts"] == 1
    (example,) = report["pin_conflict_examples"]
    warning = "1 split group(s) hold samples pinned to different splits"
    assert any(warning in record.getMessage() and example["split"] in record.getMessage() for record in caplog.records)


# Reruns: fractions 0.6 / 0.2 / 0.2 put a group hashed below 0.2 in test, from 0.4 in train. No minimum top-ups, so
# only hashing and pins decide. SKU-0 hashes to train, SKU-1 to train, SKU-2 to test, SKU-3 and SKU-4 to train.
RERUN_SECTIONS = {
    "split": {"fractions": {"train": 0.6, "validation": 0.2, "test": 0.2}, "group_by": ["doc_id", "sku"],
              "min_groups": 0},
    "near_dedup": {"report_only": True},
    "quality": {"report_only": True},  # a shrunk copy loses the grain that measures as sharp
    "faces": {"enabled": False},
    "audit": {"enabled": False},
}  # fmt: skip


def _product_photo(folder: Path, name: str, seed: int, sku: str) -> None:
    make_photo(256, 192, seed=seed).save(folder / name, quality=90)
    write_sidecar(folder / name, title=f"product {sku} shot {name}", sku=sku)


def _near_copy(folder: Path, original: str, name: str, sku: str) -> None:
    """The original shrunk to 80% and saved again as JPEG at quality 80: near dedup links it to the original."""
    with Image.open(folder / original) as image:
        image.convert("RGB").resize((204, 153)).save(folder / name, quality=80)
    write_sidecar(folder / name, title=f"another shot of {sku}", sku=sku)


def _books(out) -> dict:
    """What a run holds, read without the code under test: each pairs sample's split from its shard's folder (tarfile),
    each kept ledger row's split (pyarrow), the sample totals of splits/splits.json and the eval set's keys."""
    shards, skus, keys = {}, {}, {}
    for path in sorted((out.path / "shards" / "pairs").glob("*/*.tar")):
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                if member.name.endswith(".json"):
                    record = json.loads(tar.extractfile(member).read())
                    name = Path(record["source"]).name
                    assert name not in shards, f"{name} is in two shards"
                    shards[name], skus[name], keys[record["key"]] = path.parent.name, record["metadata"]["sku"], name
    ledger = {Path(row["source"]).name: row["split"]
              for row in pq.read_table(out.path / "ledger").to_pylist() if row["status"] == "kept"}  # fmt: skip
    report = json.loads((out.path / "splits" / "splits.json").read_text())
    generation = (out.path / "eval" / "generation.jsonl").read_text().splitlines()
    return {
        "shards": shards,
        "skus": skus,
        "ledger": ledger,
        "totals": {name: split["samples"] for name, split in report["totals"].items() if split["samples"]},
        "report": report,
        "eval": {keys[json.loads(line)["key"]] for line in generation},
    }


def _assert_leak_free(books: dict, before: dict) -> None:
    """No SKU in two splits, shards and ledger agree, splits.json counts the shards, the eval set is test only, and
    no sample held out before went anywhere else."""
    splits_of_sku = defaultdict(set)
    for name, split in books["shards"].items():
        splits_of_sku[books["skus"][name]].add(split)
    assert {sku: splits for sku, splits in splits_of_sku.items() if len(splits) > 1} == {}
    held_out = {name: split for name, split in before["shards"].items() if split != "train"}
    assert {name: books["shards"].get(name) for name in held_out} == held_out
    assert books["ledger"] == books["shards"]
    assert books["totals"] == dict(Counter(books["shards"].values()))
    assert books["eval"] and all(books["shards"][name] == "test" for name in books["eval"])


def test_a_rerun_that_joins_a_shipped_train_group_to_a_shipped_test_group_rebuilds_it_into_test(tmp_path, caplog):
    """A new near copy of a test photo (SKU-2) carrying a train photo's SKU-0 left the train photo in its train shard
    and put the copy in test and the eval set: SKU-0 in both splits, and splits.json counted the train photo in test.
    Now the incremental job stops and the output is rebuilt: the whole group in test, the train photo's move
    reported, and splits.json counting what the shards hold."""
    images = tmp_path / "in"
    images.mkdir()
    _product_photo(images, "a.jpg", 300, "SKU-0")
    _product_photo(images, "b.jpg", 301, "SKU-2")
    _product_photo(images, "c.jpg", 302, "SKU-3")
    first = _books(run_job([images], tmp_path / "out", **RERUN_SECTIONS))
    assert (first["shards"], first["eval"]) == ({"a.jpg": "train", "b.jpg": "test", "c.jpg": "train"}, {"b.jpg"})

    _near_copy(images, "b.jpg", "n.jpg", "SKU-0")
    with caplog.at_level(logging.WARNING, logger="unishard"):
        second = _books(run_job([images], tmp_path / "out", **RERUN_SECTIONS))

    _assert_leak_free(second, first)
    assert second["shards"] == {"a.jpg": "test", "b.jpg": "test", "c.jpg": "train", "n.jpg": "test"}
    assert second["report"]["moved_since_earlier"] == [{"from": "train", "to": "test", "samples": 1}]
    said = [record.getMessage() for record in caplog.records if record.name == "unishard"]
    stop = [message for message in said if message.startswith("split group ")]
    assert len(stop) == 1 and 'sku=["SKU-0"]' in stop[0] and "shipped in train" in stop[0] and "to test" in stop[0]
    assert any("1 sample(s) left the split they shipped in (1 train -> test)" in message for message in said)


@pytest.mark.parametrize("trigger", ["--rebuild", "a shipped file's new content"])
def test_a_rebuild_keeps_every_shipped_test_sample_in_test_when_new_data_changes_its_group_s_anchor(tmp_path, trigger):
    """A near copy of a test photo (SKU-2) with a new SKU-1, which sorts first, made SKU-1 the group's anchor; a
    rebuild (asked for, or after a shipped file's content changed) hashed that anchor into train and moved the test
    photo, an eval item of the earlier run, into train without a word. Now it stays in test, and its group with it."""
    images = tmp_path / "in"
    images.mkdir()
    _product_photo(images, "b.jpg", 301, "SKU-2")
    _product_photo(images, "c.jpg", 302, "SKU-3")
    _product_photo(images, "x.jpg", 303, "SKU-4")
    first = _books(run_job([images], tmp_path / "out", **RERUN_SECTIONS))
    assert (first["shards"], first["eval"]) == ({"b.jpg": "test", "c.jpg": "train", "x.jpg": "train"}, {"b.jpg"})

    _near_copy(images, "b.jpg", "m.jpg", "SKU-1")
    if trigger != "--rebuild":
        _product_photo(images, "x.jpg", 304, "SKU-4")
    second = _books(run_job([images], tmp_path / "out", rebuild=trigger == "--rebuild", **RERUN_SECTIONS))

    _assert_leak_free(second, first)
    assert second["shards"] == {"b.jpg": "test", "c.jpg": "train", "m.jpg": "test", "x.jpg": "train"}
    assert "b.jpg" in second["eval"]
    assert second["report"]["moved_since_earlier"] == []
