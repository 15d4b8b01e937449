"""Listing ingest's inputs: an input's kind, its roots, a manifest's rows, a folder's files, a tar's samples, and a
cheap count before a run.

``transforms.ingest.ReadInputs`` runs these on workers; the launcher only calls ``input_kind`` and ``count_items``.
A manifest row's path is resolved and checked against the input's roots here (``resolve_manifest_path``, reason
``outside_root``), before the item exists. No Beam pipeline (Beam's ``FileSystems`` for reading).
"""

import csv
import fnmatch
import io
import itertools
import json
import os
import posixpath
import re
import tarfile
import unicodedata
import urllib.parse
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.filesystems import FileSystems
from PIL import Image

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from schemas.records.values import printable
from transforms._annotation_files import ANNOTATION, annotation_of, is_class_names, twin_stem
from transforms._coco import coco_rows, is_coco
from transforms._confine import OPT_IN, confine, from_file_url, within
from transforms._io import fixed_part, literal
from transforms._reading import TAKEOUT_TAG, bom_encoding, caption_text, not_text
from transforms.import_interleaved import KINDS as INTERLEAVED_KINDS

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".parquet")
WEBDATASET_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")  # tarfile opens each compression
TEXT_MEMBERS = ("json", "txt", "cls")  # the WebDataset members that are not the image (by their last suffix)
UNREADABLE = "__unreadable__"  # metadata key of a tar that breaks off or is not a tar: ingest's read rejects it
NO_IMAGE = "__no_image__"  # metadata key of an item with no image (a tar sample, a broken link): read rejects it
CSV_DELIMITERS = (",", ";", "\t", "|")
CSV_FIELD_LIMIT = 2**31 - 1  # bytes of one CSV field: the largest the csv module takes everywhere
_NOT_UTF8 = re.compile("[\udc80-\udcff]")
_NOT_UTF8_ADVICE = "is not UTF-8 text (a legacy encoding such as Windows-1252?); save the manifest as UTF-8"
FOLDER = "__folder__"  # metadata key of an image's folder name: ingest's read gives it ingest.folder_field, last
REJECTED = "__rejected__"  # metadata key of an item that is a rejection already, [reason, detail]: read raises it
EXCEL_SEPARATOR = re.compile(r"sep=(.)", re.IGNORECASE)
ORPHAN = "__orphan_sidecar__"  # metadata key of a sidecar no image takes: ingest's read rejects it
# What a sidecar named after its image's whole name (photo.jpg.json: Google Takeout, gallery-dl) may end in before its
# own extension: every extension Pillow (and its HEIF plugin) knows.
IMAGE_SUFFIXES = frozenset({*(ext.lower() for ext in Image.registered_extensions()), ".heic", ".heif", ".avif"})


def input_kind(spec: InputSpec) -> str:
    """Resolve ``kind = "auto"`` from the path's suffix."""
    if spec.kind != "auto":
        return spec.kind
    lowered = spec.path.lower()
    if lowered.endswith(".json") and fixed_part(spec.path) != spec.path and not os.path.isfile(spec.path):
        return "files"  # a pattern of JSON files: sidecars, not a manifest
    if lowered.endswith(MANIFEST_SUFFIXES):
        return "manifest"
    if lowered.endswith(WEBDATASET_SUFFIXES):
        return "webdataset"
    return "files"


def input_pattern(spec: InputSpec) -> str:
    """The Beam file pattern an input's path stands for.

    A local path that exists is taken literally (a folder named ``Fotos [2024]`` holds no wildcard), and a local
    folder of files stands for every file below it. Any other path is a pattern (``photos/*.jpg``, ``gs://...``).
    """
    path = spec.path
    if "://" in path or not os.path.lexists(path):
        return path
    if input_kind(spec) == "files" and os.path.isdir(path):
        return os.path.join(literal(path), "**")
    return literal(path)


class ManifestRow(NamedTuple):
    """One row of a manifest on its way to becoming an item (or a ledger row: it has a ``source`` and ``domain``)."""

    spec: InputSpec
    number: int
    values: dict[str, Any]
    column: str = ""  # the column holding the row's image, where the row holds one

    @property
    def source(self) -> str:
        return f"{self.spec.path}#{self.number}"

    @property
    def domain(self) -> str:
        return self.spec.domain or ""


