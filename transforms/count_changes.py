"""Count changes: how many sources' ledger rows an incremental run changed, written to ``_run/changes.json``.

Input: the run's final ledger rows (``LedgerRow``) and the earlier run (``EarlierRun``, from
``transforms/incremental.py``). ``CountChanges`` counts the final ledger rows that differ from the earlier ledger (new
samples, new names, deleted files, retried items whose verdict changed): with none, nothing in the output would
change, and the launcher commits nothing (an undecodable file is read again each run, and rejected again the same
way). Not incremental: nothing is written. No config section, no metrics.
"""

import json

import apache_beam as beam

from schemas.records.ledger import LedgerRow
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
            | "Differs" >> beam.Map(lambda element: int(list(element[1]["now"]) != list(element[1]["earlier"])))
            | "Sum" >> beam.CombineGlobally(sum)
            | "WriteChanges" >> beam.Map(_write_changes, output=self._output)
        )


def _write_changes(changed_rows: int, output: str) -> None:
    write_atomic(join(output, "_run", CHANGES), json.dumps({"changed_rows": changed_rows}).encode() + b"\n")
