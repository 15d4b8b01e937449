"""``unishard validate OUT/``: check that every shard of an output folder is sound before anyone trains on it.

For every ``OUT/shards/<view>/<split>/shard-NNNNNN.tar``: the tar reads to its end-of-archive marker (a truncated or
corrupted shard is caught), every key is lowercase hex without a dot, a sample's members are adjacent and complete
(``json`` always; in the ``pairs`` view also ``txt`` and the image the JSON names), the JSON validates against
``SampleRecord`` and its ``image_sha256`` matches the image bytes (in the ``docs`` view, the JSON parses as a
``DocumentRecord`` whose images are exactly the other members, each matching its hash; in the other views, every
``{member, image_sha256}`` object in the JSON is checked against that member), the Parquet sidecar has exactly one
row per sample with the same key and, column by column, the JSON's values, a pairs sample's JSON names its folder's
split, ``_stats.json`` (samples, bytes, domains), the ``.npy`` embeddings' rows and ``index.json`` agree with the tar.
The ledger must be there, and the pairs view's sample count must equal its kept rows and ``_run/counts.json``'s.
Every file ``_run/files.json`` lists must exist (the report aside), and a commit journal left by a killed run is
named: the next ``unishard run`` finishes it. A file under ``OUT/shards/``
that unishard did not write (``pipeline.output_folder``) is named, one line each: a reader globbing the folder would
pick it up.
It reads only; it writes and deletes nothing. The checks of one sample: ``pipeline.sample_checks``; of a tar's
structure: ``pipeline.tar_members``.
"""

import argparse
import io
import json
import os
import sys
import tarfile
from collections import Counter
from typing import Any, TextIO

import numpy as np
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from pipeline.output_folder import strays
from pipeline.sample_checks import PAIRS_VIEW, sample_problems
from pipeline.state import JOURNAL, STAGING
from pipeline.tar_members import read_members
from schemas.report import ShardCheck, Validation
from transforms._io import join, pattern
from transforms._output_layout import MANIFEST, listed_files


def list_files(root: str, suffix: str = "") -> list[str]:
    """Every file under ``root`` whose name ends with ``suffix``, sorted; temporary files are skipped."""
    if "://" not in root:
        if not os.path.isdir(root):
            return []
        found = (os.path.join(folder, name) for folder, _, names in os.walk(root) for name in names)
    else:
        found = (m.path for m in FileSystems.match([pattern(root, "**")])[0].metadata_list)
    return sorted(path for path in found if path.endswith(suffix) and ".tmp-" not in path)


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type="uncompressed") as handle:
        return handle.read()


def read_json(path: str) -> Any:
    return json.loads(read_bytes(path))


def exists(path: str) -> bool:
    return os.path.exists(path) if "://" not in path else FileSystems.exists(path)


def shard_parts(output: str, path: str) -> tuple[str, str]:
    """``(view, split)`` of a shard path ``OUT/shards/<view>/<split>/shard-N.tar``."""
    relative = path[len(join(output, "shards")) :].strip("/").split("/")
    return (relative[0], relative[1]) if len(relative) >= 3 else ("", "")


def validate_output(output: str) -> Validation:
    """Check every shard under ``output/shards`` and the indexes; return every problem found."""
    problems: list[str] = []
    foreign = strays(output)
    # A tar a person left under shards/ is named below as not unishard's, not checked (and counted) as a bad shard.
    theirs = {join(output, relative) for relative in foreign}
    tars = [path for path in list_files(join(output, "shards"), ".tar") if path not in theirs]
    checks = [check_shard(path, *shard_parts(output, path)) for path in tars]
    folders = sorted({path.rsplit("/", 1)[0] for path in tars} | _index_folders(output))
    for folder in folders:
        problems.extend(_check_index(folder, [c for c in checks if c.path.rsplit("/", 1)[0] == folder], output))
    problems.extend(_pending_commits(output))
    problems.extend(_missing_listed_files(output))
    problems.extend(_ledger_problems(output, checks, bool(tars)))
    counts_path = join(output, "_run", "counts.json")
    if exists(counts_path):
        kept = read_json(counts_path).get("by_status", {}).get("kept", 0)
        written = sum(c.samples for c in checks if c.view == PAIRS_VIEW)
        if kept != written:
            problems.append(f"the ledger counts {kept} kept items but the {PAIRS_VIEW} shards hold {written} samples")
    elif not tars:
        parent = output.rstrip("/").rsplit("/", 1)[0]
        inside = exists(join(parent, "_run", "counts.json")) and parent != output.rstrip("/")
        hint = f"; give the output folder itself, {parent}" if inside else ""
        problems.append(f"{output} holds no shards and no _run/counts.json: not a unishard output folder{hint}")
    problems.extend(
        f"{relative}: not written by unishard (left in place; move it out of shards/)" for relative in foreign
    )
    return Validation(output=output, shards=checks, problems=problems)


