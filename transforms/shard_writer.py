"""The shard writer every view shares: slots in the key space, deterministic tars, sidecars, statistics, indexes.

A view (``pairs``, ``docs``, ``edit``) says what one of its elements writes: a ``ShardItem`` with the tar members
in order, the Parquet sidecar row, and the key, domain and image bytes its statistics count. This module does the
rest, the same way for every view:

* **Membership.** ``split_totals`` sums elements and image bytes per split; ``shard_count`` turns them into a
  number of key ranges (``shards`` config section) and ``shard_of`` puts a key in its range, so membership is a
  pure function of the key on any runner and worker count.
* **One shard.** ``write_shard`` writes ``shard-NNNNNN.tar`` (members in the given order, fixed mtime, uid and
  gid, temp name then rename), the same-stem ``.parquet`` sidecar, any extra same-stem files the view adds
  (``.npy`` embeddings), then ``shard-NNNNNN_stats.json``, and returns the ``ShardStats``.
* **Index.** ``write_indexes`` writes each split's wids ``index.json`` from the statistics of its shards.

Layout: ``OUT/shards/<view>/<split>/``. Shard names carry the run generation after a first run (``shard_name``).
"""

import io
import json
import math
import tarfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeVar

import apache_beam as beam
import pyarrow as pa

from schemas.config.shards import ShardsConfig
from schemas.shard import ShardEntry, ShardIndex, ShardStats
from transforms._io import atomic_writer, join, write_atomic
from transforms._parts import parquet_bytes

TAR_MTIME = 0
_KEY_SPACE_BITS = 60

Element = TypeVar("Element")


class ShardItem(NamedTuple):
    """What one element of a view writes into its shard.

    Attributes:
        key: The element's key (a sample, document or pair key); shards hold elements sorted by it.
        domain: Its domain, counted in the shard's statistics.
        image_bytes: Its image bytes, summed in the shard's statistics.
        members: Its tar members ``(name, bytes)``, in the order they are written.
        row: Its Parquet sidecar row.
    """

    key: str
    domain: str
    image_bytes: int
    members: Iterable[tuple[str, bytes]]
    row: dict[str, Any]


def split_totals(elements: beam.PCollection, size_of: Callable[[Any], tuple[str, int]]) -> beam.pvalue.AsSingleton:
    """``{split: (elements, image bytes)}`` as a side input, from each element's ``(split, image bytes)``.

    Applied in the caller's scope, so its steps (``Size``, ``SumPerSplit``, ``AsDictTotals``) are the caller's.
    """
    return beam.pvalue.AsSingleton(
        elements
        | "Size" >> beam.Map(_counted, size_of=size_of)
        | "SumPerSplit" >> beam.CombinePerKey(lambda pairs: tuple(map(sum, zip(*pairs, strict=True))) or (0, 0))
        | "AsDictTotals" >> beam.combiners.ToDict()
    )


def _counted(element: Any, size_of: Callable[[Any], tuple[str, int]]) -> tuple[str, tuple[int, int]]:
    split, image_bytes = size_of(element)
    return split, (1, image_bytes)


def shard_count(samples: int, image_bytes: int, config: ShardsConfig) -> int:
    """Number of shard slots for a split: enough for both size targets and at least ``min_shards``."""
    by_count = math.ceil(samples / config.samples_per_shard)
    by_bytes = math.ceil(image_bytes / config.bytes_per_shard)
    return max(1, config.min_shards, by_count, by_bytes)


