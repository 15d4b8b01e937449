"""Split: assign every kept sample to train, validation or test so that no group of related images straddles two.

Input element type: ``Sample``; optionally ``links``, a PCollection of ``(key_a, key_b)`` pairs the deduplication
stages found (exact, near or semantic duplicates, clusters kept whole in ``report_only`` mode included), and
``shipped``, ``(key, domain, metadata, split, document)`` of the samples an earlier run already wrote
(``ReadShippedSplits`` reads them from its shard sidecars); and ``previous``, the committed output a full run
replaces (``--rebuild``, or the rebuild after an incremental job stopped on changed content): its ledger's kept rows
pin every sample it held to the split it shipped in, when it was split with the same settings
(``earlier_assignments``). Outputs: ``samples`` with ``Sample.split`` set,
``assignments`` (``(key, split)`` of this run's samples) for views built beside the pairs, and ``tokens`` (``(group
token node, split)``, to place samples removed before splitting: ``would_be_split``). No sample is dropped,
so no reason code is emitted. In an incremental run, a group whose shipped samples would change split stops the job
(``ChangedContent``: their shards are never rewritten, so the launcher rebuilds). Config section: ``split``.
Metrics: ``split/<name>`` samples per split, ``split/residual_edges``. Side output: ``splits/splits.json``
(``SplitReport``, with the samples that left the split they shipped in: ``moved_since_earlier``).

How a split is decided (groups, anchors, pins, strata, minimums) is in ``transforms._split_rules``, as pure
functions this module runs in Beam.
"""

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import apache_beam as beam
import pydantic
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.split import SplitConfig
from schemas.documents import DOCUMENT_ANNOTATION
from schemas.records.samples import Sample
from transforms._components import ConnectedComponents
from transforms._io import join, pattern, write_atomic
from transforms._split_rules import (
    EARLIER_IGNORED,
    EARLIER_KEPT,
    EARLIER_NONE,
    TOKEN_PREFIX,
    SplitMember,
    build_report,
    decide_group,
    decide_stratum,
    document_of,
    heldout_order,
    key_node,
    member_of,
    place,
    shipped_member,
    token_edges,
)
from transforms.changed_content import refuse_split_move
from transforms.incremental import EarlierRun

STAGE = "split"
REPORT_PATH = ("splits", "splits.json")


class SplitOutputs(NamedTuple):
    samples: beam.PCollection
    assignments: beam.PCollection
    tokens: beam.PCollection


