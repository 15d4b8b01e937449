"""Write the ledger: one Parquet row per input item, and the counts a person and the launcher read first.

Input element type: ``LedgerRow`` from every stage (rejected and failed rows) and from shard writing (kept rows).
Output files: ``OUT/ledger/part-NNNNN.parquet`` (rows spread over parts by a hash of the source, sorted by source
within a part, so the bytes do not depend on the runner) and ``OUT/_run/counts.json`` (items by status, stage,
reason and domain). The launcher reads ``counts.json`` to enforce the failure ratio: counters in Beam metrics are
never the only record. A source seen twice is a bug in a stage; the writer raises instead of hiding it.
"""

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable

import apache_beam as beam
import pyarrow as pa

from schemas.records import LedgerRow
from transforms._io import join, write_atomic
from transforms.write_shards import parquet_bytes

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
        total = rows | "Count" >> beam.combiners.Count.Globally()
        _ = (
            rows
            | "Part" >> beam.Map(_assign_part, total=beam.pvalue.AsSingleton(total), per_part=self._rows_per_part)
            | "GroupPart" >> beam.GroupByKey()
            | "WritePart" >> beam.Map(_write_part, output=self._output)
        )
        return (
            rows
            | "Tally" >> beam.Map(lambda row: (row.status, row.stage, row.reason, row.domain))
            | "CountTally" >> beam.combiners.Count.PerElement()
            | "AllTallies" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.Map(_write_counts, output=self._output)
        )


def part_of(source: str, parts: int) -> int:
    return int(hashlib.sha256(source.encode("utf-8")).hexdigest()[:15], 16) % parts


def _assign_part(row: LedgerRow, total: int, per_part: int) -> tuple[int, LedgerRow]:
    return part_of(row.source, max(1, math.ceil(total / per_part))), row


def _write_part(element: tuple[int, Iterable[LedgerRow]], output: str) -> str:
    part, rows = element
    ordered = sorted(rows, key=lambda row: row.source)
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.source == after.source:
            raise RuntimeError(
                f"ledger invariant broken: {before.source} has two rows ({before.stage}/{before.status} and "
                f"{after.stage}/{after.status}); this is a unishard bug, please report it with the input"
            )
    path = join(output, "ledger", f"part-{part:05d}.parquet")
    write_atomic(path, parquet_bytes([vars(row) for row in ordered], LEDGER_SCHEMA))
    return path


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
