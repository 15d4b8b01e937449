"""Write shards: group kept samples into WebDataset tars with a Parquet sidecar, statistics and a wids index.

Input element type: ``Sample``. Outputs: ``kept`` ledger rows (one per sample written, naming its shard) and
``shards`` (``ShardStats``). Layout: ``OUT/shards/<view>/<split>/shard-NNNNNN.{tar,parquet}``,
``shard-NNNNNN_stats.json`` and ``index.json``, plus ``shard-NNNNNN.npy`` (the samples' float16 image embeddings,
one row per sample in key order) when the samples carry embeddings.

Shard membership is a pure function of the key: the shard count comes from the total sample count and bytes
(``shards`` config section) and each key falls in a fixed range of the key space, so any runner and worker count
produce the same shards. Members are sorted by key and tar headers carry fixed mtime, uid and gid. Shards with no
samples are never written. The tar, sidecar, statistics and index are written by ``transforms/shard_writer.py``,
as for every view; this module says what a sample writes (``sample_item``). Metrics: ``write_shards/samples``,
``write_shards/shards``.
"""

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from schemas import reasons
from schemas.config.shards import ShardsConfig
from schemas.documents import DOCUMENT_ANNOTATION
from schemas.records.ledger import LedgerRow, detail_json
from schemas.records.samples import Sample
from schemas.records.values import content_metadata
from schemas.shard import SampleRecord
from transforms.embed import embedding_matrix, npy_bytes
from transforms.image_store import image_sha256, read_image
from transforms.shard_writer import (
    ShardItem,
    canonical_json,
    shard_dir,
    shard_name,
    slot_of,
    split_totals,
    write_indexes,
    write_shard,
)

STAGE = "write_shards"
KEPT = "kept"


class WriteOutputs(NamedTuple):
    kept: beam.PCollection
    shards: beam.PCollection


class WriteShards(beam.PTransform):
    """Write samples into deterministic shards of one view under ``output/shards/<view>/``."""

    def __init__(self, config: ShardsConfig, output: str, view: str = "pairs", generation: int = 0):
        super().__init__()
        self._config = config
        self._output = output
        self._view = view
        self._generation = generation

    def expand(self, samples: beam.PCollection):
        totals = split_totals(samples, lambda s: (s.split, s.normalised.bytes))
        written = (
            samples
            | "Assign" >> beam.Map(_assign, totals=totals, config=self._config)
            | "GroupShard" >> beam.GroupByKey()
            | "Write"
            >> beam.ParDo(_WriteShardFn(self._output, self._view, self._generation)).with_outputs(KEPT, main="shards")
        )
        _ = write_indexes(written.shards, self._output, self._view)
        return WriteOutputs(kept=written[KEPT], shards=written.shards)


def _assign(sample: Sample, totals: dict, config: ShardsConfig) -> tuple[tuple[str, int], Sample]:
    return slot_of(sample.split, sample.key, totals, config), sample


def sample_record(sample: Sample) -> SampleRecord:
    """The JSON written beside a sample's image."""
    return SampleRecord(
        key=sample.key,
        source=sample.source,
        path=sample.path,
        domain=sample.domain,
        split=sample.split,
        text=sample.text,
        text_source=sample.text_source,
        image_member=f"{sample.key}.{sample.image_ext}",
        sha256=sample.sha256,
        pixel_sha256=sample.pixel_sha256,
        image_sha256=image_sha256(sample),
        original=sample.original,
        image=sample.normalised,
        notes=list(sample.notes),
        hashes=dict(sample.hashes),
        scores=dict(sample.scores),
        annotations=shard_annotations(sample),
        metadata=content_metadata(sample.metadata),
    )


