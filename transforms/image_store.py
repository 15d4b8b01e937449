"""Where a sample's image bytes live, and the one way to read them.

Image bytes never travel in the records that cross a shuffle. ``normalise`` writes each normalised image once into
the run's image store, ``OUT/_staging/<run id>.images/``, under the SHA-256 of its bytes (content-addressed, so a
rerun or a second worker writing the same image writes the same file), and the ``Sample`` carries the file's path
in ``image_ref``. Every stage that needs pixels (model stages, faces, quality, the shard writers) reads them with
``read_image(sample)``; a stage that changes the pixels (face blurring) stores the new bytes with
``replace_image``. The store goes through Beam's ``FileSystems``, so it works on local disks and object stores; the
launcher deletes it after the commit, and the next run deletes one a killed run left behind.

A ``Sample`` built without a store (unit tests, small in-memory pipelines) carries its bytes inline in ``image``;
both functions handle either.

A write that fails (disk full, permission denied) raises ``StagingError``, which stages do not turn into a
per-item failure: the run fails with the path named and commits nothing.
"""

import dataclasses
import hashlib

from apache_beam.io.filesystems import FileSystems

from schemas.records.samples import Sample
from transforms._io import join, write_atomic

STORE_SUFFIX = ".images"


class StagingError(RuntimeError):
    """The run's staging area cannot be written; the whole run must stop (not one item)."""


def store_folder(output: str) -> str:
    """The image store of the run writing into the staging folder ``output`` (a sibling, never committed)."""
    return output.rstrip("/") + STORE_SUFFIX


def store_image(folder: str, data: bytes, ext: str) -> str:
    """Write ``data`` into the store ``folder`` unless it is there already; return its path."""
    digest = hashlib.sha256(data).hexdigest()
    path = join(folder, digest[:2], f"{digest}.{ext}")
    try:
        if not FileSystems.exists(path):
            write_atomic(path, data)
    except OSError as error:
        raise StagingError(
            f"cannot write the staged image {path}: {error.strerror or error}. Free space or fix the permissions of "
            f"{folder} (it lives beside the output folder's _staging/), then rerun"
        ) from error
    return path


def read_image(sample: Sample) -> bytes:
    """The normalised image bytes of ``sample``."""
    if not sample.image_ref:
        return sample.image
    with FileSystems.open(sample.image_ref, compression_type="uncompressed") as handle:
        return handle.read()


def image_sha256(sample: Sample) -> str:
    """SHA-256 of the normalised image bytes (the store's file name, or a hash of the inline bytes)."""
    if sample.image_ref:
        return sample.image_ref.rsplit("/", 1)[-1].split(".", 1)[0]
    return hashlib.sha256(sample.image).hexdigest()


def replace_image(sample: Sample, data: bytes, **changes) -> Sample:
    """``sample`` with new image bytes (and other ``changes``), stored where its old bytes were stored."""
    if not sample.image_ref:
        return dataclasses.replace(sample, image=data, **changes)
    folder = sample.image_ref.rsplit("/", 2)[0]
    return dataclasses.replace(sample, image_ref=store_image(folder, data, sample.image_ext), **changes)
