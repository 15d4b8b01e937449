"""The output folder's state across runs: one writer at a time, crash-safe commits, and what earlier runs left.

A run writes everything under ``OUT/_staging/<run id>/``. Its commit point is the journal ``_commit.json`` written
atomically into that folder: it lists every staged file and every old file the commit replaces. Before the journal
exists, a killed run left nothing but its staging folder, which the next run deletes. After it exists, the next run
finishes the commit (moves are idempotent: a file already moved is simply gone from staging). Every file reaches its
final name by a rename, so no partial file is ever visible there.

A commit deletes and replaces only files unishard wrote (``pipeline.output_folder``): the journal's ``replaced`` are
files the previous commit listed in ``_run/files.json``, and the commit writes the new list first of all.

``OUT/_lock`` holds the pid, host and start time of the run writing the folder. A second run refuses to start; a
lock whose process is gone (same host) or older than ``STALE_AFTER_S`` (another host) is taken over.
"""

import contextlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterable, Iterator

from apache_beam.io.filesystems import FileSystems

from pipeline.output_folder import (
    MANIFEST,
    ForeignFiles,
    describe,
    files_under,
    foreign_files,
    link_on_the_way,
    manifest_bytes,
    written_files,
)
from transforms._io import fault_point, join, literal, write_atomic

_LOG = logging.getLogger("unishard")

LOCK = "_lock"
_LOCK_READS = 10
STAGING = "_staging"
JOURNAL = "_commit.json"
STALE_AFTER_S = 24 * 3600
# A run id, and its siblings: the progress records and the image store (transforms.image_store.STORE_SUFFIX).
RUN_FOLDER = re.compile(r"[0-9a-f]{32}(\.progress|\.images)?")


class OutputBusy(RuntimeError):
    """Another live run holds the output's lock."""


def _is_remote(path: str) -> bool:
    return "://" in path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(output: str) -> Iterator[None]:
    """Hold ``OUT/_lock`` for the block; refuse when a live run holds it, take it over when it is stale."""
    if _is_remote(output):
        # Object stores have no exclusive create; the lock is advisory there.
        yield
        return
    os.makedirs(output, exist_ok=True)
    path = os.path.join(output, LOCK)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            if holder is None:
                raise OutputBusy(
                    f"{path} is not a unishard lock (unishard writes its run's pid, host and start time there, as "
                    "JSON), so it is left alone: it may be another program's file. Move it out of the output folder, "
                    "or give another --output"
                ) from None
            if not _stale(holder):
                raise OutputBusy(
                    f"{output} is being written by another unishard run (pid {holder.get('pid')} on "
                    f"{holder.get('host')}, started {time.ctime(holder.get('started', 0))}). Wait for it to finish, "
                    f"or, if that run is certainly dead, delete {path}"
                ) from None
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump(mine, handle)
        break
    else:
        raise OutputBusy(f"could not take the lock {path}; another run took it at the same moment")
    try:
        yield
    finally:
        if (_read_lock(path) or {}).get("pid") == mine["pid"]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def _read_lock(path: str) -> dict | None:
    """The lock at ``path`` as unishard wrote it; ``{}`` when it is gone (its run just ended: a stale lock); ``None``
    when it holds something else (or nothing, after a short wait for a run that has just created it to write it)."""
    for attempt in range(_LOCK_READS):
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return None
        if text or attempt == _LOCK_READS - 1:
            break
        time.sleep(0.1)
    try:
        holder = json.loads(text)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and {"pid", "host", "started"} <= holder.keys() else None


def _stale(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
        return not _pid_alive(int(holder.get("pid", 0)))
    return time.time() - float(holder.get("started", 0)) > STALE_AFTER_S


def _move(source: str, target: str) -> None:
    if _is_remote(target):
        if FileSystems.exists(target):
            FileSystems.delete([literal(target)])
        FileSystems.rename([source], [target])
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)


