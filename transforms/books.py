"""Check the books: every listed input has exactly one ledger row, and nothing else has one.

Inputs: the sources ingest listed (items read and items ingest rejected, each source counted once), the rows an
incremental run carried from the earlier ledger, and every ledger row of the run. Output file:
``OUT/_run/books.json`` with the counts and up to ``SHOWN`` sources of each kind of problem:

- ``missing``: listed (or carried) but without a ledger row: an item the run lost;
- ``unlisted``: a ledger row for a source nobody listed;
- ``repeated``: a source with more than one ledger row.

It also counts, not as a problem, ``kept_unlisted``: kept samples an incremental run carried whose source this run
did not list (the file was deleted, renamed or moved): their samples stay in the earlier shards, and the launcher
names them, since only a rebuild takes them out; and ``replaced``: sources whose row names the old key their new
content replaced (``replaces_key``, after a rebuild that changed content started), which the launcher lists.

The launcher reads ``books.json`` before committing and refuses to commit when a problem is counted (see
``pipeline.checks.check_books``); it also compares the kept rows with the samples counted in the shards' stats.
The check joins light ``(source, tag)`` pairs only. Config section: none (always on). Metrics: none.
"""

import json
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam

from schemas import reasons
from schemas.records.ledger import LedgerRow
from transforms._io import join, write_atomic

STAGE = "books"
BOOKS = "books.json"
SHOWN = 10
PROBLEMS = ("missing", "unlisted", "repeated")
KEPT_UNLISTED = "kept_unlisted"
REPLACED = "replaced"
NAMED = (*PROBLEMS, KEPT_UNLISTED, REPLACED)
FACTS = ("listed", "carried", "carried_kept", "ledger_rows", "sources_in_ledger", *NAMED)
BOOK_PROBLEMS = {
    "missing": "were listed but have no ledger row (lost)",
    "unlisted": "have a ledger row but were never listed",
    "repeated": "have more than one ledger row",
}
_LISTED, _CARRIED, _LEDGER, _REPLACES = "listed", "carried", "ledger", "replaces"


class CheckBooks(beam.PTransform):
    """Write ``_run/books.json``: listed, carried and ledger counts, and the sources that do not add up.

    Args:
        output: The run's output (staging) folder.
        ingested: Ingest's outputs: the ``items`` it read and the ``rejected`` rows of items it could not (both
            listed inputs; a source listed twice counts once).
        carried: ``LedgerRow`` s an incremental run carried over from the earlier ledger.
    """

    def __init__(self, output: str, ingested: Any, carried: beam.PCollection):
        super().__init__()
        self._output = output
        self._items = ingested.items
        self._rejected = ingested.rejected
        self._carried = carried

    def expand(self, ledger: beam.PCollection) -> beam.PCollection:
        tagged = (
            self._items | "TagItems" >> beam.Map(lambda item: (item.source, _LISTED)),
            self._rejected | "TagRejected" >> beam.Map(lambda row: (row.source, _LISTED)),
            self._carried | "TagCarried" >> beam.Map(_tag_carried),
            ledger | "TagLedger" >> beam.FlatMap(_tag_ledger),
        ) | "AllSources" >> beam.Flatten()
        return (
            tagged
            | "BySource" >> beam.GroupByKey()
            | "Audit" >> beam.FlatMap(audit_source)
            | "Summarise" >> beam.CombineGlobally(_BooksFn())
            | "WriteBooks" >> beam.Map(_write_books, output=self._output)
        )


def _tag_carried(row: LedgerRow) -> tuple[str, str]:
    return row.source, f"{_CARRIED}:{row.status}"


def _tag_ledger(row: LedgerRow) -> Iterator[tuple[str, str]]:
    yield row.source, _LEDGER
    if '"replaces_key"' in row.detail:
        yield row.source, _REPLACES


def audit_source(element: tuple[str, Iterable[str]]) -> Iterator[tuple[str, str]]:
    """``(fact, source)`` pairs for one source's tags: what it counts towards, and its problem if any."""
    source, tags = element
    tags = list(tags)
    expected = any(tag == _LISTED or tag.startswith(_CARRIED) for tag in tags)
    rows = tags.count(_LEDGER)
    if any(tag == _LISTED for tag in tags):
        yield "listed", source
    if any(tag.startswith(_CARRIED) for tag in tags):
        yield "carried", source
    if f"{_CARRIED}:{reasons.KEPT}" in tags:
        yield "carried_kept", source
        if _LISTED not in tags:
            yield KEPT_UNLISTED, source
    if _REPLACES in tags and not any(tag.startswith(_CARRIED) for tag in tags):  # this run's replacement only
        yield REPLACED, source
    if rows:
        yield "sources_in_ledger", source
    for _ in range(rows):
        yield "ledger_rows", source
    if expected and rows == 0:
        yield "missing", source
    elif not expected and rows:
        yield "unlisted", source
    if rows > 1:
        yield "repeated", source


class _BooksFn(beam.CombineFn):
    """Counts per fact, and the ``SHOWN`` smallest sources of each problem (deterministic whatever the order)."""

    def create_accumulator(self) -> tuple[dict, dict]:
        return {}, {}

    def add_input(self, accumulator: tuple[dict, dict], fact: tuple[str, str]) -> tuple[dict, dict]:
        counts, examples = accumulator
        name, source = fact
        counts[name] = counts.get(name, 0) + 1
        if name in NAMED:
            examples[name] = sorted({*examples.get(name, []), source})[:SHOWN]
        return counts, examples

    def merge_accumulators(self, accumulators: Iterable[tuple[dict, dict]]) -> tuple[dict, dict]:
        counts, examples = {}, {}
        for part_counts, part_examples in accumulators:
            for name, count in part_counts.items():
                counts[name] = counts.get(name, 0) + count
            for name, sources in part_examples.items():
                examples[name] = sorted({*examples.get(name, []), *sources})[:SHOWN]
        return counts, examples

    def extract_output(self, accumulator: tuple[dict, dict]) -> dict:
        counts, examples = accumulator
        books = {name: counts.get(name, 0) for name in FACTS}
        books["examples"] = {name: examples.get(name, []) for name in NAMED}
        return books


def _write_books(books: dict, output: str) -> dict:
    write_atomic(join(output, "_run", BOOKS), json.dumps(books, indent=2, sort_keys=True).encode() + b"\n")
    return books
