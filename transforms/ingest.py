"""Ingest: list input items from file patterns, manifests and WebDataset tars, then read their bytes.

Input: the ``ingest`` config section (a list of ``InputSpec``). Output element type: ``InputItem`` with ``data``
filled and sidecar metadata merged. The listing runs on workers (a manifest or a pattern is expanded by one worker
and reshuffled), so the launcher never holds the input listing.

Reason codes: ``outside_root`` (a manifest row, matched file or sidecar leading out of its input's roots; never
read), ``malformed_manifest_row``, ``missing_file``, ``malformed_sidecar``, ``unreadable_input`` (a read that kept
failing after retries).

Roots: a manifest's rows must lead into the input's ``roots`` (default: the manifest's folder), a file pattern's
matches and their sidecars into its ``roots`` (default: the folder the pattern lists). Local paths are checked where
they really resolve, symbolic links included, unless ``follow_symlinks`` (``transforms._confine``); the listing
checks a manifest row before the item exists, and the read checks every path again just before reading it.
Metrics: ``ingest/items``, ``ingest/read_retries``.
"""

import csv
import dataclasses
import io
import itertools
import json
import os
import posixpath
import re
import tarfile
import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes, FileMetadata
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.documents import TextRow
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from schemas.records.values import blank
from transforms._common import StageFn, apply_stage
from transforms._confine import confine, from_file_url
from transforms._io import fault_point
from transforms.import_interleaved import KINDS as INTERLEAVED_KINDS
from transforms.import_interleaved import ListInterleavedFn

STAGE = "ingest"
MANIFEST_SUFFIXES = (".csv", ".jsonl", ".parquet")
TEXT_MEMBERS = ("json", "txt", "cls")  # the WebDataset members that are not the image
READ_ATTEMPTS = 3


class IngestOutputs(NamedTuple):
    items: beam.PCollection
    rejected: beam.PCollection
    texts: beam.PCollection


class ReadInputs(beam.PTransform):
    """List every configured input and read each item's bytes and sidecar.

    Text rows (``TextRow``: a manifest row with no image path but a ``text_rows_field`` value, or an imported
    MMC4/OBELICS text) are not items: they leave in ``IngestOutputs.texts`` for the documents stage.
    """

    def __init__(self, config: IngestConfig, text_rows_field: str | None = None):
        super().__init__()
        self._config = config
        self._text_rows_field = text_rows_field

    def expand(self, pbegin: beam.pvalue.PBegin):
        listed, dropped, texts = [], [], []
        for index, spec in enumerate(self._config.inputs):
            kind = input_kind(spec)
            label = f"Input{index}"
            start = pbegin | f"{label}Spec" >> beam.Create([spec])
            if kind in ("manifest", *INTERLEAVED_KINDS):
                if kind == "manifest":
                    lister = _ListManifestFn(self._config, self._text_rows_field)
                else:
                    lister = ListInterleavedFn(self._config)
                rows, bad = apply_stage(start, f"{label}Manifest", lister)
                items, text_rows = rows | f"{label}TextRows" >> beam.Partition(_is_text_row, 2)
                dropped.append(bad)
                texts.append(text_rows)
            elif kind == "webdataset":
                items = (
                    start
                    | f"{label}Pattern" >> beam.Map(lambda s: s.path)
                    | f"{label}Match" >> fileio.MatchAll()
                    | f"{label}Members" >> beam.FlatMap(_tar_items, spec, self._config)
                )
            else:
                items = (
                    start
                    | f"{label}Pattern" >> beam.Map(_files_pattern)
                    | f"{label}Match" >> fileio.MatchAll()
                    | f"{label}Files" >> beam.FlatMap(_file_item, spec, self._config)
                )
            listed.append(items)
        items = (
            listed
            | "FlattenListed" >> beam.Flatten()
            | "Spread" >> beam.Reshuffle()
            | "CountItems" >> beam.Map(_count)
        )
        read, bad = apply_stage(items, "Read", _ReadFn(self._config))
        rejected_rows = [*dropped, bad] | "FlattenRejected" >> beam.Flatten()
        text_rows = texts | "FlattenTextRows" >> beam.Flatten(pipeline=pbegin.pipeline)
        return IngestOutputs(items=read, rejected=rejected_rows, texts=text_rows)


def _is_text_row(element: InputItem | TextRow, partitions: int) -> int:
    return int(isinstance(element, TextRow))


_ITEMS = beam.metrics.Metrics.counter(STAGE, "items")


def _count(item: InputItem) -> InputItem:
    _ITEMS.inc()
    return item


