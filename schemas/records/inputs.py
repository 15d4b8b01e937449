"""``InputItem``: one input as ingest lists it, before its image is decoded."""

import dataclasses
from collections.abc import Mapping
from typing import Any

from schemas.compact import packed, unpacked


@dataclasses.dataclass(frozen=True)
class InputItem:
    """One input item: an image to read plus the metadata known about it before decoding.

    Attributes:
        source: Unique identity of the item in this run: the image path for file patterns, ``MANIFEST#ROW`` for a
            manifest row, ``TAR#MEMBER`` for a WebDataset member. The ledger has exactly one row per source.
        path: Where the image bytes live (empty when ``data`` carries them inline: a compressed tar's members).
        domain: Data domain such as ``factory`` or ``marketing``.
        metadata: Metadata columns, sidecar fields and manifest values (JSON-compatible).
        data: Image bytes carried inline (members of a compressed tar); ``None`` when they are read from ``path``.
        sidecar: The image's path without its extension, when sidecars sit beside it (``sidecar_suffixes``).
        sidecar_suffixes: The suffixes of the same-stem sidecar files the listing found (``.json``, ``.TXT``...),
            as they are spelled on disk, in ``ingest.sidecar_extensions`` order; each is merged into the metadata.
        roots: Folders ``path`` and the sidecar must lead into when they are read (``ingest.follow_symlinks``
            decides whether symbolic links may lead out); empty when nothing is read from a path.
        member: ``(offset, size)`` of the image bytes inside ``path`` (a member of an uncompressed tar), read there
            by ingest, so the listing carries no bytes; ``None`` for a whole file.
    """

    source: str
    path: str
    domain: str
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    data: bytes | None = None
    sidecar: str | None = None
    roots: tuple[str, ...] = ()
    member: tuple[int, int] | None = None
    sidecar_suffixes: tuple[str, ...] = ()

    def __reduce__(self) -> tuple:
        # Compact pickling (schemas.compact); the path, the sidecar stem and the roots mostly begin the source. The
        # image bytes stay out of the zlib pass: they are compressed already (zlib took 144 ms to take 1% off a 5.7 MB
        # camera JPEG), and Beam encodes sampled elements to estimate their size even where nothing is shuffled.
        path = None if self.path == self.source else self.path
        within = tuple(_prefix_length(root, self.source) for root in self.roots)
        values = (self.source, path, self.domain, self.metadata, _prefix_length(self.sidecar, self.source))
        return _input_item, (packed((*values, within, self.member, self.sidecar_suffixes)), self.data)


def _prefix_length(text: str | None, source: str) -> str | int | None:
    """``text`` as its length when it begins ``source``, so the source alone spells it."""
    return len(text) if text and source.startswith(text) else text


def _prefix_text(value: str | int | None, source: str) -> str | None:
    return source[:value] if isinstance(value, int) else value


def _input_item(blob: bytes, data: bytes | None) -> InputItem:
    source, path, domain, metadata, sidecar, roots, member, suffixes = unpacked(blob)
    path = source if path is None else path
    roots = tuple(_prefix_text(root, source) for root in roots)
    sidecar = _prefix_text(sidecar, source)
    return InputItem(source, path, domain, metadata, data, sidecar, roots, member, tuple(suffixes))
