"""Write the ``edit`` view: two images and an instruction, from configured pair rules.

Input element type: split ``Sample``s. Output: ``ShardStats``. Each ``views.edit.rules`` entry pairs samples that
agree on the ``match`` fields and differ in the ``differ`` field: a defect-free template and its defective board,
one product in two colours. Pairs form only within one split (the group key includes the split), so an edit pair
never joins a training image to a held-out one. Each group yields at most ``max_pairs_per_group`` pairs, chosen by
the hash of the pair key; ``views.edit.share`` keeps a stable share of them. A pair whose instruction names a field
one of its images lacks is skipped. Edit samples are derived, not input items: the item ledger keeps one row per
item and the edit view reports its counts in its shard statistics.

Layout: ``OUT/shards/edit/<split>/shard-NNNNNN.tar`` with ``KEY.source.jpg``, ``KEY.target.jpg``, ``KEY.txt``
(the instruction) and ``KEY.json`` (``EditRecord``); Parquet sidecar, ``_stats.json`` and ``index.json`` written
by ``transforms/shard_writer.py`` as for every view. ``KEY`` is the SHA-256 of the rule name and both image keys.
Config sections: ``views`` (``edit``), ``shards``. Metrics: ``write_edits/pairs``.
"""

import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
import pyarrow as pa

from schemas.config.shards import ShardsConfig
from schemas.config.views import EditRule, EditViewConfig
from schemas.documents import EditImage, EditRecord
from schemas.records.samples import Sample
from schemas.records.values import blank, content_metadata
from schemas.shard import ShardStats
from transforms.image_store import image_sha256, read_image
from transforms.shard_writer import (
    ShardItem,
    canonical_json,
    sampled,
    shard_dir,
    shard_name,
    slot_of,
    split_totals,
    write_indexes,
    write_shard,
)
from transforms.text import clean_text

STAGE = "write_edits"
VIEW = "edit"
_PLACEHOLDER = re.compile(r"\{(source|target)\.([A-Za-z0-9_]+)\}")


class EditPair(NamedTuple):
    key: str
    rule: str
    split: str
    instruction: str
    source: Sample
    target: Sample

    @property
    def image_bytes(self) -> int:
        return self.source.normalised.bytes + self.target.normalised.bytes


class WriteEditPairs(beam.PTransform):
    """Pair samples by the configured rules and write the pairs into deterministic ``edit`` shards."""

    def __init__(self, view: EditViewConfig, shards: ShardsConfig, output: str, generation: int = 0):
        super().__init__()
        self._view = view
        self._shards = shards
        self._output = output
        self._generation = generation

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        if not self._view.enabled or not self._view.rules:
            return samples.pipeline | "NoEdits" >> beam.Create([])
        view = self._view
        pairs = (
            samples
            | "RuleGroups" >> beam.FlatMap(rule_groups, rules=view.rules)
            | "GroupCandidates" >> beam.GroupByKey()
            | "Pair" >> beam.FlatMap(_pairs_of_group, rules={rule.name: rule for rule in view.rules}, share=view.share)
        )
        totals = split_totals(pairs, lambda pair: (pair.split, pair.image_bytes))
        stats = (
            pairs
            | "Assign" >> beam.Map(_assign, totals=totals, config=self._shards, share=view.share)
            | "GroupShard" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(_WriteEditsFn(self._output, self._generation))
        )
        _ = write_indexes(stats, self._output, VIEW)
        return stats


def _value(sample: Sample, field: str) -> str:
    value = sample.metadata.get(field)
    return "" if blank(value) else clean_text(value)


def rule_groups(sample: Sample, rules: list[EditRule]) -> Iterator[tuple[str, Sample]]:
    """The candidate groups of a sample: one per rule it can take part in, keyed by rule, split and match values."""
    for rule in rules:
        if rule.domain is not None and rule.domain != sample.domain:
            continue
        values = [_value(sample, field) for field in rule.match]
        if all(values) and _value(sample, rule.differ):
            yield json.dumps([rule.name, sample.split, *values]), sample


def instruction(template: str, source: Sample, target: Sample) -> str | None:
    """Fill ``{source.FIELD}``/``{target.FIELD}``; ``None`` when an image lacks a named field."""
    missing = False

    def fill(match: re.Match) -> str:
        nonlocal missing
        value = _value(source if match.group(1) == "source" else target, match.group(2))
        missing = missing or not value
        return value

    text = _PLACEHOLDER.sub(fill, template)
    return None if missing else text