def lists_folders(spec: InputSpec) -> bool:
    """Whether a file pattern lists whole folders (``photos``, ``photos/*``, ``photos/**``), not chosen files."""
    return posixpath.basename(input_pattern(spec).replace(os.sep, "/")) in ("*", "**")


def top_folder(spec: InputSpec) -> str:
    """The folder every match of ``spec`` lies below: a local folder itself, a local file's folder, else the folder
    before the pattern's first wildcard."""
    path = spec.path
    if "://" not in path and os.path.isdir(path):
        return os.path.dirname(os.path.join(path, ""))
    if "://" not in path and os.path.lexists(path):
        return os.path.dirname(path)
    head = fixed_part(path)
    return posixpath.dirname(head) if "://" in head else os.path.dirname(head)


def not_ignored(path: str, spec: InputSpec, patterns: Iterable[str]) -> bool:
    """Whether no name on the way from the input's top folder to ``path`` (the file's own included) matches one of
    ``patterns`` (``ingest.ignore``, whatever the case)."""
    if not patterns:
        return True
    top = top_folder(spec).rstrip("/")
    relative = path[len(top) :] if path.startswith(f"{top}/") else posixpath.basename(path)
    names = [name.lower() for name in relative.split("/") if name]
    return not any(fnmatch.fnmatchcase(name, pattern.lower()) for name in names for pattern in patterns)


def pattern_roots(spec: InputSpec) -> tuple[str, ...]:
    """The roots of a file pattern's matches: the input's ``roots``, else the folder before its first wildcard."""
    return tuple(spec.roots) or (top_folder(spec),)


def stem_key(metadata: FileMetadata) -> tuple[bytes, bytes]:
    """``(stem, path)`` of a matched file, as bytes: an image and its sidecars share the stem (the path without its
    extension and without the image extensions before it: ``photo.jpg``, ``photo.jpg.json`` as Google Takeout names
    it, ``banner.jpg.webp`` and its ``banner.jpg.txt`` are all ``photo`` or ``banner``). Bytes, because a file name
    need not be UTF-8 text and Beam's string coder takes only that."""
    stem = named_after(metadata.path)
    while _image_named(stem):
        stem = posixpath.splitext(stem)[0]
    stem = twin_stem(metadata.path) or stem  # a YOLO or VOC file in a twin folder meets the image it describes
    # In one Unicode form, so a sidecar named in another form than its image (macOS writes names decomposed) meets it.
    stem = unicodedata.normalize("NFC", stem)
    return stem.encode("utf-8", "surrogateescape"), metadata.path.encode("utf-8", "surrogateescape")


def _image_named(name: str) -> bool:
    return posixpath.splitext(name)[1].lower() in IMAGE_SUFFIXES


def named_after(path: str) -> str:
    """The name a sidecar is named after: its path without its extension, and without Google Takeout's
    ``.supplemental-metadata`` tag (or the start of it, as Takeout cuts long names) after an image's whole name."""
    named = posixpath.splitext(path)[0]
    image, tag = posixpath.splitext(named)
    return image if len(tag) > 1 and TAKEOUT_TAG.startswith(tag[1:].lower()) and _image_named(image) else named


