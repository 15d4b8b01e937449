"""A folder's own metadata file: one table of its images' text, as Hugging Face's ImageFolder lays a dataset out.

A folder input (``--input photos``) whose files include ``metadata.csv``, ``metadata.tsv``, ``metadata.jsonl``,
``metadata.json`` or ``metadata.parquet`` (any case, at any depth), or a COCO file ``NAME.coco.json`` (Roboflow's
``_annotations.coco.json``), reads it as the metadata of the images it names: each row names one image in the column
``file_name`` (ImageFolder's name) or the input's ``path_column`` (``path``), relative to the metadata file's folder,
and its other non-empty columns become that image's metadata (``domain`` its domain), as a manifest row's do. The file
itself is no input item. An image that also has its own sidecar takes the sidecar's value of a key both give; an image
no row names is read as before.

Every row ends in the ledger: merged into its image's item, or rejected as ``missing_file`` (it names a file the
input does not list), ``outside_root`` (it leads out of the input's roots) or ``malformed_manifest_row`` (no file
name; an image already named by a nearer metadata file's row, or an earlier row of the same file). A metadata file
with neither column is one ``malformed_manifest_row`` row naming its columns. Rows travel to their images by the
same stem grouping that brings an image its sidecars (``transforms._listing.stem_items``), so no extra shuffle.
"""

import dataclasses
import os
import posixpath
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam.io.filesystem import FileMetadata

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from schemas.records.values import blank, finite, printable
from transforms._confine import from_file_url, normalise
from transforms._listing import ORPHAN, REJECTED, manifest_rows, pattern_roots, resolve_manifest_path, stem_items

NAMES = frozenset({"metadata.csv", "metadata.tsv", "metadata.jsonl", "metadata.json", "metadata.parquet"})
NAME_COLUMN = "file_name"
COCO_SUFFIX = ".coco.json"


class FolderRow(NamedTuple):
    """One row of a folder's metadata file, on its way to the image it names."""

    source: str  # METADATA#ROW
    path: str  # the image's path, spelled as the input's matched paths are
    rank: tuple[int, str, int]  # nearest metadata file first, then its path, then its row
    metadata: dict[str, Any]


def image_column(values: dict[str, Any], path_column: str) -> str | None:
    """The column of a table's row that names its image: the input's ``path_column``, else ``file_name``."""
    return next((name for name in (path_column, NAME_COLUMN) if name in values), None)


def is_folder_metadata(found: FileMetadata, whole_folders: bool) -> bool:
    """Whether a matched file is a folder's metadata file (only where the input lists whole folders): one of
    ``NAMES``, or a COCO file named ``*.coco.json`` as Roboflow exports one beside its images
    (``_annotations.coco.json``)."""
    name = posixpath.basename(found.path.replace(os.sep, "/")).lower()
    return whole_folders and (name in NAMES or name.endswith(COCO_SUFFIX))


def rejected_item(source: str, path: str, domain: str, error: RejectItem) -> InputItem:
    """An item ingest's read rejects with ``error``'s reason and message."""
    return InputItem(source, path, domain, metadata={REJECTED: [error.reason, dict(error.detail)]})


class FolderRowsFn(beam.DoFn):
    """Read one metadata file: ``(image stem, FolderRow)`` per row, and a rejected item per row that names none.

    ``top``: the folder the input's pattern lists, as the user spelled it; matched paths begin with it, and a row's
    path is spelled the same way, so it meets its image's stem.
    """

    REJECTED_TAG = "rejected"

    def __init__(self, spec: InputSpec, config: IngestConfig, top: str):
        super().__init__()
        self._spec, self._config, self._top = spec, config, top

    def process(self, found: FileMetadata) -> Iterator[Any]:
        path, spec = found.path, self._spec
        shown, domain = printable(path), spec.domain or self._config.default_domain

        def rejected(source: str, reason: str, message: str) -> beam.pvalue.TaggedOutput:
            item = rejected_item(source, path, domain, RejectItem(reason, message))
            return beam.pvalue.TaggedOutput(self.REJECTED_TAG, item)

        number = 0
        # A table's header names every row's columns; a JSON row names its own keys, so each row is judged alone.
        headed = not path.lower().endswith((".jsonl", ".json"))
        try:
            for number, values in enumerate(manifest_rows(path), start=1):
                source = f"{shown}#{number}"
                if "__error__" in values:
                    yield rejected(source, reasons.MALFORMED_MANIFEST_ROW, f"{shown}: {values['__error__']}")
                    continue
                column = image_column(values, spec.path_column)
                if column is None and headed:
                    yield rejected(shown, reasons.MALFORMED_MANIFEST_ROW, _no_name_column(shown, values, spec))
                    return
                if column is None:
                    yield rejected(source, reasons.MALFORMED_MANIFEST_ROW, _no_name_key(source, values, spec))
                    continue
                try:
                    yield self._keyed(path, source, number, column, finite(values))
                except RejectItem as error:
                    item = rejected_item(source, path, domain, error)
                    yield beam.pvalue.TaggedOutput(self.REJECTED_TAG, item)
        except Exception as error:  # noqa: BLE001 - a metadata file that stops reading is a ledger row, not a crash
            why = f"reading stopped after {number} rows: {type(error).__name__}: {error}; no later row was read"
            yield rejected(f"{shown}#{number + 1}", reasons.MALFORMED_MANIFEST_ROW, f"{shown}: {why}")

    def _keyed(self, path: str, source: str, number: int, column: str, values: dict) -> tuple[bytes, FolderRow]:
        value = values.get(column)
        if blank(value):
            raise RejectItem(
                reasons.MALFORMED_MANIFEST_ROW, f"{source} has no {column!r} value; every row names one image file"
            )
        roots = list(pattern_roots(self._spec))
        image = resolve_manifest_path(str(value), path, roots, self._config.follow_symlinks)
        image = matched_spelling(image, self._top)
        depth = path.replace(os.sep, "/").count("/")
        metadata = {key: item for key, item in values.items() if key != column and not blank(item)}
        row = FolderRow(source, image, (-depth, path, number), metadata)
        stem = posixpath.splitext(image)[0] if "://" in image else os.path.splitext(image)[0]
        return stem.encode("utf-8", "surrogateescape"), row


