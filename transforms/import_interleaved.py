"""Import interleaved documents from MMC4 and OBELICS-style JSONL: text rows plus image items with positions.

Input: an ``InputSpec`` of kind ``mmc4`` or ``obelics`` (one JSONL file, one document per line). Output (main,
mixed): ``InputItem`` per image (``path`` resolved, bytes read later by ingest) and ``TextRow`` per text, both with
``doc_id`` and ``position`` metadata, so the documents stage orders them like manifest rows; rejected ``LedgerRow``s
on the ``rejected`` tag. Ingest calls this for those kinds and hands the text rows on in ``IngestOutputs.texts``.

Formats:

- **MMC4** (``text_list``, ``image_info[] {image_name, matched_text_index, matched_sim, raw_url}``): sentence ``i``
  sits at position ``2i + 1`` and an image matched to sentence ``j`` at ``2j``, before its sentence, as OpenFlamingo
  reads MMC4; ``matched_sim`` is kept as ``placement_similarity`` and the matched sentence becomes the image's
  ``caption`` (MMC4's image-text pairing).
- **OBELICS** (``texts``/``images`` parallel lists with nulls, optional ``metadata`` list and ``general_metadata``,
  either may be JSON text): position ``i`` holds whichever of ``texts[i]`` and ``images[i]`` is set.

Image references: MMC4 and OBELICS ship URLs, and nothing is downloaded here, so an image must already be local.
A reference resolves to the first existing file among ``ROOT/NAME`` for each root (``InputSpec.roots``, default:
the JSONL's folder), where ``NAME`` is MMC4's ``image_name``, an OBELICS relative path (or ``file://`` path), or the
last path segment of an OBELICS URL (how ``img2dataset``-style mirrors keep names). A reference that resolves to no
file is rejected with ``unresolvable_image`` (detail: the reference, the paths tried and the ``doc_id``); a path
leading out of every root with ``outside_root``: by its name (``..``, an absolute path, a percent-encoded ``..`` in a
URL's last segment or a ``file://`` path), or, unless ``ingest.follow_symlinks``, through a symbolic link (the found
file is checked where it really resolves, ``transforms._confine``); a line that is not a document with
``malformed_document``.

Identity: a document is known by what it carries, never by its line number, so a document inserted above others
changes nothing of theirs (``DocumentIdentities``): its ``doc_id`` or ``id``, else its page ``url`` (MMC4's
``url``, OBELICS' ``general_metadata.url``), else ``sha256:`` and 16 hex digits of its image references in order
(its texts when it has no image; an edited text then keeps the identity, and is seen as a changed text row). A
later line of the same file with an identity already taken (MMC4's ``could_have_url_duplicate``) appends ``~`` and
12 hex digits of its whole line (and ``~2``, ``~3``... for a line repeated word for word). Item sources are
``FILE#IDENTITY:imageNNNN`` (text rows: ``FILE#IDENTITY:textNNNN``; a line that is no document: ``FILE#LINE``); a
document's id is its ``doc_id`` or ``id`` as given (two lines with one id make one document), else ``NAME#IDENTITY``:
``NAME`` is the file's base name, or, where another interleaved input has the same base name, as many of its last
folders as tell the two apart (``x/docs.jsonl``, ``y/docs.jsonl``: their documents were merged into one). Metric:
``import_interleaved/rejected``.
"""

import dataclasses
import hashlib
import io
import json
import logging
import os
import posixpath
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

from apache_beam import pvalue
from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.config.ingest import IngestConfig, InputSpec
from schemas.documents import TextRow
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem, rejected
from schemas.records.values import blank, finite, valid_text
from transforms._common import REJECTED, StageFn
from transforms._confine import confine, normalise, outside_root, within

STAGE = "import_interleaved"
_LOG = logging.getLogger(__name__)
KINDS = ("mmc4", "obelics")
DOC_ID = "doc_id"
POSITION = "position"


class ImageRef(NamedTuple):
    """One image reference of an imported document, before it is resolved to a local file."""

    spec: InputSpec
    source: str
    domain: str
    reference: str
    metadata: dict[str, Any]


