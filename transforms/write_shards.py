"""Write shards: group kept samples into WebDataset tars with a Parquet sidecar, statistics and a wids index.

Input element type: ``Sample``. Outputs: ``kept`` ledger rows (one per sample written, naming its shard) and
``shards`` (``ShardStats``). Layout: ``OUT/shards/<view>/<split>/shard-NNNNNN.{tar,parquet}``,
``shard-NNNNNN_stats.json`` and ``index.json``, plus ``shard-NNNNNN.npy`` (the samples' float16 image embeddings,
one row per sample in key order) when the samples carry embeddings.

Shard membership is a pure function of the key: the shard count comes from the total sample count and bytes
(``shards`` config section) and each key falls in a fixed range of the key space, so any runner and worker count
produce the same shards. Members are sorted by key and tar headers carry fixed mtime, uid and gid. Shards with no
samples are never written. Metrics: ``write_shards/samples``, ``write_shards/shards``.
"""

import io
import json
import math
import tarfile
from collections.abc import Iterable, Iterator
from typing import NamedTuple

import apache_beam as beam
import pyarrow as pa
from apache_beam import pvalue

from schemas import reasons
from schemas.config import ShardsConfig
from schemas.records import LedgerRow, Sample, detail_json
from schemas.shard import ImageFacts, SampleRecord, ShardEntry, ShardIndex, ShardStats
from transforms._io import atomic_writer, join, write_atomic
from transforms._parts import parquet_bytes
from transforms.embed import embedding_matrix, npy_bytes
from transforms.image_store import image_sha256, read_image

STAGE = "write_shards"
KEPT = "kept"
TAR_MTIME = 0
_KEY_SPACE_BITS = 60


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
        totals = (
            samples
            | "Size" >> beam.Map(lambda s: (s.split, (1, s.normalised.bytes)))
            | "SumPerSplit" >> beam.CombinePerKey(lambda pairs: tuple(map(sum, zip(*pairs, strict=True))) or (0, 0))
            | "AsDictTotals" >> beam.combiners.ToDict()
        )
        written = (
            samples
            | "Assign" >> beam.Map(_assign, totals=beam.pvalue.AsSingleton(totals), config=self._config)
            | "GroupShard" >> beam.GroupByKey()
            | "Write"
            >> beam.ParDo(_WriteShardFn(self._output, self._view, self._generation)).with_outputs(KEPT, main="shards")
        )
        _ = (
            written.shards
            | "BySplit" >> beam.Map(lambda stats: (stats.split, stats))
            | "GroupSplit" >> beam.GroupByKey()
            | "WriteIndex" >> beam.Map(write_index, output=self._output, view=self._view)
        )
        return WriteOutputs(kept=written[KEPT], shards=written.shards)


def shard_count(samples: int, image_bytes: int, config: ShardsConfig) -> int:
    """Number of shard slots for a split: enough for both size targets and at least ``min_shards``."""
    by_count = math.ceil(samples / config.samples_per_shard)
    by_bytes = math.ceil(image_bytes / config.bytes_per_shard)
    return max(1, config.min_shards, by_count, by_bytes)


def shard_of(key: str, shards: int) -> int:
    """The shard slot of ``key``: its position in the key space, cut into ``shards`` equal ranges."""
    return (int(key[:15], 16) * shards) >> _KEY_SPACE_BITS


def shard_name(slot: int, generation: int = 0) -> str:
    """The shard's file stem: ``shard-NNNNNN`` for a first run, ``shard-gGGGG-NNNNNN`` for incremental runs.

    Incremental runs add shards beside earlier ones, so their names carry the run's generation and never collide.
    """
    return f"shard-{slot:06d}" if generation == 0 else f"shard-g{generation:04d}-{slot:06d}"


def shard_dir(output: str, view: str, split: str) -> str:
    return join(output, "shards", view, split)


