"""Mark replaced: name the old key in the ledger row of every source whose content changed since the last commit.

Input: the run's final ledger rows (``LedgerRow``); output: the same rows. When an incremental run stops on changed
content (``transforms/changed_content.py``), the launcher rebuilds the whole output; ``MarkReplaced`` then writes the
old key into the new row's detail (``replaces_key``) of every source whose content changed since the committed
output, whatever its new status, unless that old key is still kept under another source (a file renamed onto
another's name, a document's images renumbered): then nothing was replaced. No config section, no metrics.
"""

import dataclasses
import json
from collections.abc import Iterable, Iterator

import apache_beam as beam

from schemas import reasons
from schemas.records.ledger import LedgerRow, detail_json
from transforms._io import pattern
from transforms.changed_content import kept_source_key


class MarkReplaced(beam.PTransform):
    """Name the old key in the row of every source whose content changed since the committed output ``previous``.

    A rebuild over an existing output replaces the old sample of such a source; its new row's detail says which
    (``replaces_key``), whatever its new status. Without ``previous`` the rows pass unchanged.
    """

    def __init__(self, previous: str | None):
        super().__init__()
        self._previous = previous

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        if self._previous is None:
            return rows
        earlier = (
            rows.pipeline
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(pattern(self._previous, "ledger", "part-*.parquet"))
            | "EarlierByKey" >> beam.Map(lambda row: (row["key"] or "", LedgerRow(**row)))
            | "EarlierKept" >> beam.FlatMap(kept_source_key)
        )
        by_source = rows | "BySource" >> beam.Map(lambda row: (row.source, row))
        gone = (
            {
                "replaced": {"rows": by_source, "earlier": earlier}
                | "JoinEarlier" >> beam.CoGroupByKey()
                | "OldKeys" >> beam.FlatMap(_old_keys),
                "kept": rows | "KeptKeys" >> beam.FlatMap(_kept_key),
            }
            | "JoinKept" >> beam.CoGroupByKey()
            | "NotKeptAnyMore" >> beam.FlatMap(_not_kept)
        )
        return (
            {"rows": by_source, "gone": gone}
            | "JoinGone" >> beam.CoGroupByKey()
            | "Mark" >> beam.FlatMap(_mark_replaced)
        )


def _old_keys(element: tuple[str, dict[str, Iterable]]) -> Iterator[tuple[str, str]]:
    """``(old key, source)`` of each key a source's sample had in the committed output and has no more."""
    source, grouped = element
    now = {row.key for row in grouped["rows"]}
    for key in sorted(set(grouped["earlier"]) - now):
        yield key, source


def _kept_key(row: LedgerRow) -> Iterator[tuple[str, bool]]:
    if row.status == reasons.KEPT and row.key:
        yield row.key, True


def _not_kept(element: tuple[str, dict[str, Iterable]]) -> Iterator[tuple[str, str]]:
    """``(source, old key)`` of an old key no source keeps now: its sample was replaced."""
    key, grouped = element
    if not list(grouped["kept"]):
        for source in grouped["replaced"]:
            yield source, key


def _mark_replaced(element: tuple[str, dict[str, Iterable]]) -> Iterator[LedgerRow]:
    _, grouped = element
    replaced = sorted(grouped["gone"])
    for row in grouped["rows"]:
        if replaced:
            detail = {**json.loads(row.detail), "replaces_key": replaced[0]}
            row = dataclasses.replace(row, detail=detail_json(**detail))
        yield row
