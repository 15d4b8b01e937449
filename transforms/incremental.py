"""Incremental runs: process only content an earlier run into the same output has not decided yet.

Input: the items read by ingest (``InputItem`` with bytes) and the earlier run's ledger and shard sidecars.
Outputs: ``new`` (items to process), ``carried`` (ledger rows kept from the earlier run or derived from it) and
``shipped`` (``Fingerprint`` records of samples already in shards, for deduplication across runs).

Identity is the content key (SHA-256 of the bytes), so a renamed file is not processed again. Per content key: an
item whose source had the same key before keeps its earlier row, unless that row was ``failed`` (retried); an item
with a new source but known content is an exact duplicate of the shipped sample (or repeats the earlier verdict when
nothing was shipped); other items are new (``_run/increment.json`` counts them). ``CountChanges``
(``_run/changes.json``) counts the final ledger rows that differ from the earlier ledger (new samples, new names,
deleted files, retried items whose verdict changed): with none, nothing in the output would change, and the launcher
commits nothing (an undecodable file is read again each run, and rejected again the same way). Earlier kept rows
whose source left the input are carried, because their samples are still in the shards. A shipped source whose file
now holds other content stops the incremental job (``ChangedContent``): its old sample sits in an earlier shard,
which incremental runs never rewrite, so the launcher rebuilds the whole output instead, and ``MarkReplaced`` writes
the old key into the new row's detail (``replaces_key``) of every source whose content changed since the committed
output. A new item of a document the earlier run already decided (its id in ``OUT/ledger_documents/``) stops the job
the same way: the document is in an earlier docs shard (or was rejected without the new image), and only a rebuild
assembles it again with every image it has. The decision joins light records (content key, source, no bytes); the
new items' bytes are then read again from their files (``_reading.read_again``), so image bytes cross no shuffle here
either; a file gone between the two reads gets ingest's ``missing_file`` row (in ``carried``, with the other rows
decided here). Reason codes: ``exact_duplicate``. Metrics: ``incremental/new``, ``incremental/carried``.
"""

import dataclasses
import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.documents import DocumentsConfig
from schemas.records.dedup import Fingerprint
from schemas.records.inputs import InputItem
from schemas.records.ledger import LedgerRow, detail_json
from schemas.records.values import blank
from transforms._common import StageFn, apply_stage
from transforms._io import join, write_atomic
from transforms._reading import read_again
from transforms.document_ledger import LEDGER_DIR as DOCUMENT_LEDGER
from transforms.documents import document_id
from transforms.ingest import STAGE as INGEST
from transforms.normalise import content_key

STAGE = "incremental"
INCREMENT = "increment.json"
CARRIED = "carried"
CHANGES = "changes.json"
CHANGED = "changed content since it was written to"


class IncrementalOutputs(NamedTuple):
    new: beam.PCollection
    carried: beam.PCollection
    shipped: beam.PCollection


@dataclasses.dataclass(frozen=True)
class EarlierRun:
    """What an earlier run left in the output folder, as the launcher found it."""

    output: str
    generation: int
    has_shards: bool


