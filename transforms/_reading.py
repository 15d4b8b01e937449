"""Reading ingest's bytes: whole files with retries, tar members at an offset, sidecars, and a second read.

Every read goes through Beam's ``FileSystems`` (local, ``gs://``, ``s3://``). Reason codes raised (as
``RejectItem``): ``missing_file``, ``unreadable_input`` (a read that kept failing after ``READ_ATTEMPTS`` tries, or a
tar shorter than its member), ``malformed_sidecar``, ``outside_root`` (a sidecar leading out of its roots; never
read). No Beam pipeline: ``transforms.ingest`` and ``transforms.incremental`` call these from their DoFns.
"""

import codecs
import dataclasses
import json
import os
import posixpath
import stat
import time
from typing import Any

from apache_beam.io.filesystems import FileSystems

from schemas import reasons
from schemas.records.inputs import InputItem
from schemas.records.ledger import RejectItem
from transforms._confine import confine
from transforms._io import fault_point

# Google Takeout's newer exports name a photo's JSON IMG_1.jpg.supplemental-metadata.json, the tag cut short where the
# name would pass 51 characters (IMG_20240101_123456789.jpg.supplemental-met.json).
TAKEOUT_TAG = "supplemental-metadata"

READ_ATTEMPTS = 3


def read_bytes(path: str, attempts: int = READ_ATTEMPTS, listed: bool = False) -> tuple[bytes, int]:
    """Read a whole file through Beam's filesystems, retrying transient errors.

    Args:
        listed: The path was listed from a folder or pattern (not named by a manifest row), so a missing file was
            moved or deleted after the listing.

    Returns:
        The bytes and the number of attempts it took.

    Raises:
        RejectItem: ``missing_file`` when the file does not exist, ``unreadable_input`` for a folder or a named pipe,
            socket or device (at once: reading a pipe waits for a writer forever) or after ``attempts`` failures.
    """
    fault_point(f"read:{posixpath.basename(path)}")
    if "://" not in path and (kind := _not_a_file(path)):
        raise RejectItem(
            reasons.UNREADABLE_INPUT,
            f"{path} is a {kind}, not a file: reading it would wait for whatever writes to it; remove it from the "
            "input folder",
        )
    for attempt in range(1, attempts + 1):
        try:
            with FileSystems.open(path, compression_type="uncompressed") as handle:
                return handle.read(), attempt
        except FileNotFoundError:
            break
        except IsADirectoryError:  # no retry mends it
            raise RejectItem(
                reasons.UNREADABLE_INPUT,
                f"{path} is a folder, not an image file; name the image file itself (a folder is an input of its own)",
            ) from None
        except OSError as error:
            if not FileSystems.exists(path):
                break
            if attempt == attempts:
                raise RejectItem(
                    reasons.UNREADABLE_INPUT, f"reading {path} failed {attempts} times: {error}", attempts=attempts
                ) from error
            time.sleep(0.1 * 2**attempt)
    if listed:
        raise RejectItem(
            reasons.MISSING_FILE,
            f"{path} was listed but no longer exists (moved or deleted while the run read its input); restore it and "
            "run again",
        )
    windows = " (a Windows path? give it relative to the manifest's folder, with /)" if "\\" in path else ""
    name = posixpath.basename(path)
    if name != name.strip():
        windows += f" (its name {name!r} starts or ends with a space: a manifest cell padded with spaces?)"
    raise RejectItem(
        reasons.MISSING_FILE,
        f"{path} does not exist{windows}; fix the manifest row or restore the file (a manifest's relative paths "
        "resolve against its own folder, or the folder its input's base names)",
    )