def pair_key(rule: str, source: str, target: str) -> str:
    return hashlib.sha256(f"edit:{rule}:{source}:{target}".encode()).hexdigest()[:32]


def make_pairs(rule: EditRule, members: Iterable[Sample]) -> list[EditPair]:
    """Every ordered (source, target) pair of one group allowed by ``rule``, at most ``max_pairs_per_group``."""
    members = sorted(members, key=lambda s: s.key)
    sources = [s for s in members if not rule.source_values or _value(s, rule.differ) in rule.source_values]
    targets = [s for s in members if not rule.target_values or _value(s, rule.differ) in rule.target_values]
    pairs = []
    for source in sources:
        for target in targets:
            if source.key == target.key or _value(source, rule.differ) == _value(target, rule.differ):
                continue
            text = instruction(rule.instruction, source, target)
            if text:
                key = pair_key(rule.name, source.key, target.key)
                pairs.append(EditPair(key, rule.name, source.split, text, source, target))
    return sorted(pairs, key=lambda pair: pair.key)[: rule.max_pairs_per_group]


def _pairs_of_group(element: tuple[str, Iterable[Sample]], rules: dict[str, EditRule], share: float) -> Iterator:
    group, members = element
    rule = rules[json.loads(group)[0]]
    yield from (pair for pair in make_pairs(rule, members) if sampled(pair.key, share))


def _assign(pair: EditPair, totals: dict, config: ShardsConfig, share: float) -> tuple[tuple[str, int], EditPair]:
    return slot_of(pair.split, pair.key, totals, config, share), pair


def _edit_image(sample: Sample, member: str) -> EditImage:
    return EditImage(
        member=member,
        key=sample.key,
        source=sample.source,
        caption=sample.text,
        image_sha256=image_sha256(sample),
        image=sample.normalised,
        metadata=content_metadata(sample.metadata),
    )


def edit_record(pair: EditPair) -> EditRecord:
    """The ``KEY.json`` of an edit pair."""
    return EditRecord(
        key=pair.key,
        rule=pair.rule,
        domain=pair.source.domain,
        split=pair.split,
        instruction=pair.instruction,
        source=_edit_image(pair.source, f"source.{pair.source.image_ext}"),
        target=_edit_image(pair.target, f"target.{pair.target.image_ext}"),
    )


SIDECAR_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("rule", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
        ("instruction", pa.string()),
        ("source_key", pa.string()),
        ("target_key", pa.string()),
        ("source_source", pa.string()),
        ("target_source", pa.string()),
    ]
)


def sidecar_row(pair: EditPair) -> dict[str, Any]:
    return {
        "key": pair.key,
        "rule": pair.rule,
        "domain": pair.source.domain,
        "split": pair.split,
        "instruction": pair.instruction,
        "source_key": pair.source.key,
        "target_key": pair.target.key,
        "source_source": pair.source.source,
        "target_source": pair.target.source,
    }


def pair_item(pair: EditPair) -> ShardItem:
    """What a pair writes: ``KEY.json``, ``KEY.source.<ext>``, ``KEY.target.<ext>``, ``KEY.txt``, its sidecar row."""
    record = edit_record(pair)
    members = [
        (f"{pair.key}.json", canonical_json(record.model_dump(mode="json"))),
        (f"{pair.key}.{record.source.member}", read_image(pair.source)),
        (f"{pair.key}.{record.target.member}", read_image(pair.target)),
        (f"{pair.key}.txt", pair.instruction.encode("utf-8")),
    ]
    return ShardItem(pair.key, pair.source.domain, pair.image_bytes, members, sidecar_row(pair))


class _WriteEditsFn(beam.DoFn):
    def __init__(self, output: str, generation: int):
        self._output = output
        self._generation = generation
        self._pairs = beam.metrics.Metrics.counter(STAGE, "pairs")

    def process(self, element: tuple[tuple[str, int], Iterable[EditPair]]) -> Iterator[ShardStats]:
        (split, slot), members = element
        pairs = sorted(members, key=lambda pair: pair.key)
        if not pairs:
            return
        folder = shard_dir(self._output, VIEW, split)
        stats = write_shard(folder, shard_name(slot, self._generation), VIEW, split, pairs, pair_item, SIDECAR_SCHEMA)
        self._pairs.inc(len(pairs))
        yield stats
