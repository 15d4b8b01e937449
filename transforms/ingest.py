"""Ingest: list input items from file patterns, manifests and WebDataset tars, then read their bytes.

Input: the ``ingest`` config section (a list of ``InputSpec``). Output element type: ``InputItem`` with ``data``
filled and sidecar metadata merged. The listing runs on workers (a manifest or a pattern is expanded by one worker
and reshuffled), so the launcher never holds the input listing.

Reason codes: ``outside_root`` (a manifest row, matched file or sidecar leading out of its input's roots; never
read), ``malformed_manifest_row``, ``missing_file`` (also a matched link whose target is gone),
``malformed_sidecar``, ``orphan_sidecar`` (a ``.json`` or ``.txt`` file of a file pattern that no image takes: no
image has its name), ``unreadable_input`` (a read that kept failing after retries; a tar that breaks off, whose
samples before the break are read, or that is no tar).

A folder's own metadata file (``metadata.csv``, ``.jsonl``, ``.parquet``...: Hugging Face's ImageFolder layout)
gives the images its rows name their metadata; it is no item, and each of its rows is merged or rejected
(``transforms._folder_metadata``).

Roots: a manifest's rows must lead into the input's ``roots`` (default: the manifest's folder), a file pattern's
matches and their sidecars into its ``roots`` (default: the folder the pattern lists). Local paths are checked where
they really resolve, symbolic links included, unless ``follow_symlinks`` (``transforms._confine``); the listing
checks a manifest row before the item exists, and the read checks every path again just before reading it.
Inputs that overlap (a folder and a pattern inside it, one path given twice) list each file once, with the first
input's settings. Metrics: ``ingest/items``, ``ingest/read_retries``, ``ingest/listed_twice``,
``ingest/invalid_text_replaced`` (lone UTF-16 surrogates in metadata text, such as half an emoji in a JSON sidecar,
replaced by U+FFFD: no UTF-8 writer takes them), ``ingest/ignored`` (matched files ``ingest.ignore`` leaves out: not
inputs, so not in the ledger), ``ingest/earlier_output_files`` (files an earlier unishard output inside an input folder
holds: not inputs either, see ``transforms._output_layout``). The listing's pure parts: ``transforms._listing``; the
reads: ``transforms._reading``.
"""

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.io import fileio
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.documents import DocumentsConfig
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.documents import TextRow
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from schemas.records.values import BOXES_FROM, blank, finite, printable, valid_text
from transforms._annotation_files import ANNOTATION, read_annotation
from transforms._common import StageFn, apply_stage
from transforms._confine import confine
from transforms._embedded_rows import (
    EmbeddedRow,
    RowGroup,
    embedded_item,
    group_rows,
    parquet_image_column,
    row_groups,
)
from transforms._folder_metadata import (
    NAME_COLUMN,
    REJECTED,
    FolderRowsFn,
    image_column,
    is_folder_metadata,
    stem_items_with_rows,
)
from transforms._io import join
from transforms._listing import (
    FOLDER,
    NO_IMAGE,
    ORPHAN,
    UNREADABLE,
    ManifestRow,
    broken_links,
    input_kind,
    input_pattern,
    linked_files,
    lists_folders,
    manifest_roots,
    manifest_rows,
    not_ignored,
    resolve_manifest_path,
    stem_key,
    tar_items,
    top_folder,
)
from transforms._output_layout import LEGACY_MARKER, MANIFEST, EarlierOutput, earlier_output, written_earlier
from transforms._reading import present_sidecars, read_bytes, read_member, read_sidecar
from transforms._unreadable import coco_sidecar
from transforms.document_ids import document_id
from transforms.import_interleaved import KINDS as INTERLEAVED_KINDS
from transforms.import_interleaved import ListInterleavedFn

STAGE = "ingest"
_LOG = logging.getLogger(__name__)
_LISTED_TWICE = beam.metrics.Metrics.counter(STAGE, "listed_twice")
_INVALID_TEXT = beam.metrics.Metrics.counter(STAGE, "invalid_text_replaced")
_IGNORED = beam.metrics.Metrics.counter(STAGE, "ignored")
_EARLIER_OUTPUT_FILES = beam.metrics.Metrics.counter(STAGE, "earlier_output_files")