SIDECAR_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source", pa.string()),
        ("path", pa.string()),
        ("domain", pa.string()),
        ("split", pa.string()),
        ("text", pa.string()),
        ("text_source", pa.string()),
        ("sha256", pa.string()),
        ("pixel_sha256", pa.string()),
        ("image_sha256", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("image_bytes", pa.int64()),
        ("original_width", pa.int32()),
        ("original_height", pa.int32()),
        ("original_format", pa.string()),
        ("original_mode", pa.string()),
        ("original_bytes", pa.int64()),
        ("original_frames", pa.int32()),
        ("notes", pa.list_(pa.string())),
        ("hashes", pa.string()),
        ("scores", pa.string()),
        ("annotations", pa.string()),
        ("metadata", pa.string()),
    ]
)


def shard_annotations(sample: Sample) -> dict:
    """The ``annotations`` of a sample's JSON: its own, and its document id under ``document_id`` when it has one."""
    if not sample.document_id:
        return dict(sample.annotations)
    return {**sample.annotations, DOCUMENT_ANNOTATION: sample.document_id}


def sidecar_row(record: SampleRecord) -> dict:
    """One Parquet sidecar row: every field of the sample JSON, nested values as canonical JSON text."""
    return {
        "key": record.key,
        "source": record.source,
        "path": record.path,
        "domain": record.domain,
        "split": record.split,
        "text": record.text,
        "text_source": record.text_source,
        "sha256": record.sha256,
        "pixel_sha256": record.pixel_sha256,
        "image_sha256": record.image_sha256,
        "width": record.image.width,
        "height": record.image.height,
        "image_bytes": record.image.bytes,
        "original_width": record.original.width,
        "original_height": record.original.height,
        "original_format": record.original.format,
        "original_mode": record.original.mode,
        "original_bytes": record.original.bytes,
        "original_frames": record.original.frames,
        "notes": record.notes,
        "hashes": canonical_json(record.hashes).decode(),
        "scores": canonical_json(record.scores).decode(),
        "annotations": canonical_json(record.annotations).decode(),
        "metadata": canonical_json(record.metadata).decode(),
    }


def sample_item(sample: Sample) -> ShardItem:
    """What a sample writes: ``KEY.json``, ``KEY.<image ext>`` and ``KEY.txt`` (sorted by name) and its sidecar row."""
    record = sample_record(sample)
    files = {
        "json": canonical_json(record.model_dump(mode="json")),
        sample.image_ext: read_image(sample),
        "txt": sample.text.encode("utf-8"),
    }
    members = [(f"{sample.key}.{ext}", files[ext]) for ext in sorted(files)]
    return ShardItem(sample.key, sample.domain, sample.normalised.bytes, members, sidecar_row(record))


class _WriteShardFn(beam.DoFn):
    def __init__(self, output: str, view: str, generation: int):
        self._output = output
        self._view = view
        self._generation = generation
        self._samples = beam.metrics.Metrics.counter(STAGE, "samples")
        self._shards = beam.metrics.Metrics.counter(STAGE, "shards")

    def process(self, element: tuple[tuple[str, int], Iterable[Sample]]) -> Iterator:
        (split, slot), members = element
        samples = sorted(members, key=lambda s: s.key)
        if not samples:
            return
        name = shard_name(slot, self._generation)
        folder = shard_dir(self._output, self._view, split)
        embeddings = embedding_matrix(samples)
        extras = {"npy": npy_bytes(embeddings)} if embeddings is not None else {}
        stats = write_shard(folder, name, self._view, split, samples, sample_item, SIDECAR_SCHEMA, extras)
        self._shards.inc()
        self._samples.inc(len(samples))
        yield stats
        for sample in samples:
            retried = {"read_attempts": sample.metadata["read_attempts"]} if "read_attempts" in sample.metadata else {}
            detail = detail_json(view=self._view, shard=f"{self._view}/{split}/{name}.tar", **retried)
            row = LedgerRow(sample.source, sample.key, reasons.KEPT, STAGE, "", detail, sample.domain, split)
            yield pvalue.TaggedOutput(KEPT, row)