def shard_of(key: str, shards: int, share: float = 1.0) -> int:
    """The shard slot of ``key``: its position in the part of the key space a view samples (its first ``share``,
    ``sampled``), cut into ``shards`` equal ranges. Cut over the whole key space, a view of half the keys would
    fill only half its slots, each twice its size."""
    space = _sampled_space(share)
    return min(shards - 1, int(key[:15], 16) * shards // space)


def _sampled_space(share: float) -> int:
    return 1 << _KEY_SPACE_BITS if share >= 1.0 else max(1, math.ceil(share * (1 << _KEY_SPACE_BITS)))


def sampled(key: str, share: float) -> bool:
    """Whether a key falls in the first ``share`` of the key space (a view's share, stable across runs)."""
    return int(key[:15], 16) < _sampled_space(share)


def slot_of(split: str, key: str, totals: dict, config: ShardsConfig, share: float = 1.0) -> tuple[str, int]:
    """``(split, slot)`` of the element with ``key`` in ``split``, given the ``split_totals`` and the view's
    ``share``."""
    count, image_bytes = totals[split]
    return split, shard_of(key, shard_count(count, image_bytes, config), share)


def shard_name(slot: int, generation: int = 0) -> str:
    """The shard's file stem: ``shard-NNNNNN`` for a first run, ``shard-gGGGG-NNNNNN`` for incremental runs.

    Incremental runs add shards beside earlier ones, so their names carry the run's generation and never collide.
    """
    return f"shard-{slot:06d}" if generation == 0 else f"shard-g{generation:04d}-{slot:06d}"


def shard_dir(output: str, view: str, split: str) -> str:
    return join(output, "shards", view, split)


def canonical_json(data: dict) -> bytes:
    """Canonical JSON bytes: sorted keys, no spaces, UTF-8; equal data gives equal bytes."""
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def tar_member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), TAR_MTIME, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info, io.BytesIO(data)


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


def write_shard(
    folder: str,
    name: str,
    view: str,
    split: str,
    elements: Iterable[Element],
    item_of: Callable[[Element], ShardItem],
    sidecar_schema: pa.Schema,
    extras: Mapping[str, bytes] | None = None,
) -> ShardStats:
    """Write one shard of a view: ``NAME.tar``, ``NAME.parquet``, ``NAME.<suffix>`` per extra, ``NAME_stats.json``.

    Args:
        folder: ``shard_dir(output, view, split)``.
        name: ``shard_name(slot, generation)``.
        view: The view's name, for the statistics.
        split: The split, for the statistics.
        elements: The shard's elements in key order (at least one).
        item_of: What an element writes; called once per element, as the tar is written, so the image bytes of
            one element at a time are held.
        sidecar_schema: The view's Parquet sidecar schema.
        extras: More same-stem files, by suffix (``{"npy": ...}``).
    """
    items: list[ShardItem] = []

    def members() -> Iterator[tuple[str, bytes]]:
        for element in elements:
            item = item_of(element)
            if items and items[-1].key == item.key:  # a tar holding a key twice is one that readers refuse
                raise ValueError(
                    f"two elements of the {view} view share the key {item.key} (shard {name}.tar of {split}): a stage "
                    "let copies of one sample through; nothing is committed. This is a bug: please report it"
                )
            items.append(item._replace(members=()))
            yield from item.members

    size = write_tar(join(folder, f"{name}.tar"), members())
    write_atomic(join(folder, f"{name}.parquet"), parquet_bytes([item.row for item in items], sidecar_schema))
    for suffix, data in (extras or {}).items():
        write_atomic(join(folder, f"{name}.{suffix}"), data)
    stats = ShardStats(
        shard=f"{name}.tar",
        view=view,
        split=split,
        samples=len(items),
        bytes=size,
        image_bytes=sum(item.image_bytes for item in items),
        domains=dict(sorted(Counter(item.domain for item in items).items())),
        first_key=items[0].key,
        last_key=items[-1].key,
    )
    write_stats(folder, stats)
    return stats


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


def write_indexes(shards: beam.PCollection, output: str, view: str) -> beam.PCollection:
    """Write every split's ``index.json`` from the view's ``ShardStats``; returns the paths written.

    Applied in the caller's scope (steps ``BySplit``, ``GroupSplit``, ``WriteIndex``).
    """
    return (
        shards
        | "BySplit" >> beam.Map(lambda stats: (stats.split, stats))
        | "GroupSplit" >> beam.GroupByKey()
        | "WriteIndex" >> beam.Map(write_index, output=output, view=view)
    )


class _CountingWriter:
    def __init__(self, handle):
        self._handle = handle
        self.written = 0

    def write(self, data: bytes) -> int:
        self.written += len(data)
        return self._handle.write(data)
