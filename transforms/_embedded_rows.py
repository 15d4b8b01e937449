"""Parquet manifests that hold their images: Hugging Face datasets' files (the ``Image`` feature), read by row group.

A Hugging Face dataset saved or downloaded as Parquet keeps each image in the row, as a struct of ``bytes`` and
``path`` (the file name it had), beside its text columns. ``image_column`` finds such a column (``image`` first) in a
manifest's schema when it has no ``path_column``. Its rows are then listed a row group at a time (``row_groups``:
light ``RowGroup`` elements, spread over workers with the other inputs) and ingest's read reads one row group
(``group_rows``) and makes one ``InputItem`` per row with its image bytes inline (``embedded_item``), so the bytes
cross no shuffle: normalise runs in the same fused stage. Each row is one item (source ``FILE#ROW``); its other
columns are its metadata (the image's own ``path`` as ``file_name``; further image columns named in
``unused_images``). A row without image bytes is ``missing_file``; a row group that cannot be read is one
``unreadable_input`` row per row. An incremental run's decision (``transforms.incremental``) joins the new items
before they go on: these keep their bytes there, as members of a compressed tar do, since reading one row again
means reading its whole row group.
"""

from collections.abc import Iterator
from typing import Any, NamedTuple

import pyarrow as pa

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from schemas.records.values import blank, finite
from transforms._listing import ManifestRow

UNREADABLE = "__unreadable__"


class RowGroup(NamedTuple):
    """A row group of a Parquet manifest that holds its images: listed light, read whole by ingest's read."""

    spec: InputSpec
    group: int
    first: int  # the 1-based number of its first row in the file
    rows: int
    column: str  # the image column


class EmbeddedRow(ManifestRow):
    """One row of a Parquet manifest that holds its images (in its ``column``), before its item is made."""


def is_image_struct(field: pa.Field) -> bool:
    """Whether a Parquet field is an image stored in the row: a struct with a binary ``bytes`` field."""
    if not pa.types.is_struct(field.type):
        return False
    names = {field.type.field(index).name: field.type.field(index).type for index in range(field.type.num_fields)}
    kind = names.get("bytes")
    return kind is not None and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind))


def image_column(schema: pa.Schema, path_column: str) -> str | None:
    """The column holding the images of a Parquet manifest with no ``path_column``: ``image`` first, else the first
    image struct; ``None`` when the manifest names its images by path."""
    if path_column in schema.names or "file_name" in schema.names:
        return None
    images = [field.name for field in schema if is_image_struct(field)]
    return "image" if "image" in images else images[0] if images else None


def parquet_image_column(spec: InputSpec) -> str | None:
    """``image_column`` of a ``.parquet`` manifest's schema (its footer only), or ``None`` (any other manifest, or a
    file that does not open: the manifest listing then names what is wrong with it)."""
    if not spec.path.lower().endswith(".parquet"):
        return None
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    try:
        with FileSystems.open(spec.path) as handle:
            return image_column(pq.ParquetFile(handle).schema_arrow, spec.path_column)
    except Exception:  # noqa: BLE001 - an unreadable manifest is the listing's ledger row, not a failed launch
        return None


def row_groups(spec: InputSpec, column: str) -> Iterator[RowGroup]:
    """One light element per row group of the manifest: which group, its first row's number and its row count."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(spec.path) as handle:
        metadata = pq.ParquetFile(handle).metadata
    first = 1
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        yield RowGroup(spec, group, first, rows, column)
        first += rows


def row_image(path: str, number: int, column: str) -> bytes:
    """The image bytes of row ``number`` (1-based) of a Parquet manifest, reading only its row group's ``column``."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path) as handle:
        parquet = pq.ParquetFile(handle)
        first = 1
        for group in range(parquet.metadata.num_row_groups):
            rows = parquet.metadata.row_group(group).num_rows
            if number < first + rows:
                value = parquet.read_row_group(group, columns=[column]).column(0)[number - first].as_py()
                return (value.get("bytes") or b"") if isinstance(value, dict) else b""
            first += rows
    return b""


def group_rows(element: RowGroup, column: str) -> Iterator["EmbeddedRow"]:
    """The rows of one row group, images and all; rows marked unreadable when the group cannot be read."""
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    spec = element.spec
    try:
        with FileSystems.open(spec.path) as handle:
            rows = pq.ParquetFile(handle).read_row_group(element.group).to_pylist()
    except Exception as error:  # noqa: BLE001 - a row group that cannot be read is a ledger row per row
        why = f"row group {element.group} could not be read: {type(error).__name__}: {error}"
        rows = [{UNREADABLE: why}] * element.rows
    for offset, values in enumerate(rows):
        yield EmbeddedRow(spec, element.first + offset, values, column)


def embedded_item(row: "EmbeddedRow", config: IngestConfig) -> InputItem:
    """The item of one row: its image bytes inline, its other columns as metadata.

    Raises:
        RejectItem: ``unreadable_input`` for a row of a row group that could not be read, ``missing_file`` for a row
            whose image column holds no bytes.
    """
    if UNREADABLE in row.values:
        raise RejectItem(reasons.UNREADABLE_INPUT, f"{row.spec.path}: {row.values[UNREADABLE]}")
    image = row.values.get(row.column) or {}
    data = image.get("bytes") if isinstance(image, dict) else None
    if not data:
        named = image.get("path") if isinstance(image, dict) else None
        only = f" (only the path {named!r}, which is not read)" if named else ""
        raise RejectItem(
            reasons.MISSING_FILE,
            f"{row.source}: its {row.column!r} column holds no image bytes{only}; save the dataset with its images "
            "embedded",
        )
    metadata: dict[str, Any] = {}
    unused = []
    for key, value in row.values.items():
        if key == row.column:
            continue
        if isinstance(value, bytes | bytearray) or (isinstance(value, dict) and "bytes" in value):
            unused.append(key)
        elif not blank(value):
            metadata[key] = value
    if image.get("path") and "file_name" not in metadata:
        metadata["file_name"] = image["path"]
    if unused:
        metadata["unused_images"] = unused
    metadata = finite(metadata)
    domain = str(metadata.pop(config.domain_column, "") or row.spec.domain or config.default_domain)
    return InputItem(source=row.source, path="", domain=domain, metadata=metadata, data=bytes(data))
