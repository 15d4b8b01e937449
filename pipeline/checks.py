"""The launcher's checks: inputs that match something, lexicon files it can read and an output folder it can write,
before any work; books that add up (``transforms.books``) before a commit. Each failure is a ``RunError`` saying
what to do.
"""

import importlib.util
import os
import uuid

from apache_beam.io.filesystems import FileSystems

from pipeline.job import RunError
from pipeline.run_state import read_json
from schemas import reasons
from schemas.config.unishard import UnishardConfig
from transforms._io import join, pattern
from transforms._lexicon import LexiconError
from transforms._listing import broken_links, holds_no_rows, input_kind, input_pattern, outside_output, top_folder
from transforms.audit import Lexicon
from transforms.books import BOOK_PROBLEMS, BOOKS, KEPT_UNLISTED, PROBLEMS, REPLACED
from transforms.safety import unsafe_matcher

# The Beam extra that gives each object store's file system, and the module it needs (Beam lists ``s3://`` without
# boto3 and fails on the first read); other schemes are none Beam reads.
STORES = {
    "gs": ("gcp", "google.cloud.storage"),
    "s3": ("aws", "boto3"),
    "azfs": ("azure", "azure.storage.blob"),
    "hdfs": ("hadoop", "hdfs"),
}


def check_stores(config: UnishardConfig) -> None:
    """Fail before any work when an input or the output lies on a store this machine's Beam cannot reach: one line
    naming the path and the extra to install, instead of a traceback from the first read or write."""
    paths = [("input", spec.path) for spec in [*config.ingest.inputs, *config.decontaminate.exclude]]
    for role, path in [*paths, ("output", config.run.output)]:
        scheme = path.partition("://")[0] if "://" in path else ""
        if not scheme:
            continue
        extra, module = STORES.get(scheme, (None, None))
        if extra is None and scheme in ("http", "https"):
            raise RunError(
                f"{role} {path!r} is a web address; unishard reads files, it does not download: download them first "
                "(img2dataset writes WebDataset tars, an input here) and give the local copy"
            )
        if extra is None:
            known = ", ".join(f"{name}://" for name in STORES)
            raise RunError(
                f"{role} {path!r}: unishard reads and writes local paths and, through Beam's file systems, {known}; "
                f"{scheme}:// is none of them. Copy the files to a local folder or one of those stores"
            )
        try:
            ready = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            ready = False
        if not ready:
            raise RunError(
                f"{role} {path!r} is on {scheme}://, which needs Beam's {extra} extra on this machine and on the "
                f"workers: pip install 'apache-beam[{extra}]' (the Beam version installed), then run again"
            )


def check_inputs(config: UnishardConfig) -> None:
    """Fail before any work when an input matches nothing (a typo in a path is the usual cause) or lies in the output
    folder, whose files a run never reads."""
    if not config.ingest.inputs:
        raise RunError("no inputs: give --input PATH or add [[ingest.inputs]] to the config")
    for spec in config.ingest.inputs:
        if input_kind(spec) == "files" and not outside_output(top_folder(spec), config.run.output):
            raise RunError(
                f"input {spec.path!r} is the output folder {config.run.output} or lies inside it, and a run never "
                "reads what lies under its output (its shards, ledger and report), so it would read nothing: give "
                "an --output outside the input (an output inside an input folder works: --input photos --output "
                "photos/out)"
            )
    for spec in [*config.ingest.inputs, *config.decontaminate.exclude]:
        matched = FileSystems.match([input_pattern(spec)], limits=[1])[0].metadata_list
        if matched and holds_no_rows(spec):
            raise RunError(
                f"input {spec.path!r} holds no rows (an empty file, or only its header line), so it gives no item: "
                "add its rows, or leave it out"
            )
        if matched:
            continue
        link = next(broken_links(spec, config.ingest), None) if input_kind(spec) == "files" else None
        if link is not None:
            raise RunError(
                f"input {spec.path!r} matches only symbolic links whose target does not exist, such as "
                f"{link.source}; restore the files or remove the links"
            )
        if "://" not in spec.path and os.path.isdir(spec.path):
            raise RunError(
                f"input {spec.path!r} is a folder that holds no files (at any depth): put the images in it or give "
                "another folder"
            )
        raise RunError(f"input {spec.path!r} matches no file; check the path or pattern")