class SkipKnown(beam.PTransform):
    """Split items into new content and rows carried over from ``earlier``; without one, every item is new.

    ``documents``: the run's grouping rules, to stop the job when a new item joins a document ``earlier`` decided.
    """

    def __init__(self, earlier: EarlierRun | None, output: str, documents: DocumentsConfig | None = None):
        super().__init__()
        self._earlier = earlier
        self._output = output
        self._documents = documents

    def expand(self, items: beam.PCollection):
        pipeline = items.pipeline
        if self._earlier is None:
            none = pipeline | "NothingEarlier" >> beam.Create([])
            return IncrementalOutputs(new=items, carried=none, shipped=none)
        previous = self._earlier.output.rstrip("/")
        earlier = (
            pipeline
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(f"{previous}/ledger/part-*.parquet")
            | "EarlierRows" >> beam.Map(lambda row: LedgerRow(**row))
            | "EarlierByKey" >> beam.Map(lambda row: (row.key or "", row))
        )
        keyed = items | "ByContent" >> beam.Map(_light_by_content)
        _ = (
            {
                "now": keyed | "SourceKeys" >> beam.Map(lambda pair: (pair[1].source, pair[0])),
                "kept": earlier | "KeptSourceKeys" >> beam.FlatMap(_kept_source_key),
            }
            | "JoinSources" >> beam.CoGroupByKey()
            | "RefuseChanged" >> beam.Map(refuse_changed_content, output=previous)
        )
        decided = (
            {"items": keyed, "earlier": earlier}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(_DecideFn()).with_outputs(CARRIED, main="new")
        )
        documents = f"{previous}/{DOCUMENT_LEDGER}/part-*.parquet"
        if self._documents is not None and self._documents.enabled and FileSystems.match([documents])[0].metadata_list:
            _ = (
                {
                    "new": decided.new | "NewDocumentItems" >> beam.FlatMap(_document_source, self._documents),
                    "earlier": pipeline
                    | "ReadEarlierDocuments" >> beam.io.ReadFromParquet(documents, columns=["doc_id"])
                    | "EarlierDocumentIds" >> beam.Map(lambda row: (row["doc_id"], True)),
                }
                | "JoinDocuments" >> beam.CoGroupByKey()
                | "RefuseGrownDocuments" >> beam.Map(refuse_grown_document, output=previous)
            )
        new, unreadable = apply_stage(decided.new, "ReadNewAgain", _ReadAgainFn())
        shipped = pipeline | "NoShipped" >> beam.Create([])
        if self._earlier.has_shards:
            shipped = (
                pipeline
                | "ReadShippedSidecars" >> beam.io.ReadFromParquet(f"{previous}/shards/pairs/*/*.parquet")
                | "ShippedFingerprints" >> beam.Map(shipped_fingerprint)
            )
        _ = (
            decided.new
            | "CountNew" >> beam.combiners.Count.Globally()
            | "WriteIncrement" >> beam.Map(_write_increment, output=self._output)
        )
        carried = (decided[CARRIED], unreadable) | "CarriedOrUnreadable" >> beam.Flatten()
        return IncrementalOutputs(new=new, carried=carried, shipped=shipped)


def _light_by_content(item: InputItem) -> tuple[str, InputItem]:
    """``(content key, the item without its bytes)``: the decision needs sources, not pixels.

    Items whose bytes have no file to be read again from (members of a compressed tar) keep them.
    """
    return content_key(item.data or b"")[0], dataclasses.replace(item, data=None) if item.path else item


class _ReadAgainFn(StageFn):
    """Read a new item's bytes again (``_reading.read_again``); a file gone since the first read is rejected."""

    stage = INGEST

    def apply(self, item: InputItem) -> Iterator[InputItem]:
        yield read_again(item)


class ChangedContent(RuntimeError):
    """A shipped sample's file now holds other content: an incremental run cannot replace it, a rebuild does.

    The message carries ``CHANGED``, which survives every runner's wrapping of a failed job's error, so the launcher
    recognises it (``changed_content``).
    """