def _pending_commits(output: str) -> list[str]:
    journals = FileSystems.match([pattern(output, STAGING, "*", JOURNAL)])[0].metadata_list
    return [
        f"{found.path[len(output) :].lstrip('/')}: an interrupted commit is pending, so files may be missing or old; "
        "run `unishard run` again with the same --output to finish it"
        for found in sorted(journals, key=lambda found: found.path)
    ]


def _missing_listed_files(output: str) -> list[str]:
    """The files the output's record (``_run/files.json``) lists that are gone (a view or a shard's sidecar deleted);
    the report is left out: ``unishard report`` writes it again."""
    record = join(output, MANIFEST)
    if not exists(record):
        return []
    try:
        listed = sorted(listed_files(record))
    except (ValueError, KeyError, TypeError) as error:
        return [f"{MANIFEST} is unreadable ({type(error).__name__}: {error})"]
    missing = [name for name in listed if not name.startswith("report/") and not exists(join(output, name))]
    return [f"{name}: listed in {MANIFEST} but missing (deleted or moved?)" for name in missing]


def _ledger_problems(output: str, checks: list[ShardCheck], has_shards: bool) -> list[str]:
    """The ledger must be there, and its kept rows must be the pairs samples."""
    parts = list_files(join(output, "ledger"), ".parquet")
    if not parts:
        if has_shards or exists(join(output, "_run", "counts.json")):
            return [
                "ledger/ holds no part-*.parquet: the record of every input item is gone; restore it, or rerun with "
                "--rebuild to write the output again"
            ]
        return []
    kept = 0
    for part in parts:
        with FileSystems.open(part) as handle:
            kept += pq.read_table(handle, columns=["status"]).column("status").to_pylist().count("kept")
    written = sum(c.samples for c in checks if c.view == PAIRS_VIEW)
    if kept != written:
        return [f"the ledger has {kept} kept rows but the {PAIRS_VIEW} shards hold {written} samples"]
    return []


def _index_folders(output: str) -> set[str]:
    return {path.rsplit("/", 1)[0] for path in list_files(join(output, "shards"), "index.json")}


def _check_index(folder: str, checks: list[ShardCheck], output: str) -> list[str]:
    where = folder[len(output) :].lstrip("/") or folder
    index_path = join(folder, "index.json")
    if not exists(index_path):
        return [f"{where}: index.json is missing"]
    try:
        entries = {entry["url"]: entry["nsamples"] for entry in read_json(index_path)["shardlist"]}
    except (ValueError, KeyError, TypeError) as error:
        return [f"{where}/index.json: unreadable ({type(error).__name__}: {error})"]
    problems = []
    on_disk = {c.path.rsplit("/", 1)[1]: c.samples for c in checks}
    for name in sorted(set(entries) | set(on_disk)):
        if name not in on_disk:
            problems.append(f"{where}/index.json lists {name}, which does not exist")
        elif name not in entries:
            problems.append(f"{where}/index.json does not list {name}")
        elif entries[name] != on_disk[name]:
            problems.append(f"{where}/index.json says {name} has {entries[name]} samples, the tar has {on_disk[name]}")
    return problems


