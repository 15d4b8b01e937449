"""Writing files so that nothing partial is ever visible under a final name.

Every file is written under a temporary name beside its target and renamed into place, through Beam's filesystems
so the same code writes local folders and object stores.
"""

import contextlib
import os
import signal
import uuid
from collections.abc import Iterator
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

KILL_HOOK = "UNISHARD_KILL_AT"


def fault_point(point: str) -> None:
    """Crash-test instrumentation: SIGKILL this process when ``$UNISHARD_KILL_AT`` names ``point``.

    Points are ``read:<file name>`` (ingest about to read a file), ``write:<file name>`` (a finished temporary file
    about to be renamed) and ``commit:<step>`` (the launcher's commit). Unset, this does nothing.
    """
    wanted = os.environ.get(KILL_HOOK)
    if wanted and wanted == point:
        os.kill(os.getpid(), signal.SIGKILL)


def join(*parts: str) -> str:
    return FileSystems.join(*parts)


def make_dirs(path: str) -> None:
    if "://" not in path:
        os.makedirs(path, exist_ok=True)


@contextlib.contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """Open a temporary file beside ``path``; rename it to ``path`` only when the block finishes cleanly."""
    directory = os.path.dirname(path) if "://" not in path else path.rsplit("/", 1)[0]
    make_dirs(directory)
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    try:
        with FileSystems.create(temporary, mime_type="application/octet-stream", compression_type="uncompressed") as f:
            yield f
        fault_point(f"write:{os.path.basename(path)}")
        if "://" in path:
            if FileSystems.exists(path):
                FileSystems.delete([path])
            FileSystems.rename([temporary], [path])
        else:
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            FileSystems.delete([temporary])
        raise


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name."""
    with atomic_writer(path) as handle:
        handle.write(data)