def stem_items(group: tuple[bytes, Iterable[bytes]], spec: InputSpec, config: IngestConfig) -> Iterator[InputItem]:
    """The items of the matched files that share one stem.

    Each image is an item that knows its sidecars, for each of ``ingest.sidecar_extensions`` whatever its case: the
    first file, in sorted order, named after the image's whole name (``a.jpg.json``, as Google Takeout and gallery-dl
    write them), then the first named after the stem (``a.json``; ``a.TXT`` is ``a.jpg``'s caption). When the pattern
    does not list whole folders (``photos/*.jpg``, one file) and matched no sidecar, the item keeps its stem with no
    suffixes: ingest's read looks for the sidecars by name. A sidecar no image takes (no image has its name, or
    another file of the same kind is taken) is an item too, marked ``ORPHAN``: ingest's read rejects it as
    ``orphan_sidecar``, so text that reaches no sample is in the ledger, not silently skipped. So is an annotation
    file (``transforms._annotation_files``: YOLO, Pascal VOC) no image takes; one that an image takes is marked on it
    (``ANNOTATION``) for ingest's read. With ``ingest.folder_field`` each image carries its folder's name.
    """
    stem = group[0].decode("utf-8", "surrogateescape")
    paths = sorted(path.decode("utf-8", "surrogateescape") for path in group[1])
    paths = [path for path in paths if not is_class_names(path)]  # data.yaml, classes.txt: read by the labels
    annotations = [path for path in paths if annotation_of(path, stem)]
    paths = [path for path in paths if path not in annotations]
    kinds = [ext.lower() for ext in config.sidecar_extensions]
    sidecars = [path for path in paths if posixpath.splitext(path)[1].lower() in kinds]
    images = [path for path in paths if path not in sidecars]
    own = {
        image: _first_of_each_kind([p for p in sidecars if named_after(p).lower() == image.lower()], kinds)
        for image in images
    }
    whole_named = {path for image in images for path in sidecars if named_after(path).lower() == image.lower()}
    # Named after an image's stem (a.json for a.jpg and a.png; banner.jpg.txt for banner.jpg.webp): every image with
    # that stem takes the first of each kind, unless the file is named after another image's whole name.
    stems = {image: posixpath.splitext(image)[0] for image in images}
    taken = {
        name: _first_of_each_kind(
            [p for p in sidecars if posixpath.splitext(p)[0] == name and p not in whole_named], kinds
        )
        for name in set(stems.values())
    }
    domain, roots = spec.domain or config.default_domain, pattern_roots(spec)
    # A pattern such as photos/*.jpg, or one file, matches no sidecar: ingest's read then looks for one by name.
    whole = lists_folders(spec)
    for image in images:
        mine = [*own[image], *taken[stems[image]]]
        suffixes = tuple(path[len(stems[image]) :] for path in mine)
        sidecar = stems[image] if mine or not whole else None
        metadata = {FOLDER: folder_name(image)} if config.folder_field else {}
        if annotations:
            metadata[ANNOTATION] = annotations[0]
        yield InputItem(
            printable(image), image, domain, metadata, sidecar=sidecar, roots=roots, sidecar_suffixes=suffixes
        )
    if not images:
        for path in annotations:
            shown = printable(path)
            image = f"{printable(posixpath.basename(stem))}.<image extension>"
            message = (
                f"annotation file {shown}: no image named {image} is in {printable(_folder(stem))}, so its labels "
                "reach no image; restore the image or remove the annotation file"
            )
            yield InputItem(shown, path, domain, metadata={ORPHAN: message}, roots=roots)
    used = {path for chosen in [*own.values(), *taken.values()] for path in chosen}
    for path in sidecars:
        if path in used:
            continue
        named = named_after(path)
        whole_owners = [image for image in images if image.lower() == named.lower()]
        stem_owners = [image for image in images if stems[image] == named]
        if whole_owners or stem_owners:
            owner = (whole_owners or stem_owners)[0]
            given = own[owner] if whole_owners else taken[named]
            why = (
                f"{printable(posixpath.basename(owner))} already takes a sidecar of this kind "
                f"({', '.join(printable(posixpath.basename(p)) for p in given)}); merge the two files into one"
            )
        elif spelled := [image for image in images if _nfc(stems[image]) == _nfc(named)]:
            why = (
                f"its name and the image {printable(posixpath.basename(spelled[0]))}'s differ only in how their "
                "letters are encoded (Unicode NFC and NFD: macOS writes names decomposed), so they do not pair; "
                "rename one of them by typing its name again"
            )
        elif named == stem:
            why = (
                f"no image named {printable(posixpath.basename(stem))}.<image extension> sits beside it, so its text "
                f"reaches no sample; name it like its image (photo.jpg takes photo.txt and photo.json) or move it "
                "out of the input"
            )
        else:
            image = printable(posixpath.basename(named))
            why = f"no image named {image} or {image}.<image extension> sits beside it, so its text reaches no sample"
        shown = printable(path)
        yield InputItem(shown, path, domain, metadata={ORPHAN: f"sidecar {shown}: {why}"}, roots=roots)


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def folder_name(path: str) -> str:
    """The name of the folder a matched file lies in (``photos/scratches/a.jpg``: ``scratches``)."""
    parent = posixpath.dirname(path) if "://" in path else os.path.dirname(path)
    return printable(posixpath.basename(parent.replace(os.sep, "/").rstrip("/")))


