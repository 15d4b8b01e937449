"""Count changes: how many sources' ledger rows an incremental run changed, written to ``_run/changes.json``.

Input: the run's final ledger rows (``LedgerRow``) and the earlier run (``EarlierRun``, from
``transforms/incremental.py``). ``CountChanges`` counts the final ledger rows that differ from the earlier ledger (new
samples, new names, deleted files, retried items whose verdict changed): with none, nothing in the output would
change, and the launcher commits nothing (an undecodable file is read again each run, and rejected again the same
way). Not incremental: nothing is written. No config section, no metrics.
"""

import dataclasses
import json

import apache_beam as beam

from schemas.records.ledger import LedgerRow, detail_json
from transforms._io import join, pattern, write_atomic
from transforms.incremental import EarlierRun

CHANGES = "changes.json"


class CountChanges(beam.PTransform):
    """Write ``_run/changes.json``: how many sources' ledger rows differ from the earlier run's ledger (a new name for
    known content, a file deleted, a verdict that changed). With no new items and no changed row, an incremental
    run changes nothing and the launcher commits nothing."""

    def __init__(self, earlier: EarlierRun | None, output: str):
        super().__init__()
        self._earlier = earlier
        self._output = output

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        if self._earlier is None:
            return rows.pipeline | "NotIncremental" >> beam.Create([])
        earlier = (
            rows.pipeline
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(pattern(self._earlier.output, "ledger", "part-*.parquet"))
            | "EarlierBySource" >> beam.Map(lambda row: (row["source"], LedgerRow(**row)))
        )
        return (
            {"now": rows | "BySource" >> beam.Map(lambda row: (row.source, row)), "earlier": earlier}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Differs" >> beam.Map(_differs)
            | "Sum" >> beam.CombineGlobally(sum)
            | "WriteChanges" >> beam.Map(_write_changes, output=self._output)
        )


def _differs(element: tuple[str, dict]) -> int:
    """1 when a source's rows differ from its earlier ones. A ``replaces_key`` (the rebuild that replaced the file's
    content said so) is no difference: a file that never decoded is decided again each run, without it."""
    now, earlier = ([_unmarked(row) for row in element[1][side]] for side in ("now", "earlier"))
    return int(now != earlier)


def _unmarked(row: LedgerRow) -> LedgerRow:
    if '"replaces_key"' not in (row.detail or ""):
        return row
    detail = {name: value for name, value in json.loads(row.detail).items() if name != "replaces_key"}
    return dataclasses.replace(row, detail=detail_json(**detail))


def _write_changes(changed_rows: int, output: str) -> None:
    write_atomic(join(output, "_run", CHANGES), json.dumps({"changed_rows": changed_rows}).encode() + b"\n")