class AssignSplits(beam.PTransform):
    """Set ``Sample.split`` group by group and write ``splits/splits.json`` under ``output``."""

    def __init__(
        self,
        config: SplitConfig,
        output: str,
        links: beam.PCollection | None = None,
        shipped: beam.PCollection | None = None,
        previous: str | None = None,
    ):
        super().__init__()
        self._config = config
        self._output = output
        self._links = links
        self._shipped = shipped
        self._previous = previous

    def expand(self, samples: beam.PCollection) -> SplitOutputs:
        config = self._config
        if not config.enabled:
            none = samples.pipeline | "NoTokens" >> beam.Create([])
            return SplitOutputs(samples, samples | "KeepAll" >> beam.Map(lambda s: (s.key, s.split)), none)
        empty = samples.pipeline | "NoPairs" >> beam.Create([])
        links = self._links if self._links is not None else empty
        shipped = self._shipped if self._shipped is not None else samples.pipeline | "NoShipped" >> beam.Create([])
        edges = (
            samples | "TokenEdges" >> beam.FlatMap(lambda s: token_edges(s.key, s.metadata, config, document_of(s))),
            shipped
            | "ShippedEdges" >> beam.FlatMapTuple(lambda key, _, meta, __, doc: token_edges(key, meta, config, doc)),
            links | "LinkEdges" >> beam.MapTuple(lambda a, b: (key_node(a), key_node(b))),
        ) | "AllEdges" >> beam.Flatten()
        labels = edges | "Components" >> ConnectedComponents(config.rounds)
        earlier = earlier_assignments(self._previous, config)
        held = samples.pipeline | "NothingHeld" >> beam.Create([])
        if earlier != EARLIER_NONE:
            held = samples | "EarlierSplits" >> _HeldSplits(self._previous, pinned=earlier == EARLIER_KEPT)
        placed = (
            {
                "member": samples
                | "Members" >> beam.Map(lambda s: (key_node(s.key), member_of(s.key, s.domain, s.metadata, config))),
                "label": labels,
                "shipped": shipped
                | "ShippedMembers" >> beam.Map(lambda row: (key_node(row[0]), shipped_member(*row[:4], config))),
                "earlier": held,
            }
            | "JoinLabels" >> beam.CoGroupByKey()
            | "Place" >> beam.FlatMap(place, config=config)
        )
        strata_sizes = (
            placed
            | "Strata" >> beam.MapTuple(lambda anchor, member: member.stratum)
            | "CountStrata" >> beam.combiners.Count.PerElement()
            | "StrataDict" >> beam.combiners.ToDict()
        )
        groups = (
            placed
            | "SummariseGroups" >> beam.CombinePerKey(_SummariseGroupFn())
            | "DecideGroups"
            >> beam.Map(lambda kv, sizes: decide_group(*kv, sizes, config), sizes=pvalue.AsSingleton(strata_sizes))
        )
        decisions = groups | "Minimums" >> _TopUp(config)
        final = (
            {
                "group": groups | "GroupByAnchor" >> beam.Map(lambda g: (g.anchor, g.split)),
                "moved": decisions | "Moved" >> beam.FlatMap(lambda d: d.moved),
            }
            | "JoinMoves" >> beam.CoGroupByKey()
            | "FinalSplit" >> beam.MapTuple(lambda anchor, j: (anchor, (list(j["moved"]) or list(j["group"]))[0]))
        )
        assigned = (
            {"member": placed, "split": final}
            | "JoinSplits" >> beam.CoGroupByKey()
            | "Assign" >> beam.FlatMapTuple(_assign)
        )
        assignments = (
            assigned
            | "New" >> beam.Filter(lambda pair: not pair[0].shipped)
            | "KeySplit" >> beam.Map(lambda pair: (pair[0].key, pair[1]))
        )
        tokens = (
            {
                "node": labels
                | "TokenNodes" >> beam.Filter(lambda pair: pair[0].startswith(TOKEN_PREFIX))
                | "ByAnchor" >> beam.MapTuple(lambda node, anchor: (anchor, node)),
                "split": final,
            }
            | "JoinTokens" >> beam.CoGroupByKey()
            | "TokenSplit" >> beam.FlatMapTuple(lambda _, j: [(n, s) for s in list(j["split"])[:1] for n in j["node"]])
        )
        split_samples = (
            {"sample": samples | "SampleByKey" >> beam.Map(lambda s: (s.key, s)), "split": assignments}
            | "JoinSamples" >> beam.CoGroupByKey()
            | "SetSplit" >> beam.ParDo(_SetSplitFn())
        )
        counts = (
            assigned
            | "StratumSplit" >> beam.Map(lambda pair: (pair[0].stratum, pair[1]))
            | "CountStratumSplit" >> beam.combiners.Count.PerElement()
            | "AllCounts" >> beam.combiners.ToList()
        )
        moved = (
            assigned
            | "LeftEarlierSplit" >> beam.FlatMapTuple(_left_earlier_split)
            | "CountLeft" >> beam.combiners.Count.PerElement()
            | "AllLeft" >> beam.combiners.ToList()
        )
        largest = groups | "Largest" >> beam.combiners.Top.Of(10, key=lambda g: (g.size, g.anchor))
        conflicts = groups | "Conflicts" >> beam.Filter(lambda g: len(g.pins) > 1)
        first_conflicts = conflicts | "FirstConflicts" >> beam.combiners.Top.Smallest(100, key=lambda g: g.anchor)
        conflict_count = conflicts | "CountConflicts" >> beam.combiners.Count.Globally()
        _ = (
            decisions
            | "AllDecisions" >> beam.combiners.ToList()
            | "WriteReport"
            >> beam.Map(
                _write_report,
                counts=pvalue.AsSingleton(counts),
                largest=pvalue.AsSingleton(largest),
                conflicts=pvalue.AsSingleton(first_conflicts),
                conflict_count=pvalue.AsSingleton(conflict_count),
                moved=pvalue.AsSingleton(moved),
                earlier=earlier,
                config=config,
                output=self._output,
            )
        )
        return SplitOutputs(split_samples, assignments, tokens)


