"""Write the ledger: one Parquet row per input item, and the counts a person and the launcher read first.

Input element type: ``LedgerRow`` from every stage (rejected and failed rows) and from shard writing (kept rows).
Output files: ``OUT/ledger/part-NNNNN.parquet`` (rows spread over parts by a hash of the source, sorted by source
within a part, so the bytes do not depend on the runner; one part without rows when no item was listed) and
``OUT/_run/counts.json`` (items by status, stage, reason and domain). The launcher reads ``counts.json`` to enforce
the failure ratio: counters in Beam metrics are never the only record. A source seen twice is a bug in a stage; the
writer raises instead of hiding it.
"""

import json
from collections import Counter
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa

from schemas.records.ledger import LedgerRow
from transforms._io import join, write_atomic
from transforms._parts import WriteParts

STAGE = "ledger"

LEDGER_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
    ]
)


class WriteLedger(beam.PTransform):
    """Write ledger parts and ``_run/counts.json`` under ``output``."""

    def __init__(self, output: str, rows_per_part: int):
        super().__init__()
        self._output = output
        self._rows_per_part = rows_per_part

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        _ = rows | "Parts" >> WriteParts(
            self._output, "ledger", LEDGER_SCHEMA, _source, _as_row, "ledger", self._rows_per_part, empty_part=True
        )
        return (
            rows
            | "Tally" >> beam.Map(lambda row: (row.status, row.stage, row.reason, row.domain))
            | "CountTally" >> beam.combiners.Count.PerElement()
            | "AllTallies" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.Map(_write_counts, output=self._output)
        )


def _source(row: LedgerRow) -> str:
    return row.source


def _as_row(row: LedgerRow) -> list[dict]:
    return [{name: getattr(row, name) for name in LEDGER_SCHEMA.names}]


def summarise(tallies: Iterable[tuple[tuple[str, str, str, str], int]]) -> dict:
    """Counts by status, by stage and reason, and by domain and status, as written to ``counts.json``."""
    by_status: Counter = Counter()
    by_reason: Counter = Counter()
    by_domain: Counter = Counter()
    for (status, stage, reason, domain), count in tallies:
        by_status[status] += count
        by_reason[f"{status}/{stage}/{reason}" if reason else f"{status}/{stage}"] += count
        by_domain[f"{domain}/{status}"] += count
    return {
        "items": sum(by_status.values()),
        "by_status": dict(sorted(by_status.items())),
        "by_reason": dict(sorted(by_reason.items())),
        "by_domain": dict(sorted(by_domain.items())),
    }


def _write_counts(tallies: list, output: str) -> dict:
    counts = summarise(tallies)
    write_atomic(join(output, "_run", "counts.json"), json.dumps(counts, indent=2, sort_keys=True).encode() + b"\n")
    return counts