def input_kind(spec: InputSpec) -> str:
    """Resolve ``kind = "auto"`` from the path's suffix."""
    if spec.kind != "auto":
        return spec.kind
    lowered = spec.path.lower()
    if lowered.endswith(MANIFEST_SUFFIXES):
        return "manifest"
    if lowered.endswith(".tar"):
        return "webdataset"
    return "files"


def _files_pattern(spec: InputSpec) -> str:
    if "://" not in spec.path and os.path.isdir(spec.path):
        return os.path.join(spec.path, "**")
    return spec.path


def pattern_roots(spec: InputSpec) -> tuple[str, ...]:
    """The roots of a file pattern's matches: the input's ``roots``, else the folder before its first wildcard."""
    if spec.roots:
        return tuple(spec.roots)
    head = re.split(r"[*?[]", _files_pattern(spec), maxsplit=1)[0]
    return (posixpath.dirname(head) if "://" in head else os.path.dirname(head),)


def _file_item(metadata: FileMetadata, spec: InputSpec, config: IngestConfig) -> Iterator[InputItem]:
    path = metadata.path
    stem, suffix = posixpath.splitext(path)
    if suffix.lower() in config.sidecar_extensions:
        return
    domain = spec.domain or config.default_domain
    yield InputItem(source=path, path=path, domain=domain, sidecar=stem, roots=pattern_roots(spec))


def manifest_roots(manifest: str, roots: list[str]) -> tuple[str, ...]:
    """The roots of a manifest's rows: the input's ``roots``, else the manifest's own folder."""
    return tuple(roots) or (posixpath.dirname(manifest) if "://" in manifest else os.path.dirname(manifest),)


def resolve_manifest_path(value: str, manifest: str, roots: list[str], follow_symlinks: bool = False) -> str:
    """Resolve a manifest's ``path`` value against the manifest's folder and check it leads into ``roots``.

    A ``file://`` value is a local path (``transforms._confine``); symbolic links are resolved for the check
    unless ``follow_symlinks``. Returns the normalised path, not the link's target.

    Raises:
        RejectItem: ``outside_root`` when the path leads out of every root (it is never read).
    """
    base = posixpath.dirname(manifest) if "://" in manifest else os.path.dirname(manifest)
    local = from_file_url(value)
    if "://" in local:
        joined = local
    else:
        joined = posixpath.join(base, local) if "://" in base else os.path.join(base, local)
    return confine(joined, manifest_roots(manifest, roots), follow_symlinks, f"path {value!r} in {manifest}")


def manifest_rows(path: str) -> Iterator[dict[str, Any]]:
    """The rows of a CSV, JSON Lines or Parquet manifest as dicts; a JSON line that is not an object yields
    ``{"__error__": why}``."""
    lowered = path.lower()
    if lowered.endswith(".parquet"):
        import pyarrow.parquet as pq

        with FileSystems.open(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches():
                yield from batch.to_pylist()
    elif lowered.endswith(".jsonl"):
        with FileSystems.open(path) as handle:
            for number, line in enumerate(io.TextIOWrapper(handle, encoding="utf-8"), start=1):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as error:
                        row = {"__error__": f"line {number} is not valid JSON: {error}"}
                    yield row if isinstance(row, dict) else {"__error__": f"line {number} is not a JSON object"}
    else:
        with FileSystems.open(path) as handle:
            yield from csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))


class _ListManifestFn(StageFn):
    """Expand one manifest into one ``InputItem`` per row; a row's problems reject that row only."""

    stage = STAGE

    def __init__(self, config: IngestConfig, text_rows_field: str | None = None):
        super().__init__()
        self._config = config
        self._text_rows_field = text_rows_field

    def process(self, spec: InputSpec) -> Iterable[Any]:
        # One manifest yields many items; a bad row must reject that row, not the manifest.
        for number, row in enumerate(manifest_rows(spec.path), start=1):
            yield from super().process(_ManifestRow(spec, number, row))

    def apply(self, row: "_ManifestRow") -> Iterator[InputItem]:
        spec, values = row.spec, row.values
        if "__error__" in values:
            raise RejectItem(reasons.MALFORMED_MANIFEST_ROW, f"{spec.path}: {values['__error__']}")
        value = values.get(spec.path_column)
        if not value and self._text_rows_field and not blank(values.get(self._text_rows_field)):
            metadata = {k: v for k, v in values.items() if k != spec.path_column and not blank(v)}
            domain = str(metadata.pop(self._config.domain_column, "") or spec.domain or self._config.default_domain)
            yield TextRow(source=row.source, domain=domain, metadata=metadata)
            return
        if not value:
            raise RejectItem(
                reasons.MALFORMED_MANIFEST_ROW,
                f"{spec.path} row {row.number} has no {spec.path_column!r} value; every row needs an image path",
            )
        path = resolve_manifest_path(str(value), spec.path, spec.roots, self._config.follow_symlinks)
        metadata = {k: v for k, v in values.items() if k != spec.path_column and not blank(v)}
        domain = str(metadata.pop(self._config.domain_column, "") or spec.domain or self._config.default_domain)
        roots = manifest_roots(spec.path, spec.roots)
        yield InputItem(source=row.source, path=path, domain=domain, metadata=metadata, roots=roots)