class IngestOutputs(NamedTuple):
    items: beam.PCollection
    rejected: beam.PCollection
    texts: beam.PCollection


class ReadInputs(beam.PTransform):
    """List every configured input and read each item's bytes and sidecar.

    Text rows (``TextRow``: a manifest row with no image path but a ``documents.id_field`` value, or an imported
    MMC4/OBELICS text) are not items: they leave in ``IngestOutputs.texts`` for the documents stage. An item the
    read rejects or fails names its document (``documents``: the id field or a grouping rule) in its ledger row, so
    the documents stage lists it among the images that left.

    ``output``: the run's output folder. A file or tar pattern that lists it (``--input photos --output
    photos/out``) does not list the files unishard wrote there: they are not inputs.
    """

    def __init__(self, config: IngestConfig, documents: DocumentsConfig | None = None, output: str | None = None):
        super().__init__()
        self._config = config
        self._documents = documents
        self._output = output

    def expand(self, pbegin: beam.pvalue.PBegin):
        listed, dropped, texts, matched = [], [], [], []
        own = own_output(self._output)
        for index, spec in enumerate(distinct_inputs(self._config.inputs)):
            kind = input_kind(spec)
            label = f"Input{index}"
            start = pbegin | f"{label}Spec" >> beam.Create([spec])
            if kind == "manifest" and (column := parquet_image_column(spec)):
                # Images inside the rows: ingest's read reads a row group at a time, so no bytes cross a shuffle.
                listed.append(start | f"{label}RowGroups" >> beam.FlatMap(row_groups, column))
                continue
            if kind in ("manifest", *INTERLEAVED_KINDS):
                if kind == "manifest":
                    lister = _ListManifestFn(self._config, self._documents)
                else:
                    lister = ListInterleavedFn(self._config)
                rows, bad = apply_stage(start, f"{label}Manifest", lister)
                items, text_rows = rows | f"{label}TextRows" >> beam.Partition(_is_text_row, 2)
                dropped.append(bad)
                texts.append(text_rows)
            elif kind == "webdataset":
                items = (
                    start
                    | f"{label}Pattern" >> beam.Map(input_pattern)
                    | f"{label}Match" >> fileio.MatchAll()
                    | f"{label}NotOutput" >> beam.Filter(outside, own)
                    | f"{label}NotIgnored" >> beam.Filter(_listed, spec, self._config.ignore)
                    | f"{label}Members" >> beam.FlatMap(tar_items, spec, self._config)
                )
            else:
                matched_files = (
                    start | f"{label}Pattern" >> beam.Map(input_pattern) | f"{label}Match" >> fileio.MatchAll()
                )
                linked = start | f"{label}LinkedFolders" >> beam.FlatMap(linked_files, self._config)
                found = (matched_files, linked) | f"{label}WithLinkedFolders" >> beam.Flatten()
                earlier = found | f"{label}EarlierOutputs" >> beam.FlatMap(_earlier_output)
                files, tables = (
                    found
                    | f"{label}NotOutput" >> beam.Filter(outside, own, beam.pvalue.AsList(earlier))
                    | f"{label}NotIgnored" >> beam.Filter(_listed, spec, self._config.ignore)
                    | f"{label}FolderMetadata" >> beam.Partition(_is_table, 2, lists_folders(spec))
                )
                rows = tables | f"{label}MetadataRows" >> beam.ParDo(
                    FolderRowsFn(spec, self._config, top_folder(spec))
                ).with_outputs(FolderRowsFn.REJECTED_TAG, main="rows")
                items = (
                    (files | f"{label}Stems" >> beam.Map(stem_key), rows.rows)
                    | f"{label}StemsAndRows" >> beam.Flatten()
                    # Paths only: an image meets its sidecars (any case) and the metadata file row naming it, and a
                    # sidecar no image takes, or a row, is seen.
                    | f"{label}GroupStems" >> beam.GroupByKey()
                    | f"{label}Files" >> beam.FlatMap(stem_items_with_rows, spec, self._config)
                )
                # Beam's matching skips a link whose target is gone and linked folders: listed here, rejected on read.
                links = start | f"{label}BrokenLinks" >> beam.FlatMap(broken_links, self._config, self._output)
                items = (items, links, rows[FolderRowsFn.REJECTED_TAG]) | f"{label}WithBrokenLinks" >> beam.Flatten()
            if kind in ("files", "webdataset"):
                matched.append((index, items))
            else:
                listed.append(items)
        if len(matched) > 1:
            # Patterns can overlap (a folder and a pattern inside it): a file is one item, listed by the first.
            listed.append(
                [
                    items | f"Input{index}BySource" >> beam.Map(lambda item, i=index: (item.source, (i, item)))
                    for index, items in matched
                ]
                | "FlattenMatched" >> beam.Flatten()
                | "GroupSources" >> beam.GroupByKey()
                | "FirstListing" >> beam.MapTuple(_first_listing)
            )
        else:
            listed += [items for _, items in matched]
        items = (
            listed
            | "FlattenListed" >> beam.Flatten(pipeline=pbegin.pipeline)
            | "Spread" >> beam.Reshuffle()
            | "CountItems" >> beam.Map(_count)
        )
        read, bad = apply_stage(items, "Read", _ReadFn(self._config, self._documents))
        rejected_rows = [*dropped, bad] | "FlattenRejected" >> beam.Flatten()
        text_rows = texts | "FlattenTextRows" >> beam.Flatten(pipeline=pbegin.pipeline)
        return IngestOutputs(items=read, rejected=rejected_rows, texts=text_rows)


