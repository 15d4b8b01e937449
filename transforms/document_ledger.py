"""The document ledger: one Parquet row per document, saying where it ended and why each of its images left.

Input element type: ``DocumentLedgerRow`` from the documents stage (rejected and failed documents) and from
``transforms/write_documents.py`` (kept documents and those the view did not write), plus the item ledger rows
(``LedgerRow``). An image that left a document with no reason yet (curation removed it after the document's images
were known) takes the stage and reason of its item ledger row, matched by source (``explained``).

Outputs: ``OUT/ledger_documents/part-NNNNN.parquet`` (one row per document, written like the item ledger by
``transforms/_parts.py``; an incremental run's rows include those it carried from the earlier run, ``carried_row``)
and ``OUT/_run/document_counts.json`` (documents by status and by status/stage/reason). The ``detail`` column is
JSON for people, rendered from the typed row (``DocumentLedgerRow.detail``).
"""

import dataclasses
import json
from collections import Counter
from collections.abc import Iterable, Iterator

import apache_beam as beam
import pyarrow as pa

from schemas.documents import DocumentLedgerRow, LeftImage
from schemas.records.ledger import LedgerRow
from transforms._io import join, write_atomic
from transforms._parts import WriteParts

LEDGER_DIR = "ledger_documents"

LEDGER_SCHEMA = pa.schema(
    [
        ("doc_id", pa.string()),
        ("key", pa.string()),
        ("status", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
        ("images", pa.int32()),
        ("texts", pa.int32()),
    ]
)


class WriteDocumentLedger(beam.PTransform):
    """Write one Parquet row per document under ``output/ledger_documents/`` and ``_run/document_counts.json``."""

    def __init__(self, output: str, rows_per_part: int, items: beam.PCollection):
        """Args:
        output: The run's output (staging) folder.
        rows_per_part: Rows per Parquet part, as the item ledger.
        items: The item ledger rows (``LedgerRow``), to say at which stage and why each image left a document.
        """
        super().__init__()
        self._output = output
        self._rows_per_part = rows_per_part
        self._items = items

    def expand(self, rows: beam.PCollection) -> beam.PCollection:
        found = (
            {
                "left": rows | "LeftBySource" >> beam.FlatMap(_left_sources),
                "items": self._items | "ItemBySource" >> beam.Map(lambda row: (row.source, row)),
            }
            | "JoinItems" >> beam.CoGroupByKey()
            | "Explain" >> beam.FlatMap(_explain)
        )
        completed = (
            {"rows": rows | "RowByDoc" >> beam.Map(lambda r: (r.doc_id, r)), "left": found}
            | "JoinLeft" >> beam.CoGroupByKey()
            | "Complete" >> beam.FlatMap(_complete)
        )
        _ = completed | "Parts" >> WriteParts(
            self._output, LEDGER_DIR, LEDGER_SCHEMA, _doc_id, _as_row, "document ledger", self._rows_per_part
        )
        return (
            completed
            | "Tally" >> beam.Map(lambda row: f"{row.status}/{row.stage}/{row.reason}".rstrip("/"))
            | "CountTally" >> beam.combiners.Count.PerElement()
            | "AllTallies" >> beam.combiners.ToList()
            | "WriteCounts" >> beam.Map(_write_counts, output=self._output)
        )


def _left_sources(row: DocumentLedgerRow) -> Iterator[tuple[str, str]]:
    for image in row.left or ():
        if not image.reason:
            yield image.source, row.doc_id


def _explain(element: tuple[str, dict]) -> Iterator[tuple[str, tuple[str, str | None, str, str]]]:
    source, grouped = element
    items: list[LedgerRow] = list(grouped["items"])
    for doc_id in grouped["left"]:
        for item in items:
            yield doc_id, (source, item.key, item.stage, item.reason or item.status)


def _complete(element: tuple[str, dict]) -> Iterator[DocumentLedgerRow]:
    doc_id, grouped = element
    rows = list(grouped["rows"])
    found = {source: (key, stage, reason) for source, key, stage, reason in grouped["left"]}
    for row in rows:
        yield row if row.left is None else dataclasses.replace(row, left=tuple(explained(row.left, found)))


def explained(left: Iterable[LeftImage], found: dict[str, tuple[str | None, str, str]]) -> Iterator[LeftImage]:
    """``left`` with the key, stage and reason ``found`` (by source, from the item ledger) of each image that
    left with no reason yet."""
    for image in left:
        if not image.reason and image.source in found:
            yield LeftImage(image.source, *found[image.source])
        else:
            yield image


def carried_row(row: dict) -> DocumentLedgerRow:
    """The ``DocumentLedgerRow`` of a row an earlier run wrote (``LEDGER_SCHEMA``), as it was before writing."""
    notes = json.loads(row["detail"] or "{}")
    left = notes.pop("images_left", None)
    return DocumentLedgerRow(
        doc_id=row["doc_id"],
        key=row["key"],
        status=row["status"],
        stage=row["stage"],
        reason=row["reason"] or "",
        notes=notes,
        domain=row["domain"] or "",
        split=row["split"] or "",
        images=row["images"] or 0,
        texts=row["texts"] or 0,
        left=None if left is None else tuple(LeftImage(**image) for image in left),
    )


def _doc_id(row: DocumentLedgerRow) -> str:
    return row.doc_id


def _as_row(row: DocumentLedgerRow) -> list[dict]:
    return [{name: getattr(row, name) for name in LEDGER_SCHEMA.names}]


def _write_counts(tallies: list[tuple[str, int]], output: str) -> dict:
    by_reason = dict(sorted(tallies))
    by_status: Counter = Counter()
    for name, count in tallies:
        by_status[name.split("/", 1)[0]] += count
    counts = {
        "documents": sum(by_status.values()),
        "by_status": dict(sorted(by_status.items())),
        "by_reason": by_reason,
    }
    write_atomic(join(output, "_run", "document_counts.json"), json.dumps(counts, indent=2).encode() + b"\n")
    return counts