class _ManifestRow(NamedTuple):
    spec: InputSpec
    number: int
    values: dict[str, Any]

    @property
    def source(self) -> str:
        return f"{self.spec.path}#{self.number}"

    @property
    def domain(self) -> str:
        return self.spec.domain or ""


def count_items(spec: InputSpec, limit: int) -> int:
    """How many items ``spec`` lists, counted up to ``limit``: a cheap look before a run, not the run's listing.

    Files count as matched (sidecars too), manifests and interleaved documents by rows (a document holds at least
    one image), WebDataset tars by sample keys.
    """
    kind = input_kind(spec)
    try:
        if kind in ("manifest", *INTERLEAVED_KINDS):
            return sum(1 for _ in itertools.islice(manifest_rows(spec.path), limit))
        matched = FileSystems.match([_files_pattern(spec)], limits=[limit])[0].metadata_list
        if kind == "files":
            return len(matched)
        keys: set[str] = set()
        for found in matched:
            with FileSystems.open(found.path) as handle, tarfile.open(fileobj=handle, mode="r|*") as tar:
                for member in tar:
                    keys.add(f"{found.path}#{member.name.partition('.')[0]}")
                    if len(keys) >= limit:
                        return limit
        return len(keys)
    except (OSError, ValueError, tarfile.TarError, UnicodeDecodeError):
        return 0  # the run itself reads this input and names what is wrong with it


def _tar_items(metadata: FileMetadata, spec: InputSpec, config: IngestConfig) -> Iterator[InputItem]:
    """Yield one item per sample of a WebDataset tar: the first image member plus its json/txt members.

    Text members are read here; an image member of an uncompressed tar is located (``InputItem.member``) and read
    by ``_ReadFn`` after the items are spread over workers, so no image bytes cross that shuffle. A compressed tar
    cannot be read at an offset: its image bytes travel inline.
    """
    groups: dict[str, dict[str, bytes | tuple[int, int]]] = {}
    # A compression Beam knows by the file's extension (.gz, .zst...) is undone by Beam, as before; the members of
    # such a tar, or of one tarfile finds compressed inside, cannot be read at an offset of the file.
    compressed = CompressionTypes.detect_compression_type(metadata.path) != CompressionTypes.UNCOMPRESSED
    with (
        FileSystems.open(
            metadata.path, compression_type=CompressionTypes.AUTO if compressed else "uncompressed"
        ) as handle,
        tarfile.open(fileobj=handle, mode="r|*") as tar,
    ):
        seekable = not compressed and getattr(tar.fileobj, "comptype", "") == "tar"
        for member in tar:
            if not member.isfile():
                continue
            base = posixpath.basename(member.name)
            key, _, ext = base.partition(".")
            ext = ext.lower()
            prefix = posixpath.dirname(member.name)
            if seekable and ext not in TEXT_MEMBERS:
                value = (member.offset_data, member.size)
            else:
                value = tar.extractfile(member).read()
            groups.setdefault(posixpath.join(prefix, key), {})[ext] = value
    for key in sorted(groups):
        members = groups[key]
        metadata_values: dict[str, Any] = {}
        if "json" in members:
            try:
                loaded = json.loads(members["json"])
                metadata_values.update(loaded if isinstance(loaded, dict) else {"json": loaded})
            except (json.JSONDecodeError, UnicodeDecodeError):
                metadata_values["__sidecar_error__"] = "the sample's .json member is not valid JSON"
        if "txt" in members:
            metadata_values.setdefault("caption", members["txt"].decode("utf-8", errors="replace").strip())
        image_ext = next((ext for ext in sorted(members) if ext not in TEXT_MEMBERS), None)
        domain = str(metadata_values.pop(config.domain_column, "") or spec.domain or config.default_domain)
        image = members.get(image_ext, b"") if image_ext else b""
        yield InputItem(
            source=f"{metadata.path}#{key}",
            path="" if isinstance(image, bytes) else metadata.path,
            domain=domain,
            metadata=metadata_values,
            data=None if isinstance(image, tuple) else image,
            member=image if isinstance(image, tuple) else None,
        )


