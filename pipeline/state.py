"""The output folder's state across runs: one writer at a time, crash-safe commits, and what earlier runs left.

A run writes everything under ``OUT/_staging/<run id>/``. Its commit point is the journal ``_commit.json`` written
atomically into that folder: it lists every staged file and every old file the commit replaces. Before the journal
exists, a killed run left nothing but its staging folder, which the next run deletes. After it exists, the next run
finishes the commit (moves are idempotent: a file already moved is simply gone from staging). Every file reaches its
final name by a rename, so no partial file is ever visible there.

``OUT/_lock`` holds the pid, host and start time of the run writing the folder. A second run refuses to start; a
lock whose process is gone (same host) or older than ``STALE_AFTER_S`` (another host) is taken over.
"""

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator

from apache_beam.io.filesystems import FileSystems

from transforms._io import fault_point, join, write_atomic

LOCK = "_lock"
STAGING = "_staging"
JOURNAL = "_commit.json"
STALE_AFTER_S = 24 * 3600


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
            if holder and not _stale(holder):
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
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _stale(holder: dict) -> bool:
    if holder.get("host") == socket.gethostname():
        return not _pid_alive(int(holder.get("pid", 0)))
    return time.time() - float(holder.get("started", 0)) > STALE_AFTER_S


def files_under(root: str) -> list[str]:
    """Every committed-name file below ``root`` (temporary ``.tmp-`` files excluded), as relative paths."""
    if not _is_remote(root):
        if not os.path.isdir(root):
            return []
        return sorted(
            os.path.relpath(os.path.join(folder, name), root)
            for folder, _, names in os.walk(root)
            for name in names
            if ".tmp-" not in name
        )
    prefix = root.rstrip("/") + "/"
    return sorted(
        m.path[len(prefix) :] for m in FileSystems.match([prefix + "**"])[0].metadata_list if ".tmp-" not in m.path
    )


def _move(source: str, target: str) -> None:
    if _is_remote(target):
        if FileSystems.exists(target):
            FileSystems.delete([target])
        FileSystems.rename([source], [target])
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)


def _delete(path: str) -> None:
    if _is_remote(path):
        if FileSystems.exists(path):
            FileSystems.delete([path])
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def _remove_tree(root: str) -> None:
    if _is_remote(root):
        if FileSystems.exists(root):
            FileSystems.delete([root])
    else:
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def commit(staging: str, output: str, replaced_trees: tuple[str, ...], keep: set[str] = frozenset()) -> None:
    """Make a staged run final: write the journal (the commit point), then apply it.

    Args:
        staging: The run's staging folder.
        output: The output folder.
        replaced_trees: Top-level folders of ``output`` whose old files the run replaces (``shards``, ``ledger``...).
        keep: Relative paths of old files to keep even though they are under a replaced tree (incremental runs keep
            earlier shards).
    """
    staged = [path for path in files_under(staging) if path != JOURNAL]
    replaced = sorted(
        relative
        for tree in replaced_trees
        for relative in (os.path.join(tree, name) for name in files_under(join(output, tree)))
        if relative not in keep and relative not in staged
    )
    journal = {"staged": staged, "replaced": replaced}
    write_atomic(join(staging, JOURNAL), json.dumps(journal, indent=1, sort_keys=True).encode())
    fault_point("commit:0")
    apply_journal(staging, output)


def apply_journal(staging: str, output: str) -> None:
    """Apply (or finish applying) a committed run's journal; safe to repeat after a crash at any point."""
    with FileSystems.open(join(staging, JOURNAL)) as handle:
        journal = json.loads(handle.read())
    for relative in journal["replaced"]:
        _delete(join(output, relative))
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
    """Finish every committed-but-unfinished run and delete every abandoned staging folder; return what was done."""
    done = []
    root = join(output, STAGING)
    if _is_remote(root) or not os.path.isdir(root):
        return done
    for name in sorted(os.listdir(root)):
        staging = join(root, name)
        if FileSystems.exists(join(staging, JOURNAL)):
            apply_journal(staging, output)
            done.append(f"finished the commit of interrupted run {name}")
        else:
            _remove_tree(staging)
            done.append(f"deleted the staging folder of abandoned run {name}")
    with contextlib.suppress(OSError):
        os.rmdir(root)
    return done