def read_samples(path: str, keys: set[str]) -> dict[str, dict[str, bytes]]:
    """The members of the samples ``keys`` of one tar, by key and extension; other members are skipped unread."""
    found: dict[str, dict[str, bytes]] = {}
    with FileSystems.open(path, compression_type="uncompressed") as handle, tarfile.open(fileobj=handle) as tar:
        for member in tar:
            key, _, ext = member.name.rpartition("/")[2].partition(".")
            if key in keys and member.isfile():
                found.setdefault(key, {})[ext] = tar.extractfile(member).read()
    return found


def check_shard(path: str, view: str = PAIRS_VIEW, split: str = "") -> ShardCheck:
    """Validate one tar with its sidecar and stats; never raises for a bad shard, it lists the problems."""
    problems: list[str] = []
    samples: dict[str, dict[str, bytes]] = {}
    order: list[str] = []
    try:
        with FileSystems.open(path, compression_type="uncompressed") as handle:
            size, tar_problems = read_members(handle, samples, order)
    except OSError as error:
        return ShardCheck(path=path, view=view, split=split, samples=0, bytes=0, problems=[f"unreadable: {error}"])
    problems.extend(tar_problems)
    for key in order:
        problems.extend(sample_problems(key, samples[key], view))
    records = _records(samples)
    if view == PAIRS_VIEW and split:
        elsewhere = sorted(key for key, record in records.items() if record.get("split") != split)
        if elsewhere:
            problems.append(f"samples {_few(elsewhere)} say another split than this folder's ({split})")
    problems.extend(_check_embeddings(path[: -len(".tar")] + ".npy", len(samples)))
    problems.extend(_check_sidecar(path[: -len(".tar")] + ".parquet", samples, records, view))
    image_bytes = sum(
        len(v) for members in samples.values() for ext, v in members.items() if ext not in ("json", "txt")
    )
    domains: dict[str, int] = {}
    stats_path = path[: -len(".tar")] + "_stats.json"
    if exists(stats_path):
        try:
            stats = read_json(stats_path)
            domains = {str(k): int(v) for k, v in stats.get("domains", {}).items()}
            if records and all("domain" in record for record in records.values()):
                counted = Counter(str(record["domain"]) for record in records.values())
                if domains != dict(counted):
                    problems.append(f"_stats.json counts domains {domains}, the samples' json {dict(counted)}")
            if stats.get("samples") != len(samples):
                problems.append(f"_stats.json says {stats.get('samples')} samples, the tar has {len(samples)}")
            if stats.get("bytes") != size:
                problems.append(f"_stats.json says {stats.get('bytes')} bytes, the tar has {size}")
        except (ValueError, AttributeError) as error:
            problems.append(f"_stats.json is unreadable: {error}")
    else:
        problems.append("_stats.json is missing")
    return ShardCheck(
        path=path,
        view=view,
        split=split,
        samples=len(samples),
        bytes=size,
        image_bytes=image_bytes,
        domains=domains,
        problems=problems,
    )


def _check_sidecar(path: str, samples: dict[str, dict[str, bytes]], records: dict[str, dict], view: str) -> list[str]:
    if not exists(path):
        return ["Parquet sidecar is missing"]
    try:
        with FileSystems.open(path) as handle:
            rows = pq.read_table(handle).to_pylist()
    except Exception as error:  # noqa: BLE001 - any unreadable sidecar is a finding, not a crash
        return [f"Parquet sidecar is unreadable: {type(error).__name__}: {error}"]
    problems = []
    keys = [row.get("key") for row in rows]
    duplicated = sorted({k for k in keys if keys.count(k) > 1})
    if duplicated:
        problems.append(f"sidecar has several rows for {_few(duplicated)}")
    missing, extra = sorted(set(samples) - set(keys)), sorted(set(keys) - set(samples))
    if missing:
        problems.append(f"sidecar has no row for tar samples {_few(missing)}")
    if extra:
        problems.append(f"sidecar has rows for samples not in the tar: {_few(extra)}")
    if not duplicated and not missing and not extra and keys != list(samples):
        at = next(i for i, (row, sample) in enumerate(zip(keys, samples, strict=True)) if row != sample)
        problems.append(
            f"sidecar rows are not in the tar's order (row {at} is {keys[at]}, the tar's sample {at} is "
            f"{list(samples)[at]}): a loader joining rows to samples or embeddings by position pairs them wrongly"
        )
    for row in rows:
        record = records.get(row.get("key"))
        if record is None:
            continue
        for field, value in row.items():
            found, expected = _record_value(record, field, view)
            if found and not _same(value, expected):
                problems.append(f"sidecar row {row['key']}: {field} differs from the tar's json")
    return problems


