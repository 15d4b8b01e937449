"""Incremental runs: process only content an earlier run into the same output has not decided yet.

Input: the items read by ingest (``InputItem`` with bytes) and the earlier run's ledger and shard sidecars.
Outputs: ``new`` (items to process), ``carried`` (ledger rows kept from the earlier run or derived from it),
``shipped`` (``Fingerprint`` records of samples already in shards, for deduplication across runs) and ``documents``
(the earlier run's document ledger rows, ``DocumentLedgerRow``: a run that goes on changes none of those documents,
so they keep their rows and the documents stage leaves them alone).

Identity is the content key (SHA-256 of the bytes), so a renamed file is not processed again. Per content key: an
item whose source had the same key before keeps its earlier row, unless that row was ``failed`` (retried) or the
item's metadata changed since (``metadata_fingerprint``: a sidecar or manifest value edited, e.g. the caption a
``no_text`` rejection asked for; its earlier row is replaced by a new decision, and a kept one stops the job like
changed content, since its sample sits in an earlier shard with the old text); an item
with a new source but known content is an exact duplicate of the shipped sample (when nothing was shipped, it is
processed: text, safety, faces and the filters read its metadata too, so an earlier copy's verdict is not its own);
other items are new (``_run/increment.json`` counts them; ``transforms/count_changes.py``
counts the rows that changed, so that a run changing nothing commits nothing). Every run writes each item's
metadata fingerprint to ``OUT/_run/inputs/part-NNNNN.parquet`` for the next one (an output without it: no metadata
change is seen, as before), and, with documents on, a fingerprint of each document's text rows (``TextRow``, keyed by
document id, whatever their row numbers) to ``OUT/_run/texts/``: a document an earlier run decided whose text rows
were edited, added or removed since stops the job as a grown document does. Earlier kept rows whose source left
the input are carried, because their samples are still in the shards. A shipped source whose file now holds other
content stops the incremental job (``ChangedContent``, ``transforms/changed_content.py``): its old sample sits in an
earlier shard, which incremental runs never rewrite, so the launcher rebuilds the whole output instead
(``transforms/mark_replaced.py`` names the old key in the new row). A new item of a document the earlier run already
decided (its id in ``OUT/ledger_documents/``) stops the job the same way: the document is in an earlier docs shard
(or was rejected without the new image), and only a rebuild assembles it again with every image it has. The
decision joins light records (content key, source, no bytes); the new items' bytes are then read again from their
files (``_reading.read_again``), so image bytes cross no shuffle here either; a file gone between the two reads gets
ingest's ``missing_file`` row (in ``carried``, with the other rows decided here). Reason codes: ``exact_duplicate``.
Metrics: ``incremental/new``, ``incremental/carried``.
"""

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.documents import DocumentsConfig
from schemas.documents import TextRow
from schemas.records.dedup import Fingerprint
from schemas.records.inputs import InputItem
from schemas.records.ledger import LedgerRow, detail_json
from schemas.records.values import blank, content_metadata, richness
from transforms._common import StageFn, apply_stage
from transforms._io import join, literal, write_atomic
from transforms._parts import WriteParts
from transforms._reading import read_again
from transforms.changed_content import (
    CHANGED,
    METADATA,
    ChangedContent,
    kept_source_key,
    refuse_changed_content,
    refuse_changed_texts,
    refuse_grown_document,
)
from transforms.document_ids import document_id, id_text
from transforms.document_ledger import LEDGER_DIR as DOCUMENT_LEDGER
from transforms.document_ledger import carried_row
from transforms.ingest import STAGE as INGEST
from transforms.normalise import content_key

STAGE = "incremental"
INCREMENT = "increment.json"
CARRIED = "carried"
INPUTS = "_run/inputs"
INPUTS_SCHEMA = pa.schema([("source", pa.string()), ("metadata_sha256", pa.string())])
TEXTS = "_run/texts"
TEXTS_SCHEMA = pa.schema([("doc_id", pa.string()), ("texts_sha256", pa.string())])


class IncrementalOutputs(NamedTuple):
    new: beam.PCollection
    carried: beam.PCollection
    shipped: beam.PCollection
    documents: beam.PCollection


@dataclasses.dataclass(frozen=True)
class EarlierRun:
    """What an earlier run left in the output folder, as the launcher found it."""

    output: str
    generation: int
    has_shards: bool