def _assign(sample: Sample, totals: dict, config: ShardsConfig) -> tuple[tuple[str, int], Sample]:
    count, image_bytes = totals[sample.split]
    return (sample.split, shard_of(sample.key, shard_count(count, image_bytes, config))), sample


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
        original=ImageFacts(**vars(sample.original)),
        image=ImageFacts(**vars(sample.normalised)),
        notes=list(sample.notes),
        hashes=dict(sample.hashes),
        scores=dict(sample.scores),
        annotations=dict(sample.annotations),
        metadata=dict(sample.metadata),
    )


def canonical_json(data: dict) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8; equal data gives equal bytes."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def tar_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


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


def write_tar(path: str, members: Iterable[tuple[str, bytes]]) -> int:
    """Write a tar of ``(name, bytes)`` members in the given order with fixed headers (temp name, then rename).

    Returns:
        The size of the tar in bytes.
    """
    with atomic_writer(path) as handle:
        counting = _CountingWriter(handle)
        with tarfile.open(fileobj=counting, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
            for name, data in members:
                tar.addfile(*tar_member(name, data))
    return counting.written


def write_shard(path: str, samples: list[Sample]) -> tuple[int, list[SampleRecord]]:
    """Write one tar (temp name, then rename) of ``samples`` sorted by key; return its size and the records."""
    records = []

    def members() -> Iterator[tuple[str, bytes]]:
        for sample in samples:
            record = sample_record(sample)
            records.append(record)
            files = {
                "json": canonical_json(record.model_dump(mode="json")),
                sample.image_ext: read_image(sample),
                "txt": sample.text.encode("utf-8"),
            }
            for ext in sorted(files):
                yield f"{sample.key}.{ext}", files[ext]

    return write_tar(path, members()), records


class _CountingWriter:
    def __init__(self, handle):
        self._handle = handle
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self._handle.write(data)


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
        size, records = write_shard(join(folder, f"{name}.tar"), samples)
        write_atomic(join(folder, f"{name}.parquet"), parquet_bytes([sidecar_row(r) for r in records], SIDECAR_SCHEMA))
        embeddings = embedding_matrix(samples)
        if embeddings is not None:
            write_atomic(join(folder, f"{name}.npy"), npy_bytes(embeddings))
        domains: dict[str, int] = {}
        for sample in samples:
            domains[sample.domain] = domains.get(sample.domain, 0) + 1
        stats = ShardStats(
            shard=f"{name}.tar",
            view=self._view,
            split=split,
            samples=len(samples),
            bytes=size,
            image_bytes=sum(s.normalised.bytes for s in samples),
            domains=dict(sorted(domains.items())),
            first_key=samples[0].key,
            last_key=samples[-1].key,
        )
        write_stats(folder, stats)
        self._shards.inc()
        self._samples.inc(len(samples))
        yield stats
        for sample in samples:
            retried = {"read_attempts": sample.metadata["read_attempts"]} if "read_attempts" in sample.metadata else {}
            detail = detail_json(view=self._view, shard=f"{self._view}/{split}/{name}.tar", **retried)
            row = LedgerRow(sample.source, sample.key, reasons.KEPT, STAGE, "", detail, sample.domain, split)
            yield pvalue.TaggedOutput(KEPT, row)


def write_stats(folder: str, stats: ShardStats) -> None:
    """Write ``NAME_stats.json`` beside the shard ``stats`` describes."""
    write_atomic(
        join(folder, stats.shard.removesuffix(".tar") + "_stats.json"), canonical_json(stats.model_dump()) + b"\n"
    )


def write_index(element: tuple[str, Iterable[ShardStats]], output: str, view: str) -> str:
    """Write the wids ``index.json`` of one split of a view from the statistics of its shards."""
    split, shards = element
    entries = [ShardEntry(url=s.shard, nsamples=s.samples) for s in sorted(shards, key=lambda s: s.shard)]
    index = ShardIndex(name=f"{view}/{split}", shardlist=entries)
    path = join(shard_dir(output, view, split), "index.json")
    write_atomic(path, canonical_json(index.model_dump(by_alias=True)) + b"\n")
    return path