class ParsedDocument(NamedTuple):
    doc_id: str
    texts: list[tuple[int, str]]
    images: list[tuple[int, str, dict[str, Any]]]
    metadata: dict[str, Any]


def _json_value(value: Any) -> Any:
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def document_names(paths: Sequence[str]) -> dict[str, str]:
    """The name each interleaved file gives its documents' ids: its base name, or its shortest run of last path parts
    that no other of ``paths`` ends with (two ``docs.jsonl`` in different folders must not share ids)."""
    parts = {path: path.replace("\\", "/").rstrip("/").split("/") for path in dict.fromkeys(paths)}
    names = {}
    for path, own in parts.items():
        for count in range(1, len(own) + 1):
            name = "/".join(own[-count:])
            if all(other == path or "/".join(theirs[-count:]) != name for other, theirs in parts.items()):
                break
        names[path] = name
    return names


def _doc_id(line: Mapping[str, Any], fallback: str) -> str:
    for field in ("doc_id", "id"):
        if not blank(line.get(field)):
            return str(line[field])
    return fallback


def _short_hash(value: Any, digits: int) -> str:
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:digits]


class DocumentIdentities:
    """Give the documents of one file, line after line, identities that do not depend on their line numbers."""

    def __init__(self, name: str):
        self._name = name
        self._taken: set[str] = set()

    def next(self, line: Mapping[str, Any], document: ParsedDocument) -> tuple[str, str]:
        """``(identity, doc_id)`` of ``document``, parsed from ``line`` without a fallback id."""
        url = document.metadata.get("url")
        if document.doc_id:
            identity = document.doc_id
        elif not blank(url):
            identity = str(url)
        else:
            references = [reference for _, reference, _ in document.images] or [text for _, text in document.texts]
            identity = "sha256:" + _short_hash(references, 16)
        if identity in self._taken:
            identity = f"{identity}~{_short_hash(line, 12)}"
            repeated, count = identity, 1
            while identity in self._taken:
                count += 1
                identity = f"{repeated}~{count}"
        self._taken.add(identity)
        return identity, document.doc_id or f"{self._name}#{identity}"


def parse_mmc4(line: Mapping[str, Any], fallback_id: str) -> ParsedDocument:
    """Read one MMC4 document: sentences at odd positions, each image before its matched sentence.

    Raises:
        ValueError: The line lacks ``text_list`` or ``image_info`` lists, or an image has no usable name.
    """
    texts, infos = line.get("text_list"), line.get("image_info")
    if not isinstance(texts, list) or not isinstance(infos, list):
        raise ValueError("an MMC4 line needs the lists 'text_list' and 'image_info'")
    metadata = {k: line[k] for k in ("url", "could_have_url_duplicate") if line.get(k) is not None}
    images = []
    for info in infos:
        if not isinstance(info, dict) or not (info.get("image_name") or info.get("raw_url")):
            raise ValueError("every image_info entry needs an 'image_name' or a 'raw_url'")
        matched = info.get("matched_text_index")
        if not isinstance(matched, int) or not 0 <= matched < max(1, len(texts)):
            raise ValueError(f"matched_text_index {matched!r} does not index text_list ({len(texts)} sentences)")
        extra = {k: info[k] for k in ("image_name", "raw_url", "face_detections") if info.get(k) is not None}
        if 0 <= matched < len(texts) and not blank(texts[matched]):
            extra["caption"] = str(texts[matched])
        if info.get("matched_sim") is not None:
            extra |= {"placement_similarity": float(info["matched_sim"]), "placement_method": "mmc4"}
        images.append((2 * matched, str(info.get("image_name") or info["raw_url"]), extra))
    sentences = [(2 * index + 1, str(text)) for index, text in enumerate(texts) if not blank(text)]
    return ParsedDocument(_doc_id(line, fallback_id), sentences, images, metadata)