class SkipKnown(beam.PTransform):
    """Split items into new content and rows carried over from ``earlier``; without one, every item is new.

    ``documents``: the run's grouping rules, to stop the job when a new item joins a document ``earlier`` decided.
    ``texts``: the run's text rows (``TextRow``), to stop it when such a document's text rows changed.
    """

    def __init__(
        self,
        earlier: EarlierRun | None,
        output: str,
        documents: DocumentsConfig | None = None,
        rows_per_part: int = 100_000,
        texts: beam.PCollection | None = None,
    ):
        super().__init__()
        self._earlier = earlier
        self._output = output
        self._documents = documents
        self._rows_per_part = rows_per_part
        self._texts = texts if documents is not None and documents.enabled else None

    def expand(self, items: beam.PCollection):
        pipeline = items.pipeline
        _ = (
            items
            | "MetadataFingerprints" >> beam.Map(lambda item: (item.source, metadata_fingerprint(item)))
            | "WriteInputs"
            >> WriteParts(self._output, INPUTS, INPUTS_SCHEMA, _first, _input_row, "inputs", self._rows_per_part)
        )
        document_texts = None
        if self._texts is not None:
            document_texts = (
                self._texts
                | "TextFingerprints" >> beam.FlatMap(text_fingerprint, self._documents.id_field)
                | "TextsByDocument" >> beam.GroupByKey()
                | "DocumentTexts" >> beam.MapTuple(lambda doc_id, found: (doc_id, texts_fingerprint(found)))
            )
            # An empty part too: the next run tells "no text rows" from an output written before texts were kept.
            _ = document_texts | "WriteTexts" >> WriteParts(
                self._output, TEXTS, TEXTS_SCHEMA, _first, _text_row, "document texts", self._rows_per_part, True
            )
        if self._earlier is None:
            none = pipeline | "NothingEarlier" >> beam.Create([])
            return IncrementalOutputs(new=items, carried=none, shipped=none, documents=none)
        previous = self._earlier.output.rstrip("/")
        earlier = (
            pipeline
            | "ReadEarlierLedger" >> beam.io.ReadFromParquet(f"{literal(previous)}/ledger/part-*.parquet")
            | "EarlierRows" >> beam.Map(lambda row: LedgerRow(**row))
            | "EarlierByKey" >> beam.Map(lambda row: (row.key or "", row))
        )
        keyed = items | "ByContent" >> beam.Map(_light_by_content)
        inputs = f"{literal(previous)}/{INPUTS}/part-*.parquet"
        seen = pipeline | "NoEarlierInputs" >> beam.Create([])
        if FileSystems.match([inputs])[0].metadata_list:
            seen = (
                pipeline
                | "ReadEarlierInputs" >> beam.io.ReadFromParquet(inputs)
                | "EarlierFingerprints" >> beam.Map(lambda row: (row["source"], row["metadata_sha256"]))
            )
        marked = (
            {
                "now": keyed | "BySource" >> beam.Map(lambda pair: (pair[1].source, pair)),
                "kept": earlier | "KeptSourceKeys" >> beam.FlatMap(kept_source_key),
                "seen": seen,
            }
            | "JoinSources" >> beam.CoGroupByKey()
            | "MarkChanged" >> beam.FlatMap(mark_changed, output=previous)
        )
        decided = (
            {"items": marked, "earlier": earlier}
            | "JoinEarlier" >> beam.CoGroupByKey()
            | "Decide" >> beam.ParDo(_DecideFn()).with_outputs(CARRIED, main="new")
        )
        documents = f"{literal(previous)}/{DOCUMENT_LEDGER}/part-*.parquet"
        carried_documents = pipeline | "NoEarlierDocuments" >> beam.Create([])
        if self._documents is not None and self._documents.enabled and FileSystems.match([documents])[0].metadata_list:
            carried_documents = (
                pipeline
                | "ReadEarlierDocuments" >> beam.io.ReadFromParquet(documents)
                | "EarlierDocumentRows" >> beam.Map(carried_row)
            )
            decided_documents = carried_documents | "EarlierDocumentIds" >> beam.Map(lambda row: (row.doc_id, True))
            _ = (
                {
                    "new": decided.new | "NewDocumentItems" >> beam.FlatMap(_document_source, self._documents),
                    "earlier": decided_documents,
                }
                | "JoinDocuments" >> beam.CoGroupByKey()
                | "RefuseGrownDocuments" >> beam.Map(refuse_grown_document, output=previous)
            )
            texts = f"{literal(previous)}/{TEXTS}/part-*.parquet"
            if document_texts is not None and FileSystems.match([texts])[0].metadata_list:
                _ = (
                    {
                        "now": document_texts,
                        "earlier": pipeline
                        | "ReadEarlierTexts" >> beam.io.ReadFromParquet(texts)
                        | "EarlierTexts" >> beam.Map(lambda row: (row["doc_id"], row["texts_sha256"])),
                        "decided": decided_documents,
                    }
                    | "JoinTexts" >> beam.CoGroupByKey()
                    | "RefuseChangedTexts" >> beam.Map(refuse_changed_texts, output=previous)
                )
        new, unreadable = apply_stage(decided.new, "ReadNewAgain", _ReadAgainFn())
        shipped = pipeline | "NoShipped" >> beam.Create([])
        if self._earlier.has_shards:
            shipped = (
                pipeline
                | "ReadShippedSidecars"
                >> beam.io.ReadFromParquet(f"{literal(previous)}/shards/pairs/*/shard-*.parquet")
                | "ShippedFingerprints" >> beam.Map(shipped_fingerprint)
            )
        _ = (
            decided.new
            | "CountNew" >> beam.combiners.Count.Globally()
            | "WriteIncrement" >> beam.Map(_write_increment, output=self._output)
        )
        carried = (decided[CARRIED], unreadable) | "CarriedOrUnreadable" >> beam.Flatten()
        return IncrementalOutputs(new=new, carried=carried, shipped=shipped, documents=carried_documents)