def _not_a_file(path: str) -> str:
    """What a local path is when it is neither a regular file nor a folder (a named pipe...), else ``""``."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return ""
    kinds = ((stat.S_ISFIFO, "named pipe (FIFO)"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"))
    return next((name for test, name in (*kinds, (stat.S_ISBLK, "block device")) if test(mode)), "")


def read_member(path: str, offset: int, size: int) -> bytes:
    """Read ``size`` bytes at ``offset`` of ``path`` (a tar member's data).

    Raises:
        RejectItem: ``unreadable_input`` when the file is shorter than the member or cannot be read.
    """
    fault_point(f"read:{posixpath.basename(path)}")
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            handle.seek(offset)
            data = handle.read(size)
    except OSError as error:
        raise RejectItem(
            reasons.UNREADABLE_INPUT, f"reading {size} bytes at {offset} of {path} failed: {error}"
        ) from error
    if len(data) != size:
        raise RejectItem(
            reasons.UNREADABLE_INPUT, f"{path} ends before its member at {offset} (+{size} bytes): did it change?"
        )
    return data


def read_again(item: InputItem) -> InputItem:
    """``item`` with its bytes read again from where ``transforms.ingest.ReadInputs`` read them (inline bytes stay
    as they are).

    Raises:
        RejectItem: ``missing_file`` or ``unreadable_input`` when the file went away or cannot be read.
    """
    if item.data is not None or not item.path:
        return item
    data = read_member(item.path, *item.member) if item.member is not None else read_bytes(item.path)[0]
    return dataclasses.replace(item, data=data)


def present_sidecars(stem: str, extensions: list[str], image: str = "") -> tuple[str, ...]:
    """The sidecars a pattern did not match, as suffixes of ``stem``: for each of ``extensions`` (as configured), one
    named after the whole name of ``image`` (``photo.jpg.json``, or Google Takeout's
    ``photo.jpg.supplemental-metadata.json``), then one named after the stem (``photo.json``)."""
    whole = image[len(stem) :] if image.startswith(stem) and image != stem else ""
    tags = {".json": ("", f".{TAKEOUT_TAG}")}
    named = [whole + tag + ext for ext in extensions for tag in tags.get(ext.lower(), ("",))] if whole else []
    return tuple(suffix for suffix in [*named, *extensions] if FileSystems.exists(stem + suffix))


# Byte-order marks and what they name, UTF-32 first: its little-endian mark begins with UTF-16's.
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
NOT_UTF8_TEXT = (
    "is not UTF-8 text and has no byte-order mark naming another encoding (Windows-1252 or Latin-1?); save it as "
    "UTF-8 (in Notepad: Save as, Encoding UTF-8)"
)


def bom_encoding(head: bytes) -> str | None:
    """The encoding the byte-order mark at the start of ``head`` names (its first 4 bytes suffice), else ``None``."""
    return next((encoding for mark, encoding in _BOMS if head.startswith(mark)), None)


UTF16_WITHOUT_BOM = (
    "holds NUL characters, as UTF-16 text without a byte-order mark does; save it as UTF-8 (in Notepad: Save as, "
    "Encoding UTF-8), or as UTF-16 with its byte-order mark"
)


def caption_text(data: bytes) -> str:
    """The text of a caption file: UTF-8, or the Unicode encoding its byte-order mark names (Windows Notepad saves
    "Unicode" as UTF-16 with one, and UTF-8 with one too), the mark itself left out.

    Raises:
        UnicodeDecodeError: anything else, or text holding a NUL character (UTF-16 without a byte-order mark, whose
            ASCII text is valid UTF-8). Decoding with replacement characters would put ``caf\ufffd`` (or, for UTF-16
            read as UTF-8, every other character a NUL) into a training caption without a word.
    """
    text = data.decode(bom_encoding(data) or "utf-8")
    if "\x00" in text:  # UTF-16 without a byte-order mark decodes as UTF-8 when its text is ASCII
        at = max(data.find(b"\x00"), 0)
        raise UnicodeDecodeError("utf-8", data, at, at + 1, "a NUL character is no text")
    return text


def not_text(data: bytes) -> str:
    """Why ``caption_text`` refused ``data``, to follow a file's name in a rejection's detail."""
    return UTF16_WITHOUT_BOM if b"\x00" in data else NOT_UTF8_TEXT


def read_sidecar(
    stem: str, suffixes: tuple[str, ...], roots: tuple[str, ...] = (), follow_symlinks: bool = False
) -> dict[str, Any]:
    """Read and merge the same-stem sidecars of an image: ``.json`` objects and ``.txt`` captions (any case).

    An earlier suffix wins a key both give: with the default order a JSON ``caption`` wins over the ``.txt`` file,
    which otherwise becomes the ``caption``, as in a WebDataset sample.

    Args:
        stem: The image's path without its extension.
        suffixes: The sidecars' suffixes as the listing found them (``InputItem.sidecar_suffixes``).
        roots: Folders the sidecars must lead into (none: unchecked).
        follow_symlinks: Let symbolic links lead out of ``roots``.

    Raises:
        RejectItem: ``outside_root`` when a sidecar leads out of ``roots`` (it is never read),
            ``malformed_sidecar`` when a JSON sidecar cannot be parsed, ``missing_file`` when one has gone.
    """
    metadata: dict[str, Any] = {}
    for suffix in suffixes:
        path = stem + suffix
        if roots:
            confine(path, roots, follow_symlinks, f"sidecar {path}")
        data, _ = read_bytes(path)
        if suffix.lower().endswith(".txt"):
            try:
                metadata.setdefault("caption", caption_text(data).strip())
            except UnicodeDecodeError:
                raise RejectItem(reasons.MALFORMED_SIDECAR, f"sidecar {path} {not_text(data)}", sidecar=path) from None
            continue
        try:
            loaded = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RejectItem(
                reasons.MALFORMED_SIDECAR,
                f"sidecar {path} is not valid JSON ({error}); fix or remove it",
                sidecar=path,
            ) from None
        if not isinstance(loaded, dict):
            raise RejectItem(reasons.MALFORMED_SIDECAR, f"sidecar {path} must hold a JSON object", sidecar=path)
        for key, value in loaded.items():
            metadata.setdefault(key, value)
    return metadata