# Sidecar columns that hold a nested value of KEY.json (the rest hold the field of their name, or a "parent_child"
# value such as original_width or source_key), per view; None: a column the JSON has no value for.
FLAT_COLUMNS = {
    PAIRS_VIEW: {"width": ("image", "width"), "height": ("image", "height"), "image_bytes": ("image", "bytes")},
    "docs": {"images": None, "texts": None, "text_chars": None, "image_bytes": None, "images_left": None},
}


def _record_value(record: dict, column: str, view: str) -> tuple[bool, Any]:
    """Whether ``KEY.json`` holds the value of a sidecar ``column``, and that value."""
    flat = FLAT_COLUMNS.get(view, {})
    if column not in flat and column in record:
        return True, record[column]
    head, tail = flat.get(column, column.partition("_")[::2]) or ("", "")
    nested = record.get(head)
    if tail and isinstance(nested, dict) and tail in nested:
        return True, nested[tail]
    return False, None


def _same(column: Any, value: Any) -> bool:
    """Whether a sidecar column holds a JSON record's value (objects and lists are JSON text in the sidecar)."""
    if isinstance(value, dict | list) and isinstance(column, str):
        try:
            return json.loads(column) == value
        except ValueError:
            return False
    return column == value or (isinstance(value, list) and list(column or []) == value)


def _records(samples: dict[str, dict[str, bytes]]) -> dict[str, dict]:
    """Each sample's JSON object, where it parses as one (``sample_problems`` names those that do not)."""
    records = {}
    for key, members in samples.items():
        try:
            record = json.loads(members.get("json", b""))
        except ValueError:
            continue
        if isinstance(record, dict):
            records[key] = record
    return records


def _check_embeddings(path: str, samples: int) -> list[str]:
    if not exists(path):
        return []
    name = path.rsplit("/", 1)[-1]
    try:
        with FileSystems.open(path) as handle:
            embeddings = np.load(io.BytesIO(handle.read()))
        rows = embeddings.shape[0]
    except (ValueError, OSError, IndexError) as error:
        return [f"{name} is unreadable: {error}"]
    problems = [] if rows == samples else [f"{name} has {rows} embeddings for {samples} samples"]
    if embeddings.dtype != np.float16 or embeddings.ndim != 2:
        problems.append(f"{name} holds {embeddings.dtype} of {embeddings.ndim} dimensions, not float16 rows")
    return problems


def _few(values: list[str], limit: int = 5) -> str:
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("validate", help="check every shard of an output folder", allow_abbrev=False)
    parser.add_argument("output", help="a unishard output folder (the run.output of a run)")


def main(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Print one line per problem; exit status 1 when anything is wrong."""
    out = out or sys.stdout
    output = args.output.rstrip("/") or args.output
    validation = validate_output(output)
    samples = sum(shard.samples for shard in validation.shards)
    problems = validation.all_problems()
    if not problems:
        out.write(f"unishard: {output}: {len(validation.shards)} shards, {samples} samples, all valid\n")
        return 0
    bad = sum(1 for shard in validation.shards if not shard.ok)
    noun = "problem" if len(problems) == 1 else "problems"
    out.write(f"unishard: {output}: {len(problems)} {noun}; {bad} of {len(validation.shards)} shards damaged\n")
    for problem in problems:
        out.write(f"  {problem}\n")
    return 1
