"""The ``[ingest]`` section and its input specs (``transforms/ingest.py``)."""

from typing import Literal

import pydantic

from schemas.config.base import PathText, Section


class InputSpec(Section):
    """One input: a file pattern, a manifest, or WebDataset tars.

    ``kind = "auto"`` picks ``manifest`` for ``.csv``/``.jsonl``/``.parquet``, ``webdataset`` for ``.tar``, and
    ``files`` otherwise.
    """

    path: PathText
    kind: Literal["auto", "files", "manifest", "webdataset", "mmc4", "obelics"] = "auto"
    domain: str | None = None
    path_column: str = "path"
    base: PathText | None = pydantic.Field(
        None,
        description="Folder a manifest's relative image paths resolve against (default: the manifest's own folder), "
        "and its default root: a COCO file exported to annotations/ whose file names are relative to images/.",
    )
    roots: list[PathText] = pydantic.Field(
        default_factory=list,
        description="Folders the input's images and sidecars must lie in (manifest rows, image references, matched "
        "files); default: the manifest's or document file's own folder, or the folder a file pattern lists.",
    )


UNKNOWN_DOMAIN = "unknown"  # the domain of an item nobody labelled


class IngestConfig(Section):
    """How inputs are listed and read (``transforms/ingest.py``)."""

    inputs: list[InputSpec] = pydantic.Field(default_factory=list)
    default_domain: str = pydantic.Field(
        UNKNOWN_DOMAIN,
        description="Domain of items no input, manifest column or sidecar names one. Left 'unknown', they are "
        "unlabelled: quality holds them to absolute thresholds only, since a pool of every kind has no outliers.",
    )
    domain_column: str = "domain"
    sidecar_extensions: list[str] = pydantic.Field(
        default_factory=lambda: [".json", ".txt"],
        description=(
            "Same-stem files merged into an image's metadata (photo.jpg takes photo.json and photo.TXT, and "
            "photo.jpg.json or photo.jpg.supplemental-metadata.json first, as Google Takeout names it), earlier "
            "extensions winning a key; one that no image takes is rejected as orphan_sidecar."
        ),
    )
    ignore: list[str] = pydantic.Field(
        default_factory=list,
        description=(
            "Names of files or folders below a folder or pattern input that are not inputs, as fnmatch patterns "
            "matched whatever their case: nothing below an ignored folder is listed, read or in the ledger (counter "
            "ingest/ignored). For a Synology share: ['@eaDir', '#recycle', '.*', 'Thumbs.db'] (its thumbnails, "
            "recycle bin and hidden files)."
        ),
    )
    folder_field: str | None = pydantic.Field(
        None,
        description="Give each image of a folder or pattern input the name of the folder it lies in under this "
        "metadata key (e.g. 'label': class folders such as scratches/ and dents/ become each image's label and "
        "text), unless its sidecar or metadata row gives that key. Off by default: folder names such as 2024-05-03 "
        "or DCIM are no text.",
    )
    follow_symlinks: bool = pydantic.Field(
        False,
        description="Let symbolic links lead out of an input's roots. Off, a local path is checked where it really "
        "resolves, and one that leaves its roots through a link is rejected as outside_root and never read.",
    )