def distinct_inputs(inputs: list[InputSpec]) -> list[InputSpec]:
    """``inputs`` without a repeated path: the first spec of a path lists it (``--input a --input a``)."""
    seen, kept = set(), []
    for spec in inputs:
        if spec.path in seen:
            _LOG.warning("input %s is given twice; its first entry applies", spec.path)
            continue
        seen.add(spec.path)
        kept.append(spec)
    return kept


def _first_listing(source: str, listings: Iterable[tuple[int, InputItem]]) -> InputItem:
    ordered = sorted(listings, key=lambda listing: listing[0])
    if len(ordered) > 1:
        _LISTED_TWICE.inc()
        numbers = ", ".join(str(index + 1) for index, _ in ordered)  # as a person counts the --input flags
        _LOG.warning(
            "%s is listed by inputs %s (counted from 1); input %d's settings apply", source, numbers, ordered[0][0] + 1
        )
    return ordered[0][1]


def outside(metadata: FileMetadata, own: Sequence[EarlierOutput], earlier: Sequence[EarlierOutput] = ()) -> bool:
    """Whether a matched file is no file unishard wrote: not one of the run's own output (``own``: its record, lock
    and staging, ``own_output``) nor of an ``earlier`` unishard output found in the same listing. A photo a person
    put into the output folder is an input; before, every file under the output was skipped without a ledger row."""
    if written_earlier(metadata.path, [*own, *earlier]):
        _EARLIER_OUTPUT_FILES.inc()
        return False
    return True


def own_output(output: str | None) -> list[EarlierOutput]:
    """The run's own output folder as ``written_earlier`` takes it: the files its record lists (none before a first
    run), its lock and its staging."""
    if not output:
        return []
    for marker in (MANIFEST, LEGACY_MARKER):
        if FileSystems.exists(join(output, marker)):
            return list(earlier_output(join(output, marker)))
    return [EarlierOutput(output, frozenset())]


def _earlier_output(metadata: FileMetadata) -> Iterator[EarlierOutput]:
    for found in earlier_output(metadata.path):
        _LOG.warning(
            "%s holds an earlier unishard output: the files it wrote there are not inputs (move it out of the input "
            "folder to silence this)",
            found.root,
        )
        yield found


def _listed(metadata: FileMetadata, spec: InputSpec, ignore: list[str]) -> bool:
    """Whether a matched file is an input: ``ingest.ignore`` names none of the folders on its way, nor the file."""
    if not_ignored(metadata.path, spec, ignore):
        return True
    _IGNORED.inc()
    return False


def _is_table(found: FileMetadata, partitions: int, whole_folders: bool) -> int:
    return int(is_folder_metadata(found, whole_folders))


def _is_text_row(element: InputItem | TextRow, partitions: int) -> int:
    return int(isinstance(element, TextRow))