def _first_of_each_kind(sidecars: list[str], kinds: list[str]) -> list[str]:
    """The first of ``sidecars`` (sorted) with each extension of ``kinds``, in the order of ``kinds``."""
    firsts = ([path for path in sidecars if posixpath.splitext(path)[1].lower() == kind][:1] for kind in kinds)
    return [path for first in firsts for path in first]


def broken_links(spec: InputSpec, config: IngestConfig, output: str | None = None) -> Iterator[InputItem]:
    """The symbolic links a local file pattern matches that Beam's matching skips, as items read rejects.

    Beam's matching walks the same folders but skips a file it cannot size, and never enters a linked folder, so a
    photo whose link went stale (a moved share, a deleted original) or a folder linked in from elsewhere would leave
    no trace. A link whose target does not exist is ``missing_file``; a linked folder leading out of the input's
    folder is one ``outside_root`` item naming it, unless ``ingest.follow_symlinks`` (then ``linked_files`` lists
    its files; a linked folder inside the input is listed under its own name). Matched as Beam matches (the folder
    before the first wildcard, walked without following links, and Beam's translation of the pattern); links under
    the run's ``output`` are not inputs.
    """
    pattern = input_pattern(spec)
    one_file = not os.path.isdir(spec.path) and (os.path.lexists(spec.path) or fixed_part(pattern) == pattern)
    if "://" in pattern or one_file:
        return
    matches = re.compile(FileSystem.translate_pattern(pattern)).match
    domain, roots = spec.domain or config.default_domain, pattern_roots(spec)
    top = top_folder(spec)
    real_top = os.path.realpath(top)

    def listed(path: str) -> bool:
        return outside_output(path, output) and not_ignored(path, spec, config.ignore)

    # Only the links are held (a folder of millions of files is walked, not kept), sorted for a stable order.
    broken, folders = [], []
    for folder, subfolders, names in os.walk(top):
        for path in (os.path.join(folder, name) for name in names):
            if os.path.islink(path) and not os.path.exists(path) and matches(path) and listed(path):
                broken.append(path)
        for path in (os.path.join(folder, name) for name in subfolders):
            inside = matches(os.path.join(path, "x.jpg"))  # the pattern lists its files (photos/*.jpg does not)
            if inside and os.path.islink(path) and not within(os.path.realpath(path), real_top) and listed(path):
                folders.append(path)
    for path in sorted(broken):
        shown = printable(path)
        message = (
            f"{shown} is a symbolic link to {printable(os.readlink(path))}, which does not exist; restore the file "
            "or remove the link"
        )
        yield InputItem(shown, path, domain, metadata={NO_IMAGE: message}, roots=roots)
    if config.follow_symlinks:
        return
    for path in sorted(folders):
        shown, target = printable(path), printable(os.path.realpath(path))
        message = (
            f"{shown} is a symbolic link to the folder {target}, outside the input {printable(top)}: its files are "
            f"not read. Set {OPT_IN} to read them, or give {target} as an input of its own"
        )
        detail = {"message": message, "path": shown, "resolved": target}
        yield InputItem(shown, path, domain, metadata={REJECTED: [reasons.OUTSIDE_ROOT, detail]}, roots=roots)


def linked_files(spec: InputSpec, config: IngestConfig) -> Iterator[FileMetadata]:
    """With ``ingest.follow_symlinks``, the files a local file pattern matches inside folders linked in from outside
    its folder, named through the link (Beam's matching never enters a linked folder). A folder reached twice (a
    link loop, two links to one place) is listed once, under the first name in sorted order."""
    pattern, top = input_pattern(spec), top_folder(spec)
    if not config.follow_symlinks or "://" in pattern or not os.path.isdir(top):
        return
    matches = re.compile(FileSystem.translate_pattern(pattern)).match
    real_top, seen = os.path.realpath(top), set()

    def walk(folder: str, linked: bool) -> Iterator[FileMetadata]:
        real = os.path.realpath(folder)
        if linked and (real in seen or within(real, real_top)):
            return
        seen.add(real)
        for entry in sorted(os.scandir(folder), key=lambda entry: entry.name):
            if entry.is_dir():  # follows links
                yield from walk(entry.path, linked or entry.is_symlink())
            elif linked and entry.is_file() and matches(entry.path):
                stat = entry.stat()
                yield FileMetadata(entry.path, stat.st_size, stat.st_mtime)

    yield from walk(top, False)