def metadata_fingerprint(item: InputItem) -> str:
    """SHA-256 of what an item brings besides its image bytes: its domain and metadata (sidecars, manifest values).

    ``PROVENANCE`` keys (``read_attempts``) are left out: they say how a read went, not what the item is.
    """
    return _fingerprint(item.domain, item.metadata)


def _fingerprint(domain: str, metadata: dict) -> str:
    text = json.dumps([domain, content_metadata(metadata)], sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def text_fingerprint(row: TextRow, id_field: str) -> Iterator[tuple[str, str]]:
    """``(document id, SHA-256 of the row's domain and metadata)`` of a text row with a document id.

    The row's source (its row or line number) is left out: a row inserted above it moves it, and changes nothing.
    """
    value = row.metadata.get(id_field)
    if not blank(value):
        yield id_text(value), _fingerprint(row.domain, row.metadata)


def texts_fingerprint(fingerprints: Iterable[str]) -> str:
    """One document's text fingerprint from those of its text rows, in whatever order they came."""
    return hashlib.sha256("\n".join(sorted(fingerprints)).encode("ascii")).hexdigest()


def mark_changed(
    element: tuple[str, dict[str, Iterable]], output: str
) -> Iterator[tuple[str, tuple[InputItem, bool]]]:
    """``(content key, (item, metadata changed))`` of one source's item, after the checks that stop the job.

    Stops it (``ChangedContent``) when a source an earlier run kept now holds other bytes, or the same bytes with
    other metadata: its sample sits in an earlier shard, and only a rebuild replaces it.
    """
    source, groups = element
    now, kept, seen = list(groups["now"]), set(groups["kept"]), set(groups["seen"])
    refuse_changed_content((source, {"now": [key for key, _ in now], "kept": kept}), output)
    for key, item in now:
        changed = bool(seen) and metadata_fingerprint(item) not in seen
        if changed and key in kept:
            raise ChangedContent(f"{source} {CHANGED} {output} {METADATA}")
        yield key, (item, changed)


def _first(pair: tuple[str, str]) -> str:
    return pair[0]


def _input_row(pair: tuple[str, str]) -> list[dict]:
    return [{"source": pair[0], "metadata_sha256": pair[1]}]


def _text_row(pair: tuple[str, str]) -> list[dict]:
    return [{"doc_id": pair[0], "texts_sha256": pair[1]}]


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


def _document_source(item: InputItem, config: DocumentsConfig) -> Iterator[tuple[str, str]]:
    found = document_id(item.metadata, item.domain, config)
    if found is not None:
        yield found[0], item.source


def _write_increment(new_items: int, output: str) -> None:
    write_atomic(join(output, "_run", INCREMENT), json.dumps({"new_items": new_items}).encode() + b"\n")


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
        richness=richness(metadata),
        domain=row["domain"],
        metadata=metadata,
        hashes=json.loads(row["hashes"]),
        scores=json.loads(row["scores"]),
        shipped=True,
    )


def decide(
    key: str, items: list[InputItem], earlier: list[LedgerRow], changed: frozenset[str] = frozenset()
) -> tuple[list[InputItem], list[LedgerRow]]:
    """Return the items to process and the ledger rows decided without processing, for one content key.

    ``changed``: sources whose metadata changed since the earlier run; they are processed again.
    """
    if not key:
        # Earlier rows without a key never decoded; their items (if still present) are simply processed again.
        return [], []
    before = {row.source: row for row in earlier if row.status != reasons.FAILED}
    kept = sorted((row for row in earlier if row.status == reasons.KEPT), key=lambda row: row.source)
    new, rows, emitted = [], [], set()
    for item in sorted(items, key=lambda item: item.source):
        emitted.add(item.source)
        if item.source in changed:
            new.append(item)
        elif item.source in before:
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
        else:  # an earlier verdict on this content is no verdict on this item: its own caption may keep it
            new.append(item)
    rows += [row for row in kept if row.source not in emitted]
    return new, rows


class _DecideFn(beam.DoFn):
    def __init__(self):
        self._new = beam.metrics.Metrics.counter(STAGE, "new")
        self._carried = beam.metrics.Metrics.counter(STAGE, "carried")

    def process(self, element: tuple[str, dict[str, Iterable]]) -> Iterator:
        key, grouped = element
        marked = list(grouped["items"])
        changed = frozenset(item.source for item, was_changed in marked if was_changed)
        new, rows = decide(key, [item for item, _ in marked], list(grouped["earlier"]), changed)
        self._new.inc(len(new))
        self._carried.inc(len(rows))
        yield from new
        for row in rows:
            yield pvalue.TaggedOutput(CARRIED, row)