_ITEMS = beam.metrics.Metrics.counter(STAGE, "items")


def _count(item: "InputItem | RowGroup") -> "InputItem | RowGroup":
    _ITEMS.inc(item.rows if isinstance(item, RowGroup) else 1)
    return item


def _head(path: str, size: int = 65536) -> bytes:
    """The first ``size`` bytes of a file, or none where it cannot be read (its row then says what the listing
    found)."""
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            return handle.read(size)
    except Exception:  # noqa: BLE001 - a gone or unreadable file keeps the listing's own message
        return b""


def with_document(output: Any, metadata: Mapping[str, Any], domain: str, documents: DocumentsConfig | None) -> Any:
    """``output``; a rejected or failed row names the document ``metadata`` puts its item in, so the documents stage
    lists the image among those that left it (a missing file, a path outside the roots)."""
    if documents is None or not isinstance(output, pvalue.TaggedOutput):
        return output
    found = document_id(metadata, domain, documents)
    return output if found is None else pvalue.TaggedOutput(output.tag, replace(output.value, document_id=found[0]))


class _ListManifestFn(StageFn):
    """Expand one manifest into one ``InputItem`` per row; a row's problems reject that row only."""

    stage = STAGE

    def __init__(self, config: IngestConfig, documents: DocumentsConfig | None = None):
        super().__init__()
        self._config = config
        self._documents = documents
        self._text_rows_field = documents and documents.id_field

    def process(self, spec: InputSpec) -> Iterable[Any]:
        # One manifest yields many items; a bad row must reject that row, not the manifest.
        number = 0
        try:
            for number, row in enumerate(manifest_rows(spec.path), start=1):
                domain = str(row.get(self._config.domain_column) or spec.domain or self._config.default_domain)
                outputs = super().process(ManifestRow(spec, number, row))
                yield from (with_document(output, row, domain, self._documents) for output in outputs)
        except Exception as error:  # noqa: BLE001 - a manifest that stops reading is a ledger row, not a crashed run
            why = f"reading stopped after {number} rows: {type(error).__name__}: {error}; no later row was read"
            yield from super().process(ManifestRow(spec, number + 1, {"__error__": why}))

    def apply(self, row: "ManifestRow") -> Iterator[InputItem]:
        spec, values = row.spec, finite(row.values)
        if "__error__" in values:
            raise RejectItem(reasons.MALFORMED_MANIFEST_ROW, f"{spec.path}: {values['__error__']}")
        column = image_column(values, spec.path_column) or spec.path_column
        value = values.get(column)
        if not value and self._text_rows_field and not blank(values.get(self._text_rows_field)):
            metadata = {k: v for k, v in values.items() if k != column and not blank(v)}
            domain = str(metadata.pop(self._config.domain_column, "") or spec.domain or self._config.default_domain)
            yield TextRow(source=row.source, domain=domain, metadata=metadata)
            return
        if column not in values:
            advice = (
                f'name the image path column {spec.path_column!r}, or give the input path_column = "NAME" in a '
                "config file's [[ingest.inputs]] entry"
            )
            if isinstance(values.get("data"), dict) and "annotations" in values:
                advice = (
                    "this is a task of Label Studio's own JSON export, whose images live on its server: export the "
                    "project as COCO (images with their annotations), copy the images beside the file, and give that"
                )
            raise RejectItem(
                reasons.MALFORMED_MANIFEST_ROW,
                f"{spec.path} row {row.number} has no {spec.path_column!r} or {NAME_COLUMN!r} column "
                f"(it has {sorted(map(str, values))}); {advice}",
            )
        if not value:
            raise RejectItem(
                reasons.MALFORMED_MANIFEST_ROW,
                f"{spec.path} row {row.number} has no {column!r} value; every row needs an image path, except a "
                f"document's text row, which names its document in {self._text_rows_field or 'doc_id'!r}",
            )
        path = resolve_manifest_path(str(value), spec.path, spec.roots, self._config.follow_symlinks, spec.base)
        metadata = {k: v for k, v in values.items() if k != column and not blank(v)}
        if "://" in str(value) and not str(value).lower().startswith("file://") and "url" not in metadata:
            metadata["url"] = str(value)  # a web address read from its downloaded copy
        domain = str(metadata.pop(self._config.domain_column, "") or spec.domain or self._config.default_domain)
        roots = manifest_roots(spec.path, spec.roots, spec.base)
        yield InputItem(source=row.source, path=path, domain=domain, metadata=metadata, roots=roots)


