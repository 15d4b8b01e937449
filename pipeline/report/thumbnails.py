"""The galleries' thumbnails: small inline JPEGs as ``data:`` URIs, by gallery item id.

A kept image is read from its shard (``kept:<key>``; one pass per shard for a batch), a rejected one from its source
while it is still readable (``source:<source>``): a file, a manifest row resolved as ingest resolves it (same path
column, roots and symbolic-link rule from the run's config), or a member of a WebDataset tar. A source over
``MAX_SOURCE_BYTES``, an image over ``MAX_THUMB_PIXELS`` or anything Pillow cannot read gets no thumbnail; nothing
here raises for a bad input. Thumbnails are at most ``THUMB_SIDE`` pixels on a side, JPEG quality 72, deterministic
for the same bytes.
"""

import base64
import io
import logging
import os
from collections import defaultdict

from pipeline.validate import exists, read_bytes, read_samples

_LOG = logging.getLogger("unishard")

THUMB_SIDE = 220
MAX_SOURCE_BYTES = 64 * 1024 * 1024
MAX_THUMB_PIXELS = 80_000_000


class Thumbnails:
    """The thumbnails of one report, made on demand and kept in ``uris``.

    Attributes:
        uris: ``data:image/jpeg;base64`` URIs by gallery id: ``kept:<key>`` for a kept sample (from its shard),
            ``source:<source>`` for any other item (from its source). An item without a thumbnail has no entry.
    """

    def __init__(self, output: str, config: dict):
        self._output = output
        self._config = config
        self._shard_cache: dict[str, dict[str, bytes]] = {}
        self._manifests: dict[str, list[dict]] = {}
        self.uris: dict[str, str] = {}

    def prefetch_shards(self, rows: list[dict]) -> None:
        """Read the images of ``rows`` from their shards, one pass per shard."""
        wanted: dict[str, set[str]] = defaultdict(set)
        for row in rows:
            if row["key"] not in self._shard_cache:
                wanted[row["shard"]].add(row["key"])
        for shard, keys in sorted(wanted.items()):
            try:
                for key, members in read_samples(shard, keys).items():
                    image = next((v for ext, v in sorted(members.items()) if ext not in ("json", "txt")), b"")
                    self._shard_cache[key] = image
            except Exception as error:  # noqa: BLE001 - a broken shard only loses its thumbnails
                _LOG.warning("report: cannot read thumbnails from %s: %s", shard, error)

    def from_shard(self, key: str, shard: str) -> bool:
        """Make the thumbnail ``kept:<key>`` from the sample's image in ``shard``; whether there is one now."""
        ident = f"kept:{key}"
        if ident not in self.uris:
            if key not in self._shard_cache:
                self.prefetch_shards([{"key": key, "shard": shard}])
            uri = thumbnail_uri(self._shard_cache.get(key, b""))
            if uri:
                self.uris[ident] = uri
        return ident in self.uris

    def from_source(self, source: str, key: str | None) -> bool:
        """Make the thumbnail ``source:<source>`` from the item's source; whether there is one now."""
        ident = f"source:{source}"
        if ident not in self.uris:
            try:
                data = self._source_bytes(source)
            except Exception:  # noqa: BLE001 - an unreadable source simply has no thumbnail
                data = b""
            uri = thumbnail_uri(data)
            if uri:
                self.uris[ident] = uri
        return ident in self.uris

    def _source_bytes(self, source: str) -> bytes:
        if "#" not in source or exists(source):
            return _read_capped(source)
        container, _, item = source.rpartition("#")
        lowered = container.lower()
        if lowered.endswith(".tar"):
            members = read_samples(container, {item.rpartition("/")[2]})
            images = [v for m in members.values() for ext, v in sorted(m.items()) if ext not in ("json", "txt")]
            return images[0] if images else b""
        if lowered.endswith((".csv", ".jsonl", ".parquet")) and item.isdigit():
            return _read_capped(self._manifest_path(container, int(item)))
        return b""

    def _manifest_path(self, manifest: str, number: int) -> str:
        from transforms.ingest import manifest_rows, resolve_manifest_path

        spec = next(
            (s for s in self._config.get("ingest", {}).get("inputs", []) if s.get("path") == manifest),
            {"path_column": "path", "roots": []},
        )
        if manifest not in self._manifests:
            self._manifests[manifest] = list(manifest_rows(manifest))
        rows = self._manifests[manifest]
        value = rows[number - 1].get(spec.get("path_column", "path")) if 0 < number <= len(rows) else None
        if not value:
            return ""
        follow = bool(self._config.get("ingest", {}).get("follow_symlinks", False))
        return resolve_manifest_path(str(value), manifest, spec.get("roots", []), follow)


def _read_capped(path: str) -> bytes:
    if not path or not exists(path):
        return b""
    if "://" not in path and os.path.getsize(path) > MAX_SOURCE_BYTES:
        return b""
    return read_bytes(path)


def thumbnail_uri(data: bytes) -> str:
    """A ``data:image/jpeg`` URI of a small thumbnail of ``data``, or ``""`` when it is not a readable image."""
    if not data:
        return ""
    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_THUMB_PIXELS:
                return ""
            image.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))
            image = ImageOps.exif_transpose(image)
            if image.mode not in ("RGB", "L"):
                background = Image.new("RGB", image.size, (255, 255, 255))
                rgba = image.convert("RGBA")
                background.paste(rgba, mask=rgba.getchannel("A"))
                image = background
            image = image.convert("RGB")
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=72, optimize=True)
    except Exception:  # noqa: BLE001 - anything Pillow cannot turn into a thumbnail gets none
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