def matched_spelling(path: str, top: str) -> str:
    """``path`` spelled as Beam's match spells the files below ``top``: ``top`` as given, then the normalised rest
    (``photos/./a/../b.jpg`` below ``photos`` is ``photos/b.jpg``; ``./photos`` stays ``./photos``)."""
    clean, base = normalise(from_file_url(path)), normalise(top)
    remote = "://" in clean
    join, relative = (posixpath.join, posixpath.relpath) if remote else (os.path.join, os.path.relpath)
    inside = clean == base or clean.startswith(base.rstrip("/" if remote else os.sep) + ("/" if remote else os.sep))
    if not inside:
        return clean
    if remote:
        return join(top, clean[len(base) :].lstrip("/"))
    return join(top, relative(clean, base))


def stem_items_with_rows(
    group: tuple[bytes, Iterable[bytes | FolderRow]], spec: InputSpec, config: IngestConfig
) -> Iterator[InputItem]:
    """``transforms._listing.stem_items`` of a stem's files, each image with the metadata of the row naming it; a
    row that names no image of the stem, or one another row already describes, is a rejected item."""
    values = list(group[1])
    paths = [value for value in values if isinstance(value, bytes)]
    rows = [value for value in values if isinstance(value, FolderRow)]
    items = stem_items((group[0], paths), spec, config) if paths else iter(())
    if not rows:
        yield from items
        return
    items = list(items)
    images = {item.path for item in items if ORPHAN not in item.metadata}
    chosen, rejected = rows_by_image(images, rows, spec.domain or config.default_domain)
    for item in items:
        row = chosen.get(item.path) if item.path in images else None
        yield dataclasses.replace(item, metadata={**item.metadata, **row.metadata}) if row else item
    yield from rejected


def rows_by_image(
    images: set[str], rows: Iterable[FolderRow], domain: str
) -> tuple[dict[str, FolderRow], list[InputItem]]:
    """The row each image takes (the first by rank) and a rejected item for every other row of the group."""
    chosen: dict[str, FolderRow] = {}
    rejected = []
    for row in sorted(rows, key=lambda row: row.rank):
        metadata_file = row.source.rsplit("#", 1)[0]
        if row.path not in images:
            message = (
                f"{row.source} names {printable(row.path)}, which is not an image file this input lists (missing, "
                "misspelled, or left out by ingest.ignore); fix the row's file name or remove the row"
            )
            error = RejectItem(reasons.MISSING_FILE, message)
        elif row.path in chosen:
            message = (
                f"{row.source} describes {printable(row.path)} again: {chosen[row.path].source} already does (the "
                "nearest metadata file's first row is used); keep one row per image"
            )
            error = RejectItem(reasons.MALFORMED_MANIFEST_ROW, message)
        else:
            chosen[row.path] = row
            continue
        rejected.append(rejected_item(row.source, metadata_file, domain, error))
    return chosen, rejected


def _no_name_key(source: str, values: dict, spec: InputSpec) -> str:
    keys = ", ".join(sorted(map(str, values))) or "none"
    return (
        f"{source} has no {NAME_COLUMN!r} or {spec.path_column!r} key (it has {keys}), so it describes no image; "
        "give it the image's file name, relative to the metadata file's folder, or remove the row"
    )


def _no_name_column(shown: str, values: dict, spec: InputSpec) -> str:
    columns = ", ".join(sorted(map(str, values))) or "none"
    return (
        f"{shown} is named like a folder's metadata file but has no {NAME_COLUMN!r} or {spec.path_column!r} column "
        f"(it has {columns}), so no row names its image and none of its text is used: name the column of image "
        f"file names {NAME_COLUMN!r}, or rename the file if it describes no images"
    )
