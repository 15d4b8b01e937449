"""The names unishard gives the files of an output folder, and which of a listing's files an earlier output holds.

``pipeline/output_folder.py`` uses the names to tell unishard's files from a person's before it deletes or replaces
anything. Ingest uses them so that an earlier unishard output lying inside an input folder (``--input photos`` after
a run with ``--output photos/out``) is not read back as input: its shards, ledger and report are no photos. Only the
files that output's record lists (``MANIFEST``, or ``LEGACY_NAMES`` beside ``LEGACY_MARKER``) and its lock and
staging are left out; a file a person put there is still an input.

Pure functions (no Beam pipeline; Beam's ``FileSystems`` for reading a record).
"""

import json
import os
import re
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from apache_beam.io.filesystems import FileSystems

MANIFEST = "_run/files.json"
LEGACY_MARKER = "_run/state.json"
MACHINERY = ("_lock", "_staging")
LEGACY_NAMES = re.compile(
    r"_run/[^/]+\.json|_run/(inputs|texts)/part-\d+\.parquet"
    r"|shards/[^/]+/[^/]+/(shard-[0-9a-z-]+(\.tar|\.parquet|\.npy|_stats\.json)|index\.json)"
    r"|ledger(_documents)?/part-\d+\.parquet"
    r"|(dedup|audit|splits|quality)/[^/]+\.(json|parquet)"
    r"|audit/items/part-\d+\.parquet"
    r"|eval/([^/]+\.jsonl?|images/[0-9a-f]+\.[0-9a-z]+)"
    r"|report/(report\.json|index\.html)"
)


class EarlierOutput(NamedTuple):
    """An earlier unishard output found in a listing: its folder, and the relative paths its record lists (``None``
    for an output of a version before ``MANIFEST``, whose files are known by ``LEGACY_NAMES``)."""

    root: str
    files: frozenset[str] | None


def earlier_output(path: str) -> Iterator[EarlierOutput]:
    """The earlier output whose record ``path`` is, if it is one (``OUT/_run/files.json`` or ``OUT/_run/state.json``).

    A record that cannot be read or parsed names no files: the output's lock, staging and legacy names still apply.
    """
    normalised = path if "://" in path else path.replace(os.sep, "/")
    for marker in (MANIFEST, LEGACY_MARKER):
        suffix = "/" + marker
        if not normalised.endswith(suffix):
            continue
        root = path[: len(path) - len(suffix)]
        if marker == LEGACY_MARKER and FileSystems.exists(f"{root}/{MANIFEST}"):
            return  # an output with both: its record says which files it wrote (and one warning names it)
        files = None
        if marker == MANIFEST:
            try:
                files = listed_files(path)
            except (OSError, ValueError, KeyError, TypeError):
                pass
        yield EarlierOutput(root, files)
        return


def listed_files(manifest: str) -> frozenset[str]:
    """The relative paths an output's record (``MANIFEST``) lists."""
    with FileSystems.open(manifest) as handle:
        return frozenset(str(name) for name in json.loads(handle.read())["files"])


def written_earlier(path: str, outputs: Sequence[EarlierOutput]) -> bool:
    """Whether ``path`` is a file one of the earlier ``outputs`` wrote (its record, shards, report, lock, staging)."""
    remote = "://" in path
    for output in outputs:
        prefix = output.root.rstrip("/") + "/" if remote else os.path.join(output.root, "")
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix) :] if remote else os.path.relpath(path, output.root).replace(os.sep, "/")
        if relative.split("/", 1)[0] in MACHINERY or relative in (MANIFEST, LEGACY_MARKER):
            return True
        known = LEGACY_NAMES.fullmatch(relative) if output.files is None else relative in output.files
        if known:
            return True
    return False