def _delete(output: str, relative: str) -> None:
    """Delete ``output/relative``, never through a symbolic link nor a link itself (the commit refused those)."""
    path = join(output, relative)
    if _is_remote(path):
        if FileSystems.exists(path):
            FileSystems.delete([literal(path)])
        return
    link = link_on_the_way(output, relative)
    if link:
        _LOG.warning("unishard: left %s in place: %s is a symbolic link", path, link)
        return
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def _remove_tree(root: str) -> None:
    """Delete a staging folder; a symbolic link in its place is left alone, its target never touched."""
    if _is_remote(root):
        if FileSystems.exists(root):
            FileSystems.delete([literal(root)])
    elif not os.path.islink(root):
        import shutil

        # rmtree unlinks the links inside a tree without following them.
        shutil.rmtree(root, ignore_errors=True)


def commit(staging: str, output: str, keep: Iterable[str] = (), reserved: Iterable[str] = ()) -> None:
    """Make a staged run final: write the journal (the commit point), then apply it.

    The old files replaced are those the previous commit listed that the run neither stages nor keeps. The new list
    (``_run/files.json``) is the staged files, the kept ones and ``reserved``; it is the first file moved.

    Args:
        staging: The run's staging folder.
        output: The output folder.
        keep: Relative paths of old files to keep (incremental runs keep earlier shards); only listed ones are kept.
        reserved: Relative paths written after the commit (the report), claimed so that the next commit replaces them.

    Raises:
        ForeignFiles: The commit would delete or write over a file unishard did not write, or through a symbolic
            link; nothing was committed and the staging folder is left as it is.
    """
    before, keep, reserved = written_files(output) or set(), set(keep), list(reserved)
    staged = [path for path in files_under(staging) if path not in (JOURNAL, MANIFEST)]
    replaced = sorted(before - {*staged, *keep, MANIFEST})
    problems = foreign_files(output, before, [*replaced, *staged, *reserved, MANIFEST])
    if problems:
        raise ForeignFiles(
            f"the commit would delete or write over files in {output} that unishard did not write:"
            + describe(problems)
            + "\nMove them out of the way (or give another --output) and rerun; nothing was committed"
        )
    write_atomic(join(staging, MANIFEST), manifest_bytes({*staged, *(before & keep), *reserved}))
    journal = {"staged": [MANIFEST, *staged], "replaced": replaced}
    write_atomic(join(staging, JOURNAL), json.dumps(journal, indent=1, sort_keys=True).encode())
    fault_point("commit:0")
    apply_journal(staging, output)


def apply_journal(staging: str, output: str) -> None:
    """Apply (or finish applying) a committed run's journal; safe to repeat after a crash at any point."""
    with FileSystems.open(join(staging, JOURNAL)) as handle:
        journal = json.loads(handle.read())
    for relative in journal["replaced"]:
        _delete(output, relative)
    for step, relative in enumerate(journal["staged"], start=1):
        source = join(staging, relative)
        if FileSystems.exists(source):
            _move(source, join(output, relative))
        fault_point(f"commit:{step}")
    discard(staging)


def discard(staging: str) -> None:
    """Delete a staging folder (and the staging root once it is empty)."""
    _remove_tree(staging)
    if not _is_remote(staging):
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(staging.rstrip("/")))


def recover(output: str) -> list[str]:
    """Finish every committed-but-unfinished run and delete every abandoned staging folder; return what was done.

    Only entries named as unishard names its staging folders are touched.
    """
    done = []
    root = join(output, STAGING)
    if _is_remote(root) or os.path.islink(root) or not os.path.isdir(root):
        return done
    for name in sorted(os.listdir(root)):
        staging = join(root, name)
        if not RUN_FOLDER.fullmatch(name) or os.path.islink(staging):
            continue
        if FileSystems.exists(join(staging, JOURNAL)):
            apply_journal(staging, output)
            done.append(f"finished the commit of interrupted run {name}")
        else:
            _remove_tree(staging)
            done.append(f"deleted the staging folder of abandoned run {name}")
    with contextlib.suppress(OSError):
        os.rmdir(root)
    return done