def check_lexicons(config: UnishardConfig) -> None:
    """Fail before any work when a lexicon file the run will read (``safety.lexicons``, ``audit.lexicon``) is
    missing, not UTF-8 or malformed: one line naming the key, the file and what to do, instead of a worker's
    traceback after the images were read."""
    try:
        if config.safety.text_check:
            unsafe_matcher(config.safety)
        if config.audit.enabled:
            Lexicon.load(config.audit.lexicon)
    except LexiconError as error:
        raise RunError(str(error)) from None


def shard_samples(folder: str) -> int:
    """The samples the ``pairs`` shards under ``folder`` hold, as their ``_stats.json`` files count them."""
    matched = FileSystems.match([pattern(folder, "shards", "pairs", "*", "*_stats.json")])[0].metadata_list
    return sum(int(read_json(found.path)["samples"]) for found in matched)


def check_books(staging: str, counts: dict) -> dict:
    """Refuse to commit a run whose books do not add up (``transforms.books``); the message names the losses.

    Every listed input must have exactly one ledger row, and the kept rows of this run must equal the samples in
    its shards. A difference means the run lost or invented items, whatever the cause (a stage, the runner).

    Returns:
        The books (``_run/books.json``), for what they say beyond losses (``kept_unlisted``).
    """
    books_path = join(staging, "_run", BOOKS)
    if not FileSystems.exists(books_path):
        raise RunError(f"the job wrote no {books_path}: the ledger cannot be checked; nothing was committed")
    books = read_json(books_path)
    problems = []
    if books["ledger_rows"] != counts["items"] or any(books[name] for name in PROBLEMS):
        problems.append(
            f"ingest listed {books['listed']} items and {books['carried']} ledger rows were carried from the earlier "
            f"run; the ledger has {books['ledger_rows']} rows ({counts['items']} counted) for "
            f"{books['sources_in_ledger']} sources"
        )
    for name in PROBLEMS:
        if books[name]:
            problems.append(f"{books[name]} sources {BOOK_PROBLEMS[name]}, among them:{_examples(books, name)}")
    kept_now = counts["by_status"].get(reasons.KEPT, 0) - books["carried_kept"]
    samples = shard_samples(staging)
    if kept_now != samples:
        problems.append(f"the ledger has {kept_now} kept rows from this run, but its shards hold {samples} samples")
    if problems:
        raise RunError(
            "the run's books do not add up; nothing was committed:\n  "
            + "\n  ".join(problems)
            + f"\nThe staged output is in {staging}. This is a bug (in a stage or in the runner): please report it "
            "with the command line and the runner's log"
        )
    return books


def unlisted_kept_warning(books: dict) -> str | None:
    """What to tell a person whose input no longer holds files whose samples an earlier run shipped, if any."""
    count = books.get(KEPT_UNLISTED, 0)
    if not count:
        return None
    return (
        f"{_samples_files(count)} are no longer in the input under their names (deleted, renamed or moved), "
        f"among them:{_examples(books, KEPT_UNLISTED)}\n  Their samples stay in the shards and their ledger rows "
        "stay 'kept': an incremental run never rewrites earlier shards. To ship only what the input holds now (a "
        "file deleted for its licence or for privacy), run again with --rebuild"
    )


def replaced_note(books: dict) -> str | None:
    """The sources whose changed content replaced their earlier samples in a rebuild, if any."""
    count = books.get(REPLACED, 0)
    if not count:
        return None
    files = "1 file's changed content replaces its" if count == 1 else f"{count} files' changed content replaces their"
    return (
        f"{files} earlier sample, among them:{_examples(books, REPLACED)}\n  Each one's ledger row names the old "
        "key as replaces_key"
    )


def _examples(books: dict, fact: str) -> str:
    """The sources ``books`` shows for ``fact``, one an indented line, and how many more there are."""
    shown = books["examples"][fact]
    more = f"\n    ... and {books[fact] - len(shown)} more" if books[fact] > len(shown) else ""
    return "".join(f"\n    {source}" for source in shown) + more


def _samples_files(count: int) -> str:
    return "1 kept sample's files" if count == 1 else f"{count} kept samples' files"


def check_writable(output: str) -> None:
    """Fail before any work when the output folder cannot be written, naming it and the reason."""
    if "://" in output:
        return
    probe = os.path.join(output, f".unishard-write-test-{uuid.uuid4().hex}")
    try:
        os.makedirs(output, exist_ok=True)
        with open(probe, "wb") as handle:
            handle.write(b"ok")
        os.remove(probe)
    except OSError as error:
        raise RunError(
            f"cannot write to the output folder {output}: {error.strerror or error}. Choose another --output or "
            "make it writable; nothing was written"
        ) from None