class ReadShippedSplits(beam.PTransform):
    """``(key, domain, metadata, split, document)`` of every sample an earlier run wrote, read from its ``pairs``
    sidecars; nothing when there is no earlier run with shards."""

    def __init__(self, earlier: EarlierRun | None):
        super().__init__()
        self._earlier = earlier

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        if self._earlier is None or not self._earlier.has_shards:
            return pbegin | "NoShipped" >> beam.Create([])
        sidecars = pattern(
            self._earlier.output, "shards", "pairs", "*", "shard-*.parquet"
        )  # not a file you dropped there
        return (
            pbegin
            | "ReadSidecars"
            >> beam.io.ReadFromParquet(sidecars, columns=["key", "domain", "metadata", "split", "annotations"])
            | "Shipped" >> beam.Map(shipped_row)
        )


def shipped_row(row: Mapping[str, Any]) -> tuple[str, str, dict, str, str]:
    """``(key, domain, metadata, split, document)`` of one ``pairs`` sidecar row."""
    annotations = json.loads(row["annotations"] or "{}")
    document = str(annotations.get(DOCUMENT_ANNOTATION) or "")
    return row["key"], row["domain"], json.loads(row["metadata"] or "{}"), row["split"], document


def earlier_assignments(previous: str | None, config: SplitConfig) -> str:
    """Whether a full run over the committed output ``previous`` keeps its assignments: ``kept`` when it was split
    with the same settings (its ``_run/config.json``; ``rounds`` aside, which changes how groups are found, not which),
    ``ignored`` when with others (then they say nothing about this split), ``none`` without an output or a split."""
    if previous is None or not config.enabled:
        return EARLIER_NONE
    path = join(previous, "_run", "config.json")
    if not FileSystems.exists(path):
        return EARLIER_IGNORED
    with FileSystems.open(path) as handle:
        section = json.loads(handle.read()).get("split", {})
    try:
        before = SplitConfig.model_validate(section)
    except pydantic.ValidationError:  # a key this version does not know: not the same settings
        return EARLIER_IGNORED
    same = before.model_dump(exclude={"rounds"}) == config.model_dump(exclude={"rounds"})
    return EARLIER_KEPT if same else EARLIER_IGNORED


def held_split(row: Mapping[str, Any]) -> Iterator[tuple[str, str, str]]:
    """``(source, key, split)`` of an earlier ledger row whose sample is in a shard of a split."""
    if row["status"] == reasons.KEPT and row["key"] and row["split"] and row["split"] != "all":
        yield row["source"], row["key"], row["split"]


class _HeldSplits(beam.PTransform):
    """``(key node, (split, pinned))`` of each sample the committed output ``previous`` held in a shard: by its key,
    and by its source for a file whose content changed since (its new sample replaces the old one, and a slightly
    edited test photo must not become a train photo)."""

    def __init__(self, previous: str, pinned: bool):
        super().__init__()
        self._previous = previous
        self._pinned = pinned

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        ledger = pattern(self._previous, "ledger", "part-*.parquet")
        held = (
            samples.pipeline
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(ledger, columns=["source", "key", "status", "split"])
            | "Held" >> beam.FlatMap(held_split)
        )
        replaced = (
            {
                "now": samples | "KeyBySource" >> beam.Map(lambda s: (s.source, s.key)),
                "held": held | "HeldBySource" >> beam.MapTuple(lambda source, key, split: (source, (key, split))),
            }
            | "JoinSources" >> beam.CoGroupByKey()
            | "Replaced" >> beam.FlatMapTuple(_replaced_split)
        )
        pinned = self._pinned
        return (
            (held | "HeldByKey" >> beam.MapTuple(lambda source, key, split: (key, split)), replaced)
            | "AllHeld" >> beam.Flatten()
            | "Pinned" >> beam.MapTuple(lambda key, split: (key_node(key), (split, pinned)))
        )