def outside_output(path: str, output: str | None) -> bool:
    """Whether ``path`` lies outside the run's ``output`` folder (always, without one)."""
    if not output:
        return True
    folder = output.rstrip("/")
    if "://" in path or "://" in folder:
        return not (path == folder or path.startswith(f"{folder}/"))
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return not (path == folder or path.startswith(os.path.join(folder, "")))


def manifest_roots(manifest: str, roots: list[str], base: str | None = None) -> tuple[str, ...]:
    """The roots of a manifest's rows: the input's ``roots``, else its ``base``, else the manifest's own folder."""
    return tuple(roots) or (base or _folder(manifest),)


def _folder(path: str) -> str:
    return posixpath.dirname(path) if "://" in path else os.path.dirname(path)


def resolve_manifest_path(
    value: str, manifest: str, roots: list[str], follow_symlinks: bool = False, base: str | None = None
) -> str:
    """Resolve a manifest's ``path`` value against ``base`` (default: the manifest's folder) and check it leads into
    ``roots``.

    A ``file://`` value is a local path (``transforms._confine``); symbolic links are resolved for the check unless
    ``follow_symlinks``. A local path written with Windows separators (``images\\a.jpg``, a manifest made on
    Windows) is read as ``images/a.jpg`` when only that file exists (``\\`` is a valid character of a file name
    here). Returns the normalised path, not the link's target.

    Raises:
        RejectItem: ``outside_root`` when the path leads out of every root (it is never read).
    """
    base = base or _folder(manifest)
    local = from_file_url(value)
    if urllib.parse.urlparse(local).scheme.lower() in ("http", "https"):
        joined = _downloaded_copy(local, base, manifest)
    elif "://" in local:
        joined = local
    else:
        joined = posixpath.join(base, local) if "://" in base else os.path.join(base, local)
        windows = os.path.join(base, local.replace("\\", "/"))
        if "\\" in local and "://" not in base and not os.path.lexists(joined) and os.path.lexists(windows):
            joined = windows
    return confine(joined, manifest_roots(manifest, roots, base), follow_symlinks, f"path {value!r} in {manifest}")


def _downloaded_copy(url: str, base: str, manifest: str) -> str:
    """The file named as ``url``'s last segment in ``base`` (a copy downloaded beside the manifest).

    Raises:
        RejectItem: ``web_url`` when there is none: unishard reads files, it does not download.
    """
    name = urllib.parse.unquote(posixpath.basename(urllib.parse.urlparse(url).path))
    copy = (posixpath.join(base, name) if "://" in base else os.path.join(base, name)) if name else ""
    if copy and FileSystems.exists(copy):
        return copy
    raise RejectItem(
        reasons.WEB_URL,
        f"{url} (in {manifest}) is a web address and no downloaded copy named {name or '(none)'!r} is in {base}: "
        "unishard reads files, it does not download. Download the images first (img2dataset writes WebDataset "
        "tars, an input here), or save each beside the manifest under its address's last name",
    )


