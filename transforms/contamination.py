"""Contamination audit: which external eval items (``decontaminate.exclude``) were in the input pool, and where.

Input element type: ``Contaminated`` (decontamination's ``found`` output: each removed sample with the eval item
it copies), with the ``(token node, split)`` output of ``AssignSplits``. Nothing is dropped and no ledger row is
written. Output file: ``OUT/eval/contamination.json``, each eval item found with its matches and the split each
would have joined (``would_be_split``). Config sections: ``decontaminate`` (active when ``exclude`` lists items)
and ``split``.
"""

import json
from collections import Counter
from collections.abc import Iterable, Iterator

import apache_beam as beam

from schemas.config.decontaminate import DecontaminateConfig
from schemas.config.split import SplitConfig
from schemas.splits import EVAL_SCHEMA_VERSION
from transforms._io import join, write_atomic
from transforms._split_rules import group_tokens, would_be_split
from transforms.decontaminate import Contaminated
from transforms.eval_set import FOLDER

STAGE = "contamination"


class AuditContamination(beam.PTransform):
    """Write ``eval/contamination.json``: the external eval items (``decontaminate.exclude``) found in the input
    pool, each match with the split it would have gone to had decontamination not removed it.

    Applied to decontamination's ``found`` records (``Contaminated``: the sample, its metadata and the eval item it
    copies); ``tokens`` is the ``(token node, split)`` output of ``AssignSplits``. A match shares the split of a group
    it shares a token with (a product or document that did reach the shards), else the hashed split of its own group:
    so the report says whether a public benchmark image sat in what would have been train, validation or test.
    """

    def __init__(self, config: DecontaminateConfig, split: SplitConfig, output: str, tokens: beam.PCollection):
        super().__init__()
        self._active = bool(config.exclude)
        self._split = split
        self._output = output
        self._tokens = tokens

    def expand(self, contaminated: beam.PCollection) -> beam.PCollection:
        split = self._split
        if not self._active:
            return contaminated.pipeline | "NoAudit" >> beam.Create([])
        found = contaminated | "Found" >> beam.Map(_found, split=split)
        hits = (
            {
                "found": found | "ByToken" >> beam.FlatMap(lambda f: [(token, f["source"]) for token in f["tokens"]]),
                "split": self._tokens,
            }
            | "JoinTokens" >> beam.CoGroupByKey()
            | "Hits" >> beam.FlatMapTuple(lambda _, j: [(source, s) for s in j["split"] for source in j["found"]])
        )
        return (
            {"found": found | "FoundBySource" >> beam.Map(lambda f: (f["source"], f)), "hit": hits}
            | "JoinHits" >> beam.CoGroupByKey()
            | "WouldBe" >> beam.FlatMap(_would_be, split=split)
            | "AllFound" >> beam.combiners.ToList()
            | "WriteAudit" >> beam.Map(_write_audit, output=self._output)
        )


def _found(item: Contaminated, split: SplitConfig) -> dict:
    return {
        "source": item.source,
        "key": item.key or "",
        "eval_source": item.match.eval_source,
        "eval_key": item.match.eval_key,
        "match": item.match.match,
        "distance": item.match.distance,
        "tokens": sorted(group_tokens(item.metadata, split.group_by)),
    }


def _would_be(element: tuple[str, dict], split: SplitConfig) -> Iterator[dict]:
    _, joined = element
    hits = list(joined["hit"])
    for found in joined["found"]:
        match = {k: v for k, v in found.items() if k != "tokens"}
        yield {**match, "would_be_split": would_be_split(found["key"], found["tokens"], hits, split)}


def audit_summary(found: Iterable[dict]) -> dict:
    """Matches grouped by eval item, with counts by the split each match would have gone to."""
    items: dict[tuple[str, str], list[dict]] = {}
    for match in sorted(found, key=lambda m: (m["eval_source"], m["source"])):
        items.setdefault((match["eval_source"], match["eval_key"]), []).append(
            {k: v for k, v in match.items() if k not in ("eval_source", "eval_key")}
        )
    by_split = Counter(m["would_be_split"] for matches in items.values() for m in matches)
    return {
        "schema_version": EVAL_SCHEMA_VERSION,
        "eval_items_found": len(items),
        "matches": sum(by_split.values()),
        "by_split": dict(sorted(by_split.items())),
        "items": [
            {
                "eval_source": source,
                "eval_key": key,
                "found": matches,
                "by_split": dict(sorted(Counter(m["would_be_split"] for m in matches).items())),
            }  # fmt: skip
            for (source, key), matches in items.items()
        ],
    }


def _write_audit(found: list[dict], output: str) -> dict:
    summary = audit_summary(found)
    path = join(output, FOLDER, "contamination.json")
    write_atomic(path, json.dumps(summary, indent=2, sort_keys=True).encode() + b"\n")
    return summary