class _ReadFn(StageFn):
    """Read an item's bytes (unless inline) and merge its sidecar metadata, each only if it leads into the roots."""

    stage = STAGE

    def __init__(self, config: IngestConfig, documents: DocumentsConfig | None = None):
        super().__init__()
        self._config = config
        self._documents = documents
        self._class_names: dict[str, dict[int, str]] = {}  # YOLO class names by labels folder

    def process(self, element: "InputItem | RowGroup") -> Iterable[Any]:
        # A Parquet manifest's rows holding their images: each row an item.
        items = group_rows(element, element.column) if isinstance(element, RowGroup) else (element,)
        for item in items:
            metadata = item.values if isinstance(item, EmbeddedRow) else item.metadata
            yield from (with_document(out, metadata, item.domain, self._documents) for out in super().process(item))

    def apply(self, item: "InputItem | EmbeddedRow") -> Iterator[InputItem]:
        if isinstance(item, EmbeddedRow):
            item = embedded_item(item, self._config)
        metadata = dict(item.metadata)
        if "__sidecar_error__" in metadata:
            raise RejectItem(reasons.MALFORMED_SIDECAR, f"{item.source}: {metadata['__sidecar_error__']}")
        if ORPHAN in metadata:
            raise RejectItem(reasons.ORPHAN_SIDECAR, coco_sidecar(item.path, _head(item.path)) or metadata[ORPHAN])
        if NO_IMAGE in metadata:
            raise RejectItem(reasons.MISSING_FILE, metadata[NO_IMAGE])
        if UNREADABLE in metadata:
            raise RejectItem(reasons.UNREADABLE_INPUT, metadata[UNREADABLE])
        if REJECTED in metadata:
            reason, detail = metadata[REJECTED]
            raise RejectItem(reason, **detail)
        follow = self._config.follow_symlinks
        if item.roots and item.data is None:
            # Checked just before the read even when the listing checked it: a link can change in between.
            what = item.path if item.path == item.source else f"path {item.path} of {item.source}"
            confine(item.path, item.roots, follow, what)
        if item.sidecar is not None:
            extensions = self._config.sidecar_extensions
            suffixes = item.sidecar_suffixes or present_sidecars(item.sidecar, extensions, item.path)
            metadata.update(read_sidecar(item.sidecar, suffixes, item.roots, follow))
        if ANNOTATION in metadata:
            annotation = metadata.pop(ANNOTATION)
            confine(annotation, item.roots, follow, f"annotation file {annotation} of {item.source}")
            found = read_annotation(annotation, read_bytes(annotation)[0], self._class_names)
            if "objects" in found and "objects" not in metadata:
                metadata[BOXES_FROM] = printable(annotation)  # normalise clips its boxes to the image, noting it
            for key, value in found.items():
                metadata.setdefault(key, value)  # a sidecar or metadata row wins
        if FOLDER in metadata:  # the folder's name, the last resort: a sidecar, row or annotation wins
            metadata.setdefault(self._config.folder_field, metadata.pop(FOLDER))
        domain = str(metadata.pop(self._config.domain_column, "") or item.domain)
        if item.data is not None:
            data, attempts = item.data, 0
        elif item.member is not None:
            data, attempts = read_member(item.path, *item.member), 1
        else:
            data, attempts = read_bytes(item.path, listed=item.source == item.path)
        if attempts > 1:
            metadata["read_attempts"] = attempts
        metadata, replaced = valid_text(finite(metadata))
        if replaced:
            _INVALID_TEXT.inc(replaced)
            _LOG.warning(
                "%s: its metadata held %d lone UTF-16 surrogate(s) (JSON's \\udXXX without its pair, such as half an "
                "emoji); each was replaced by U+FFFD. Fix the exporter that wrote it to keep the text whole",
                item.source,
                replaced,
            )
        yield InputItem(item.source, item.path, domain, metadata, data, None, member=item.member)