def manifest_rows(path: str) -> Iterator[dict[str, Any]]:
    """The rows of a CSV, JSON Lines, JSON or Parquet manifest as dicts; a row that cannot be one yields
    ``{"__error__": why}``: a JSON line that is not an object, or text that is not UTF-8.

    Text is UTF-8, with or without a byte-order mark (Excel's "CSV UTF-8" writes one), or UTF-16 or UTF-32 with one
    (PowerShell's ``Out-File``, Excel's "Unicode Text"). A CSV's delimiter is the
    one of ``,`` ``;`` tab ``|`` its header line holds most of (a comma when it holds none): Excel writes ``;``
    where the decimal mark is a comma. A first line ``sep=X``, which Excel writes and reads, names it instead; column
    names are read without the spaces around them.
    """
    lowered = path.lower()
    if lowered.endswith(".parquet"):
        import pyarrow.parquet as pq

        with FileSystems.open(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches():
                yield from batch.to_pylist()
    elif lowered.endswith(".jsonl"):
        with FileSystems.open(path) as handle:
            yield from _json_lines(_text(handle))
    elif lowered.endswith(".json"):
        with FileSystems.open(path) as handle:
            yield from _json_rows(_text(handle).read(), printable(path))
    else:
        with FileSystems.open(path) as handle:
            text = _text(handle, newline="")
            header = text.readline()
            counts = {mark: header.count(mark) for mark in CSV_DELIMITERS}
            delimiter = max(CSV_DELIMITERS, key=lambda mark: counts[mark]) if any(counts.values()) else ","
            if named := EXCEL_SEPARATOR.fullmatch(header.rstrip("\r\n")):  # Excel's "sep=;" line names it
                delimiter, header = named.group(1), text.readline()
            # A product description or an HTML export can pass the csv module's 128 KB default for one field.
            csv.field_size_limit(CSV_FIELD_LIMIT)
            yield from _csv_rows(header, text, delimiter)


class _Lines:
    """An iterator of text lines that counts them and keeps those of the row being read (``row``)."""

    def __init__(self, lines: Iterator[str], number: int = 0):
        self._lines, self.number, self.row = lines, number, []

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.number += 1
        self.row.append(line)
        return line

    def start(self) -> int:
        """The index in ``row`` of the row's first line: the csv module skips blank lines before a row."""
        return next((index for index, line in enumerate(self.row) if line.strip()), 0)


def _csv_rows(header: str, text: Iterator[str], delimiter: str) -> Iterator[dict[str, Any]]:
    """The rows under a CSV ``header`` line, each a dict, or ``{"__error__": why}`` for a row that cannot be one.

    The csv module reads strictly: a double quote that never closes would otherwise swallow every later line into
    one value, and the images those lines name would vanish from the run. A row it cannot read is an error naming its
    line, and reading starts again at the line after that row's first.
    """
    columns = [name.strip() for name in next(csv.reader([header], delimiter=delimiter), [])]
    lines, number = _Lines(iter(text), 1), 0
    while True:
        reader = csv.DictReader(lines, fieldnames=columns, delimiter=delimiter, strict=True)
        try:
            for row in reader:
                number += 1
                first = lines.number - len(lines.row) + 1 + lines.start()
                lines.row = []
                if None in row:  # the fields past the header's columns
                    yield {"__error__": _surplus_fields(number, first, len(columns), row, delimiter)}
                elif any(_NOT_UTF8.search(str(value)) for pair in row.items() for value in pair):
                    yield {"__error__": f"row {number} {_NOT_UTF8_ADVICE} (in Excel: CSV UTF-8)"}
                else:
                    yield row
            return
        except csv.Error as error:
            number += 1
            start = lines.start()
            first, rest = lines.number - len(lines.row) + 1 + start, lines.row[start + 1 :]
            yield {"__error__": _unreadable_row(number, first, lines.number, str(error))}
            if not lines.row:  # nothing read, so nothing to read again
                return
            lines = _Lines(itertools.chain(rest, lines), first)


def _surplus_fields(number: int, line: int, columns: int, row: dict, delimiter: str) -> str:
    return (
        f"row {number} (line {line}) has {columns + len(row[None])} fields, the header {columns}: a value that "
        f'holds the delimiter {delimiter!r} must be in double quotes ("red{delimiter} white and blue"); quote it, '
        "or fix the row"
    )


def _unreadable_row(number: int, first: int, last: int, error: str) -> str:
    if error == "unexpected end of data":
        return (
            f"row {number} (line {first}) opens a double quote that never closes, so "
            + (
                f"lines {first} to {last} read as one value; the lines after line {first} were read again as rows. "
                if last > first
                else "it reads to the end of the file. "
            )
            + 'Close the quote, or write a double quote inside a value as two ("12"" pipe")'
        )
    return (
        f"row {number} (line {first}) cannot be read as CSV ({error}): a value in double quotes must end at its "
        'closing quote; write a double quote inside a value as two ("12"" pipe")'
    )


def _json_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if _NOT_UTF8.search(line):
            yield {"__error__": f"line {number} {_NOT_UTF8_ADVICE}"}
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            row = {"__error__": f"line {number} is not valid JSON: {error}"}
        yield row if isinstance(row, dict) else {"__error__": f"line {number} is not a JSON object"}


def _json_rows(text: str, path: str = "") -> Iterator[dict[str, Any]]:
    """The rows of a ``.json`` manifest: an array of objects, or an object whose one array holds them (an export's
    ``{"products": [...]}``), or a COCO annotation file (``transforms._coco``); JSON Lines saved as ``.json`` is read
    as such."""
    if _NOT_UTF8.search(text):
        yield {"__error__": f"the file {_NOT_UTF8_ADVICE}"}
        return
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as error:
        if error.msg == "Extra data":  # one object after another: JSON Lines
            yield from _json_lines(text.splitlines())
        else:
            yield {"__error__": f"the file is not valid JSON: {error}"}
        return
    if is_coco(loaded):
        yield from coco_rows(loaded, path)
        return
    arrays = [value for value in loaded.values() if isinstance(value, list)] if isinstance(loaded, dict) else []
    rows = loaded if isinstance(loaded, list) else arrays[0] if len(arrays) == 1 else None
    if rows is None:
        held = f"an object with keys {', '.join(sorted(loaded)[:8])}" if isinstance(loaded, dict) else "no array"
        yield {
            "__error__": f"the file holds {held}: a .json manifest is an array of objects, one per image with its "
            "path, or an object with one such array, or a COCO annotation file (images and annotations)"
        }
        return
    for number, row in enumerate(rows, start=1):
        yield row if isinstance(row, dict) else {"__error__": f"item {number} of the array is not a JSON object"}


def _text(handle, newline: str | None = None) -> io.TextIOWrapper:
    # UTF-16 and UTF-32 when a byte-order mark says so (PowerShell's Out-File, Excel's "Unicode Text"). Bytes that
    # are not UTF-8 become lone surrogates, so the row holding them is named instead of the manifest failing at the
    # first one.
    encoding = bom_encoding(handle.read(4)) or "utf-8-sig"
    handle.seek(0)
    return io.TextIOWrapper(handle, encoding=encoding, errors="surrogateescape", newline=newline)


def count_items(spec: InputSpec, limit: int) -> int:
    """How many items ``spec`` lists, counted up to ``limit``: a cheap look before a run, not the run's listing.

    Files count as matched (sidecars too), manifests and interleaved documents by rows (a document holds at least
    one image), WebDataset tars by sample keys.
    """
    kind = input_kind(spec)
    try:
        if kind == "manifest" and spec.path.lower().endswith(".parquet"):
            import pyarrow.parquet as pq

            with FileSystems.open(spec.path) as handle:  # the footer only: the rows may hold their images
                return min(limit, pq.ParquetFile(handle).metadata.num_rows)
        if kind in ("manifest", *INTERLEAVED_KINDS):
            return sum(1 for _ in itertools.islice(manifest_rows(spec.path), limit))
        matched = FileSystems.match([input_pattern(spec)], limits=[limit])[0].metadata_list
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
    except (OSError, ValueError, tarfile.TarError, UnicodeDecodeError, csv.Error):
        return 0  # the run itself reads this input and names what is wrong with it


def holds_no_rows(spec: InputSpec) -> bool:
    """Whether a manifest or interleaved-documents input reads without error and holds no row (an empty file, or
    only a header); anything it cannot read is for the run to name."""
    if input_kind(spec) not in ("manifest", *INTERLEAVED_KINDS):
        return False
    try:
        return count_items(spec, 1) == 0 and next(iter(manifest_rows(spec.path)), None) is None
    except (OSError, ValueError, UnicodeDecodeError, csv.Error):
        return False


def _is_text(ext: str) -> bool:
    """Whether a member with extension ``ext`` (``jpg``, ``txt``, ``caption.txt``) is text, not the image."""
    return ext.rsplit(".", 1)[-1].lower() in TEXT_MEMBERS


def _image_member_order(ext: str) -> tuple[int, str]:
    """Which member of a sample is its image: an image extension (``jpg``) first, then a named image (``depth.png``),
    then any other (``id``, ``caption``: a decode decides), each kind in name order."""
    last = ext.rsplit(".", 1)[-1].lower()
    return (0 if "." not in ext and f".{last}" in IMAGE_SUFFIXES else 1 if f".{last}" in IMAGE_SUFFIXES else 2), ext


def _member_metadata(texts: dict[str, bytes]) -> dict[str, Any]:
    """A sample's metadata from its text members: the ``.json`` object, then each ``NAME.json``, each ``NAME.txt``
    as field ``NAME`` (``txt`` alone: ``caption``) and each ``.cls`` as ``cls``, an earlier member winning a field."""
    values: dict[str, Any] = {}
    for ext in sorted(texts, key=lambda ext: (ext != "json", ext)):
        field, _, last = ext.rpartition(".")
        if last != "json":
            try:
                values.setdefault(field or {"txt": "caption"}.get(last, last), caption_text(texts[ext]).strip())
            except UnicodeDecodeError:
                values.setdefault("__sidecar_error__", f"the sample's .{ext} member {not_text(texts[ext])}")
            continue
        try:
            loaded = json.loads(texts[ext])
        except (json.JSONDecodeError, UnicodeDecodeError):
            values.setdefault("__sidecar_error__", f"the sample's .{ext} member is not valid JSON")
            continue
        for name, value in (loaded if isinstance(loaded, dict) else {field or "json": loaded}).items():
            values.setdefault(name, value)
    return values


def tar_items(metadata: FileMetadata, spec: InputSpec, config: IngestConfig) -> Iterator[InputItem]:
    """Yield one item per sample of a WebDataset tar: its image member (``_image_member_order``) plus its json/txt
    members; the others are named in ``unused_members``.

    Text members are read here; an image member of an uncompressed tar is located (``InputItem.member``) and read
    by ``transforms.ingest.ReadInputs`` after the items are spread over workers, so no image bytes cross that
    shuffle. A compressed tar cannot be read at an offset: its image bytes travel inline.
    """
    groups: dict[str, dict[str, bytes | tuple[int, int]]] = {}
    broken, key = None, None
    # A compression Beam knows by the file's extension (.gz, .zst...) is undone by Beam, as before; the members of
    # such a tar, or of one tarfile finds compressed inside, cannot be read at an offset of the file.
    compressed = CompressionTypes.detect_compression_type(metadata.path) != CompressionTypes.UNCOMPRESSED
    try:
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
                stem, _, ext = base.partition(".")
                ext = ext.lower()
                key = posixpath.join(posixpath.dirname(member.name), stem)
                if seekable and not _is_text(ext):
                    value = (member.offset_data, member.size)
                else:
                    value = tar.extractfile(member).read()
                groups.setdefault(key, {})[ext] = value
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        # A tar cut short (an interrupted copy) or not a tar: the samples before the break are items; the one being
        # read when it broke, or the file itself, is one row saying so. What came after cannot be listed.
        broken = _broken_tar(metadata.path, key, error, spec, config)
        groups.pop(key, None)
    for key in sorted(groups):
        members = groups[key]
        metadata_values = _member_metadata({ext: value for ext, value in members.items() if _is_text(ext)})
        images = sorted((ext for ext in members if not _is_text(ext)), key=_image_member_order)
        image_ext = images[0] if images else None
        if len(images) > 1:
            metadata_values["unused_members"] = [printable(f"{posixpath.basename(key)}.{ext}") for ext in images[1:]]
        if not images:
            names = printable(", ".join(f"{posixpath.basename(key)}.{ext}" for ext in sorted(members)))
            metadata_values[NO_IMAGE] = (
                f"sample {printable(key)} of {printable(metadata.path)} has no image member (only {names}); a "
                "WebDataset sample needs one image beside its text, under the same key"
            )
        domain = str(metadata_values.pop(config.domain_column, "") or spec.domain or config.default_domain)
        image = members.get(image_ext, b"") if image_ext else b""
        yield InputItem(
            source=printable(f"{metadata.path}#{key}"),
            path="" if isinstance(image, bytes) else metadata.path,
            domain=domain,
            metadata=metadata_values,
            data=None if isinstance(image, tuple) else image,
            member=image if isinstance(image, tuple) else None,
        )
    if broken is not None:
        yield broken


def _broken_tar(path: str, key: str | None, error: BaseException, spec: InputSpec, config: IngestConfig) -> InputItem:
    shown = printable(path)
    if key is None:
        source = shown
        message = (
            f"{shown} cannot be read as a tar ({type(error).__name__}: {error}); check that it is a tar (plain or "
            "compressed, named .tar, .tar.gz...) and copy it again"
        )
    else:
        source = printable(f"{path}#{key}")
        message = (
            f"{shown} breaks off at sample {printable(key)} ({type(error).__name__}: {error}): the samples before it "
            "are read, this one and any after it are not; copy the tar again (an interrupted copy?)"
        )
    domain = spec.domain or config.default_domain
    return InputItem(source=source, path="", domain=domain, metadata={UNREADABLE: message})