def parse_obelics(line: Mapping[str, Any], fallback_id: str) -> ParsedDocument:
    """Read one OBELICS-style document: ``texts[i]`` or ``images[i]`` at position ``i``.

    Raises:
        ValueError: The lists are missing, of different lengths, or a position holds both or neither.
    """
    texts, images = line.get("texts"), line.get("images")
    if not isinstance(texts, list) or not isinstance(images, list) or len(texts) != len(images):
        raise ValueError("an OBELICS line needs 'texts' and 'images' lists of the same length")
    per_position = _json_value(line.get("metadata"))
    per_position = per_position if isinstance(per_position, list) and len(per_position) == len(images) else []
    general = _json_value(line.get("general_metadata"))
    metadata = {k: general[k] for k in ("url", "domain") if isinstance(general, dict) and general.get(k) is not None}
    parsed_texts, parsed_images = [], []
    for position, (text, image) in enumerate(zip(texts, images, strict=True)):
        if (text is None) == (image is None):
            raise ValueError(f"position {position} must hold exactly one of a text and an image")
        if text is not None:
            parsed_texts.append((position, str(text)))
            continue
        extra = _json_value(per_position[position]) if per_position else None
        extra = dict(extra) if isinstance(extra, dict) else {}
        parsed_images.append((position, str(image), {"image_reference": str(image), **extra}))
    return ParsedDocument(_doc_id(line, fallback_id), parsed_texts, parsed_images, metadata)


PARSERS = {"mmc4": parse_mmc4, "obelics": parse_obelics}


def _local_name(reference: str) -> tuple[str, bool]:
    """The name to look up under the roots, and whether it came from a URL (then only its last segment counts)."""
    parsed = urllib.parse.urlparse(reference)
    if parsed.scheme in ("http", "https"):
        return urllib.parse.unquote(posixpath.basename(parsed.path)), True
    if parsed.scheme == "file":
        return urllib.parse.unquote(parsed.path), False
    return reference, False


def document_roots(document_file: str, roots: list[str]) -> tuple[str, ...]:
    """The roots of a document file's images: the input's ``roots``, else the file's own folder."""
    folder = os.path.dirname(document_file) if "://" not in document_file else document_file.rsplit("/", 1)[0]
    return tuple(roots) or (folder,)


def resolve_image(reference: str, document_file: str, roots: list[str], follow_symlinks: bool = False) -> str:
    """Find the local file of an image reference under ``roots`` (default: the document file's folder).

    The first existing candidate wins, and must then lead into its root where it really resolves (symbolic links
    resolved unless ``follow_symlinks``); a root the name itself leaves is not tried.

    Raises:
        RejectItem: ``outside_root`` for a path leading out of every root (by its name, or through a link),
            ``unresolvable_image`` when no file exists.
    """
    allowed = [normalise(root) for root in document_roots(document_file, roots)]
    name, from_url = _local_name(reference)
    if not name:
        raise RejectItem(
            reasons.UNRESOLVABLE_IMAGE, f"image reference {reference!r} names no file", reference=reference
        )
    what = f"image reference {reference!r}"
    tried = []
    for root in allowed:
        candidate = normalise(name if os.path.isabs(name) or "://" in name else posixpath.join(root, name))
        if not within(candidate, root):
            continue
        tried.append(candidate)
        if FileSystems.exists(candidate):
            return confine(candidate, [root], follow_symlinks, what, reference=reference)
    if not tried:
        escaped = normalise(name if os.path.isabs(name) or "://" in name else posixpath.join(allowed[0], name))
        raise outside_root(what, escaped, allowed, follow_symlinks, reference=reference)
    hint = "download it (unishard does not fetch URLs) and put it" if from_url else "put the file"
    raise RejectItem(
        reasons.UNRESOLVABLE_IMAGE,
        f"image reference {reference!r} has no local file; {hint} under one of the roots {allowed}",
        reference=reference,
        tried=tried,
    )


def _lines(path: str) -> Iterator[tuple[int, str]]:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        for number, line in enumerate(io.TextIOWrapper(handle, encoding="utf-8"), start=1):
            if line.strip():
                yield number, line