def read_bytes(path: str, attempts: int = READ_ATTEMPTS) -> tuple[bytes, int]:
    """Read a whole file through Beam's filesystems, retrying transient errors.

    Returns:
        The bytes and the number of attempts it took.

    Raises:
        RejectItem: ``missing_file`` when the file does not exist, ``unreadable_input`` after ``attempts`` failures.
    """
    fault_point(f"read:{posixpath.basename(path)}")
    for attempt in range(1, attempts + 1):
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                return handle.read(), attempt
        except FileNotFoundError:
            break
        except OSError as error:
            if not FileSystems.exists(path):
                break
            if attempt == attempts:
                raise RejectItem(
                    reasons.UNREADABLE_INPUT, f"reading {path} failed {attempts} times: {error}", attempts=attempts
                ) from error
            time.sleep(0.1 * 2**attempt)
    raise RejectItem(reasons.MISSING_FILE, f"{path} does not exist; fix the manifest row or restore the file")


def read_member(path: str, offset: int, size: int) -> bytes:
    """Read ``size`` bytes at ``offset`` of ``path`` (a tar member's data).

    Raises:
        RejectItem: ``unreadable_input`` when the file is shorter than the member or cannot be read.
    """
    fault_point(f"read:{posixpath.basename(path)}")
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            handle.seek(offset)
            data = handle.read(size)
    except OSError as error:
        raise RejectItem(
            reasons.UNREADABLE_INPUT, f"reading {size} bytes at {offset} of {path} failed: {error}"
        ) from error
    if len(data) != size:
        raise RejectItem(
            reasons.UNREADABLE_INPUT, f"{path} ends before its member at {offset} (+{size} bytes): did it change?"
        )
    return data


def read_again(item: InputItem) -> InputItem:
    """``item`` with its bytes read again from where ``ReadInputs`` read them (inline bytes stay as they are).

    Raises:
        RejectItem: ``missing_file`` or ``unreadable_input`` when the file went away or cannot be read.
    """
    if item.data is not None or not item.path:
        return item
    data = read_member(item.path, *item.member) if item.member is not None else read_bytes(item.path)[0]
    return dataclasses.replace(item, data=data)


def read_sidecar(
    stem: str, extensions: list[str], roots: tuple[str, ...] = (), follow_symlinks: bool = False
) -> dict[str, Any]:
    """Read the same-stem sidecar of an image: a ``.json`` object or a ``.txt`` caption.

    Args:
        stem: The image's path without its extension.
        extensions: Sidecar extensions, tried in order; the first existing file is the sidecar.
        roots: Folders the sidecar must lead into (none: unchecked).
        follow_symlinks: Let symbolic links lead out of ``roots``.

    Raises:
        RejectItem: ``outside_root`` when the sidecar leads out of ``roots`` (it is never read),
            ``malformed_sidecar`` when the JSON sidecar cannot be parsed.
    """
    for ext in extensions:
        path = stem + ext
        if not FileSystems.exists(path):
            continue
        if roots:
            confine(path, roots, follow_symlinks, f"sidecar {path}")
        data, _ = read_bytes(path)
        if ext == ".txt":
            return {"caption": data.decode("utf-8", errors="replace").strip()}
        try:
            loaded = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RejectItem(
                reasons.MALFORMED_SIDECAR,
                f"sidecar {path} is not valid JSON ({error}); fix or remove it",
                sidecar=path,
            ) from None
        if not isinstance(loaded, dict):
            raise RejectItem(reasons.MALFORMED_SIDECAR, f"sidecar {path} must hold a JSON object", sidecar=path)
        return loaded
    return {}


class _ReadFn(StageFn):
    """Read an item's bytes (unless inline) and merge its sidecar metadata, each only if it leads into the roots."""

    stage = STAGE

    def __init__(self, config: IngestConfig):
        super().__init__()
        self._config = config

    def apply(self, item: InputItem) -> Iterator[InputItem]:
        metadata = dict(item.metadata)
        if "__sidecar_error__" in metadata:
            raise RejectItem(reasons.MALFORMED_SIDECAR, f"{item.source}: {metadata['__sidecar_error__']}")
        follow = self._config.follow_symlinks
        if item.roots and item.data is None:
            # Checked just before the read even when the listing checked it: a link can change in between.
            what = item.path if item.path == item.source else f"path {item.path} of {item.source}"
            confine(item.path, item.roots, follow, what)
        if item.sidecar is not None:
            metadata.update(read_sidecar(item.sidecar, self._config.sidecar_extensions, item.roots, follow))
        domain = str(metadata.pop(self._config.domain_column, "") or item.domain)
        if item.data is not None:
            data, attempts = item.data, 0
        elif item.member is not None:
            data, attempts = read_member(item.path, *item.member), 1
        else:
            data, attempts = read_bytes(item.path)
        if attempts > 1:
            metadata["read_attempts"] = attempts
        yield InputItem(item.source, item.path, domain, metadata, data, None, member=item.member)