def _replaced_split(source: str, joined: dict) -> Iterator[tuple[str, str]]:
    held = list(joined["held"])
    for key in joined["now"]:
        yield from ((key, split) for old_key, split in held if old_key != key)


def split_names(config: SplitConfig) -> tuple[str, ...]:
    """The splits samples can end in: the configured ones, or ``all`` when splitting is off."""
    return tuple(config.fractions) if config.enabled else ("all",)


class _SummariseGroupFn(beam.CombineFn):
    """Members of one group -> (size, stratum counts, pin counts); never holds the member list."""

    def create_accumulator(self) -> tuple[int, Counter, Counter]:
        return 0, Counter(), Counter()

    def add_input(self, accumulator: tuple, member: SplitMember) -> tuple:
        size, strata, pins = accumulator
        strata[member.stratum] += 1
        if member.pin:
            pins[member.pin] += 1
        return size + 1, strata, pins

    def merge_accumulators(self, accumulators: Iterable[tuple]) -> tuple:
        size, strata, pins = 0, Counter(), Counter()
        for other_size, other_strata, other_pins in accumulators:
            size += other_size
            strata.update(other_strata)
            pins.update(other_pins)
        return size, strata, pins

    def extract_output(self, accumulator: tuple) -> tuple:
        return accumulator


class _TopUp(beam.PTransform):
    """Per stratum: count groups per split and move the smallest-hash train groups where minimums are short."""

    def __init__(self, config: SplitConfig):
        super().__init__()
        self._config = config

    def expand(self, groups: beam.PCollection) -> beam.PCollection:
        config = self._config
        need = max(1, config.min_groups * len(heldout_order(config)))
        counts = (
            groups
            | "StratumSplit" >> beam.Map(lambda g: ((g.stratum, g.split), 1))
            | "Count" >> beam.CombinePerKey(sum)
            | "ByStratum" >> beam.MapTuple(lambda pair, count: (pair[0], (pair[1], count)))
        )
        candidates = (
            groups
            | "Movable" >> beam.Filter(lambda g: g.split == config.train and not g.pinned)
            | "ByHash" >> beam.Map(lambda g: (g.stratum, (g.unit, g.anchor)))
            | "Smallest" >> beam.combiners.Top.SmallestPerKey(need)
        )
        return (
            {"counts": counts, "candidates": candidates}
            | "Join" >> beam.CoGroupByKey()
            | "Decide"
            >> beam.MapTuple(
                lambda stratum, j: decide_stratum(
                    stratum, dict(j["counts"]), [c for found in j["candidates"] for c in found], config
                )
            )
        )


def _assign(anchor: str, joined: dict) -> Iterator[tuple[SplitMember, str]]:
    split = next(iter(joined["split"]))
    for member in joined["member"]:
        if member.shipped:
            refuse_split_move(anchor, member.was, split)
        yield member, split


def _left_earlier_split(member: SplitMember, split: str) -> Iterator[tuple[str, str]]:
    if member.was and member.was != split and not member.shipped:
        yield member.was, split


class _SetSplitFn(beam.DoFn):
    def __init__(self):
        self._counters: dict[str, Any] = {}

    def process(self, element: tuple[str, dict]) -> Iterator[Sample]:
        _, joined = element
        split = next(iter(joined["split"]))
        if split not in self._counters:
            self._counters[split] = beam.metrics.Metrics.counter(STAGE, split)
        for sample in joined["sample"]:
            self._counters[split].inc()
            yield dataclasses.replace(sample, split=split)


def _write_report(decisions: list, counts, largest, conflicts, conflict_count, moved, earlier, config, output) -> str:
    report = build_report(
        decisions, counts, largest, sorted(conflicts, key=lambda g: g.anchor), conflict_count, config, moved, earlier
    )
    path = join(output, *REPORT_PATH)
    write_atomic(path, json.dumps(report.model_dump(mode="json"), indent=2, sort_keys=True).encode() + b"\n")
    return path
