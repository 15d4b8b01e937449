"""Per-item Parquet files in parts: the one writer behind the item ledger, the document ledger and the audit's items.

Each element has an id (a source, a document id) that is unique in the collection. The part count follows from the
element count (``ceil(count / rows_per_part)``), an element's part from a hash of its id, and rows are sorted by id
within a part, so the bytes depend on neither the runner nor the worker count. Two elements with one id are a bug in
the stage that made them: the writer raises, naming both, instead of writing either.
"""

import hashlib
import math
from collections.abc import Callable, Iterable
from typing import Any

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq

from transforms._io import join, write_atomic


def part_of(name: str, parts: int) -> int:
    """The part of an element with id ``name`` among ``parts``: a stable hash, the same on every worker."""
    return int(hashlib.sha256(name.encode("utf-8")).hexdigest()[:15], 16) % parts


def parquet_bytes(rows: list[dict], schema: pa.Schema) -> bytes:
    """Rows as zstd Parquet with statistics, deterministically (the writer options of every Parquet file here)."""
    buffer = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), buffer, compression="zstd", write_statistics=True)
    return buffer.getvalue().to_pybytes()


class WriteParts(beam.PTransform):
    """Write elements as ``output/<folder>/part-NNNNN.parquet``, ``rows_per_part`` elements a part on average.

    Args:
        output: The run's output (staging) folder.
        folder: The folder under it, e.g. ``ledger``.
        schema: The Parquet schema of the rows.
        id_of: An element's unique id (the part and the order follow from it).
        rows_of: The rows an element writes (one for a ledger row, several for an item's audit counts).
        what: What the elements are, for the error when an id repeats ("ledger", "document ledger").
        rows_per_part: Elements per part.
        empty_part: Without elements, write one part without rows (the ledger of a run that listed nothing is
            still a ledger that readers find), instead of none.
    """

    def __init__(
        self,
        output: str,
        folder: str,
        schema: pa.Schema,
        id_of: Callable[[Any], str],
        rows_of: Callable[[Any], list[dict]],
        what: str,
        rows_per_part: int,
        empty_part: bool = False,
    ):
        super().__init__()
        self._output, self._folder, self._schema = output, folder, schema
        self._id_of, self._rows_of, self._what = id_of, rows_of, what
        self._rows_per_part = rows_per_part
        self._empty_part = empty_part

    def expand(self, elements: beam.PCollection) -> beam.PCollection:
        total = elements | "Count" >> beam.combiners.Count.Globally()
        written = (
            elements
            | "Part" >> beam.Map(self._assign, total=beam.pvalue.AsSingleton(total))
            | "GroupPart" >> beam.GroupByKey()
            | "WritePart" >> beam.MapTuple(self._write)
        )
        if not self._empty_part:
            return written
        empty = total | "EmptyPart" >> beam.FlatMap(lambda count: [] if count else [self._write(0, [])])
        return (written, empty) | "AllParts" >> beam.Flatten()

    def _assign(self, element: Any, total: int) -> tuple[int, Any]:
        return part_of(self._id_of(element), max(1, math.ceil(total / self._rows_per_part))), element

    def _write(self, part: int, elements: Iterable[Any]) -> str:
        ordered = sorted(elements, key=self._id_of)
        for before, after in zip(ordered, ordered[1:], strict=False):
            if self._id_of(before) == self._id_of(after):
                raise RuntimeError(
                    f"{self._what} invariant broken: {self._id_of(before)!r} has two rows ({before} and {after}); "
                    "this is a unishard bug, please report it with the input"
                )
        rows = [row for element in ordered for row in self._rows_of(element)]
        path = join(self._output, self._folder, f"part-{part:05d}.parquet")
        write_atomic(path, parquet_bytes(rows, self._schema))
        return path