def image_path(documents: str, kind: str, identity: str, index: int, roots: list[str], follow_symlinks: bool) -> str:
    """The file of image ``index`` of the document ``identity`` of ``documents`` (its item source is
    ``documents#identity:imageNNNN``), resolved as ingest resolves it; "" when no document has that image.

    Raises:
        RejectItem: The image's reference leads out of ``roots``, or names no file.
    """
    identities = DocumentIdentities("")
    for _, text in _lines(documents):
        try:
            line = valid_text(finite(json.loads(text)))[0]
            document = PARSERS[kind](line, "")
        except (ValueError, TypeError, AttributeError):
            continue
        if identities.next(line, document)[0] == identity:
            images = document.images
            return resolve_image(images[index][1], documents, roots, follow_symlinks) if index < len(images) else ""
    return ""


def with_document(output: Any, doc_id: str) -> Any:
    """``output`` with a rejected image's ledger row naming its document (``LedgerRow.document_id``), so the
    documents stage lists the image among those that left its document."""
    if isinstance(output, pvalue.TaggedOutput) and output.tag == REJECTED:
        return pvalue.TaggedOutput(REJECTED, dataclasses.replace(output.value, document_id=doc_id))
    return output


class ListInterleavedFn(StageFn):
    """Expand one MMC4 or OBELICS JSONL file into image items and text rows; a bad line or image rejects only it."""

    stage = STAGE

    def __init__(self, config: IngestConfig):
        super().__init__()
        self._config = config
        self._names = document_names([spec.path for spec in config.inputs if spec.kind in KINDS])

    def process(self, spec: InputSpec) -> Iterable[Any]:
        domain = spec.domain or self._config.default_domain
        name = self._names.get(spec.path) or posixpath.basename(spec.path)
        identities = DocumentIdentities(name)
        for number, text in _lines(spec.path):
            line_source = f"{spec.path}#{number}"
            try:
                try:
                    loaded = json.loads(text)
                except json.JSONDecodeError as error:
                    raise ValueError(
                        f"line {number} is not JSON ({error.msg} at column {error.colno}): each line of a "
                        f"{spec.kind} file is one JSON object; fix the line or remove it"
                    ) from None
                line, replaced = valid_text(finite(loaded))
                if not isinstance(line, dict):
                    raise ValueError("the line is not a JSON object")
                if replaced:
                    _LOG.warning(
                        "%s: %d lone UTF-16 surrogate(s) (JSON's \\udXXX without its pair, such as half an emoji) "
                        "replaced by U+FFFD; no UTF-8 writer takes them",
                        line_source,
                        replaced,
                    )
                document = PARSERS[spec.kind](line, "")
            except (ValueError, TypeError) as error:
                self._rejected.inc()
                row = rejected(STAGE, reasons.MALFORMED_DOCUMENT, line_source, None, domain, message=str(error))
                yield pvalue.TaggedOutput(REJECTED, row)
                continue
            identity, doc_id = identities.next(line, document)
            common = {**document.metadata, DOC_ID: doc_id}
            for index, (position, sentence) in enumerate(document.texts):
                metadata = {**common, POSITION: position, "text": sentence}
                yield TextRow(f"{spec.path}#{identity}:text{index:04d}", domain, metadata)
            for index, (position, reference, extra) in enumerate(document.images):
                metadata = {**common, **extra, POSITION: position}
                source = f"{spec.path}#{identity}:image{index:04d}"
                for output in super().process(ImageRef(spec, source, domain, reference, metadata)):
                    yield with_document(output, metadata[DOC_ID])

    def apply(self, ref: ImageRef) -> Iterator[InputItem]:
        try:
            path = resolve_image(ref.reference, ref.spec.path, ref.spec.roots, self._config.follow_symlinks)
        except RejectItem as reject:
            reject.detail = {**reject.detail, DOC_ID: ref.metadata[DOC_ID]}
            raise
        roots = document_roots(ref.spec.path, ref.spec.roots)
        yield InputItem(source=ref.source, path=path, domain=ref.domain, metadata=ref.metadata, roots=roots)