def changed_content(error: BaseException) -> str | None:
    """The ``ChangedContent`` sentence inside a failed job's error (a runner wraps it in its own), or ``None``."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        for line in str(error).splitlines():
            if CHANGED in line:
                line = line.split(f"{ChangedContent.__name__}: ", 1)[-1]
                return line.split(" [while running", 1)[0].strip()
        error = error.__cause__ or error.__context__
    return None


def _kept_source_key(pair: tuple[str, LedgerRow]) -> Iterator[tuple[str, str]]:
    key, row = pair
    if row.status == reasons.KEPT:
        yield row.source, key


def refuse_changed_content(element: tuple[str, dict[str, Iterable[str]]], output: str) -> None:
    """Stop the incremental job when a source an earlier run shipped now has different content.

    Its old sample sits in an earlier shard, which incremental runs never rewrite, and the ledger has one row per
    source: keeping both would put a sample in the shards that no input accounts for, so the job stops and the
    launcher rebuilds the output.
    """
    source, keys = element
    now, kept = set(keys["now"]), set(keys["kept"])
    if now and kept and not now & kept:
        raise ChangedContent(f"{source} {CHANGED} {output} (key {min(kept)} is now {min(now)})")


def _document_source(item: InputItem, config: DocumentsConfig) -> Iterator[tuple[str, str]]:
    found = document_id(item.metadata, item.domain, config)
    if found is not None:
        yield found[0], item.source


def refuse_grown_document(element: tuple[str, dict[str, Iterable]], output: str) -> None:
    """Stop the incremental job when a new item belongs to a document an earlier run already decided.

    That document sits in an earlier docs shard (or its ledger row says why it was dropped without the new image);
    incremental runs never rewrite shards, so the launcher rebuilds the output and assembles it with every image.
    """
    doc_id, found = element
    sources, earlier = sorted(found["new"]), list(found["earlier"])
    if sources and earlier:
        raise ChangedContent(f"document {doc_id} {CHANGED} {output} (new member {sources[0]})")


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
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(join(self._previous, "ledger", "part-*.parquet"))
            | "EarlierByKey" >> beam.Map(lambda row: (row["key"] or "", LedgerRow(**row)))
            | "EarlierKept" >> beam.FlatMap(_kept_source_key)
        )
        return (
            {"rows": rows | "BySource" >> beam.Map(lambda row: (row.source, row)), "earlier": earlier}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Mark" >> beam.FlatMap(_mark_replaced)
        )


def _mark_replaced(element: tuple[str, dict[str, Iterable]]) -> Iterator[LedgerRow]:
    _, grouped = element
    old_keys = set(grouped["earlier"])
    for row in grouped["rows"]:
        replaced = sorted(old_keys - {row.key})
        if replaced:
            detail = {**json.loads(row.detail), "replaces_key": replaced[0]}
            row = dataclasses.replace(row, detail=detail_json(**detail))
        yield row


def _write_increment(new_items: int, output: str) -> None:
    write_atomic(join(output, "_run", INCREMENT), json.dumps({"new_items": new_items}).encode() + b"\n")


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
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(join(self._earlier.output, "ledger", "part-*.parquet"))
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


def shipped_fingerprint(row: dict) -> Fingerprint:
    """The fingerprint of a sample an earlier run wrote, from its Parquet sidecar row."""
    metadata = json.loads(row["metadata"])
    return Fingerprint(
        key=row["key"],
        source=row["source"],
        sha256=row["sha256"],
        pixel_sha256=row["pixel_sha256"],
        pixels=row["original_width"] * row["original_height"],
        file_size=row["original_bytes"],
        richness=sum(1 for value in metadata.values() if not blank(value)),
        domain=row["domain"],
        metadata=metadata,
        hashes=json.loads(row["hashes"]),
        scores=json.loads(row["scores"]),
        shipped=True,
    )


def decide(key: str, items: list[InputItem], earlier: list[LedgerRow]) -> tuple[list[InputItem], list[LedgerRow]]:
    """Return the items to process and the ledger rows decided without processing, for one content key."""
    if not key:
        # Earlier rows without a key never decoded; their items (if still present) are simply processed again.
        return [], []
    before = {row.source: row for row in earlier if row.status != reasons.FAILED}
    kept = sorted((row for row in earlier if row.status == reasons.KEPT), key=lambda row: row.source)
    new, rows, emitted = [], [], set()
    for item in sorted(items, key=lambda item: item.source):
        emitted.add(item.source)
        if item.source in before:
            rows.append(before[item.source])
        elif kept:
            rows.append(
                LedgerRow(
                    item.source,
                    key,
                    reasons.REJECTED,
                    "exact_dedup",
                    reasons.EXACT_DUPLICATE,
                    detail_json(survivor_key=key, survivor_source=kept[0].source, shipped_earlier=True),
                    item.domain,
                )
            )
        elif before:
            verdict = before[min(before)]
            detail = {**json.loads(verdict.detail), "same_content_as": verdict.source}
            rows.append(dataclasses.replace(verdict, source=item.source, detail=detail_json(**detail)))
        else:
            new.append(item)
    rows += [row for row in kept if row.source not in emitted]
    return new, rows


class _DecideFn(beam.DoFn):
    def __init__(self):
        self._new = beam.metrics.Metrics.counter(STAGE, "new")
        self._carried = beam.metrics.Metrics.counter(STAGE, "carried")

    def process(self, element: tuple[str, dict[str, Iterable]]) -> Iterator:
        key, grouped = element
        new, rows = decide(key, list(grouped["items"]), list(grouped["earlier"]))
        self._new.inc(len(new))
        self._carried.inc(len(rows))
        yield from new
        for row in rows:
            yield pvalue.TaggedOutput(CARRIED, row)
