"""The galleries' thumbnails: small inline JPEGs as ``data:`` URIs, by gallery item id.

A kept image is read from its shard (``kept:<key>``; one pass per shard for a batch), a rejected one from its source
while it is still readable (``source:<source>``): a file, a manifest row resolved as ingest resolves it (same path
column, roots and symbolic-link rule from the run's config), or a member of a WebDataset tar. A source over
``MAX_SOURCE_BYTES``, an image over ``MAX_THUMB_PIXELS`` or anything Pillow cannot read gets no thumbnail; nothing
here raises for a bad input. Thumbnails are at most ``THUMB_SIDE`` pixels on a side, JPEG quality 72, deterministic
for the same bytes.

A source is the image as it came in, before the faces stage blurred it: where the run's ``faces`` section blurs or
rejects faces for the item's domain, the faces found in the source (the stage's detector and settings) are blurred
in its thumbnail too, so a dropped duplicate does not show the face its kept survivor hides.
"""

import base64
import functools
import io
import logging
import os
from collections import defaultdict

import pydantic

from pipeline.validate import exists, read_bytes, read_samples
from schemas.config.faces import FacesConfig

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
        self._faces = _faces_config(config)
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

    def from_source(self, source: str, key: str | None, domain: str = "") -> bool:
        """Make the thumbnail ``source:<source>`` from the item's source, its faces blurred where the run blurs or
        rejects them for ``domain``; whether there is one now."""
        from transforms.faces import action_for

        ident = f"source:{source}"
        if ident not in self.uris:
            try:
                data = self._source_bytes(source)
            except Exception:  # noqa: BLE001 - an unreadable source simply has no thumbnail
                data = b""
            hide = self._faces is not None and action_for(domain, self._faces) != "keep"
            uri = thumbnail_uri(data, self._faces if hide else None)
            if uri:
                self.uris[ident] = uri
        return ident in self.uris

    def _source_bytes(self, source: str) -> bytes:
        if "#" not in source or exists(source):
            return _read_capped(source)
        for spec in self._config.get("ingest", {}).get("inputs", []):
            # an interleaved document's image: FILE#IDENTITY:imageNNNN, where the identity may be a URL with '#'
            documents = spec.get("path", "")
            identity, _, image = source.removeprefix(f"{documents}#").rpartition(":image")
            if source.startswith(f"{documents}#") and identity and image.isdigit():
                if path := self._document_image(documents, identity, int(image)):
                    return _read_capped(path)
        container, _, item = source.rpartition("#")
        lowered = container.lower()
        if lowered.endswith(".tar"):
            members = read_samples(container, {item.rpartition("/")[2]})
            images = [v for m in members.values() for ext, v in sorted(m.items()) if ext not in ("json", "txt")]
            return images[0] if images else b""
        if lowered.endswith(".parquet") and item.isdigit() and (held := self._held_image(container, int(item))):
            return held
        if lowered.endswith((".csv", ".tsv", ".jsonl", ".json", ".parquet")) and item.isdigit():
            return _read_capped(self._manifest_path(container, int(item)))
        return b""

    def _document_image(self, documents: str, identity: str, index: int) -> str:
        """The path of image ``index`` of the document ``identity`` of an MMC4 or OBELICS input, or ""."""
        from transforms.import_interleaved import PARSERS, image_path

        spec = self._spec(documents)
        if spec.get("kind") not in PARSERS:
            return ""
        follow = bool(self._config.get("ingest", {}).get("follow_symlinks", False))
        return image_path(documents, spec["kind"], identity, index, spec.get("roots", []), follow)

    def _held_image(self, manifest: str, number: int) -> bytes:
        """The image a Parquet manifest holds in row ``number`` (its row group read alone), or b"" for none."""
        from schemas.config.ingest import InputSpec
        from transforms._embedded_rows import parquet_image_column, row_image

        spec = self._spec(manifest)
        column = parquet_image_column(InputSpec(path=manifest, path_column=spec.get("path_column", "path")))
        data = row_image(manifest, number, column) if column else b""
        return data if len(data) <= MAX_SOURCE_BYTES else b""

    def _spec(self, manifest: str) -> dict:
        return next(
            (s for s in self._config.get("ingest", {}).get("inputs", []) if s.get("path") == manifest),
            {"path_column": "path", "roots": []},
        )

    def _manifest_path(self, manifest: str, number: int) -> str:
        from transforms._folder_metadata import image_column
        from transforms.ingest import manifest_rows, resolve_manifest_path

        spec = self._spec(manifest)
        if manifest not in self._manifests:
            self._manifests[manifest] = list(manifest_rows(manifest))
        rows = self._manifests[manifest]
        row = rows[number - 1] if 0 < number <= len(rows) else {}
        value = row.get(image_column(row, spec.get("path_column", "path")) or "")
        if not value:
            return ""
        follow = bool(self._config.get("ingest", {}).get("follow_symlinks", False))
        return resolve_manifest_path(str(value), manifest, spec.get("roots", []), follow, spec.get("base"))


def _read_capped(path: str) -> bytes:
    if not path or not exists(path):
        return b""
    if "://" not in path and (not os.path.isfile(path) or os.path.getsize(path) > MAX_SOURCE_BYTES):
        return b""  # a named pipe would wait for a writer forever
    return read_bytes(path)


def _faces_config(config: dict) -> FacesConfig | None:
    """The run's faces section (the default when the run's config lacks it or no longer reads); None when off."""
    try:
        faces = FacesConfig.model_validate(config.get("faces") or {})
    except pydantic.ValidationError:
        faces = FacesConfig()
    return faces if faces.enabled else None


@functools.cache
def _detector():
    from transforms.faces import load_detector

    return load_detector()


def hide_faces(image, faces: FacesConfig):
    """``image`` (RGB) with the faces the faces stage would find blurred as it blurs them."""
    from transforms.faces import blur_boxes, detect_faces

    boxes = detect_faces(image, _detector(), faces)
    return blur_boxes(image, boxes, faces)[1] if boxes else image


def thumbnail_uri(data: bytes, faces: FacesConfig | None = None) -> str:
    """A ``data:image/jpeg`` URI of a small thumbnail of ``data``, or ``""`` when it is not a readable image; with
    ``faces``, the faces found are blurred first (``hide_faces``)."""
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
            if faces is not None:
                image = hide_faces(image, faces)
            image.thumbnail((THUMB_SIDE, THUMB_SIDE))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=72, optimize=True)
    except Exception:  # noqa: BLE001 - anything Pillow cannot turn into a thumbnail gets none
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
