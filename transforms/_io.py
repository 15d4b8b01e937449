"""Writing files so that nothing partial is ever visible under a final name.

Every file is written under a temporary name beside its target and renamed into place, through Beam's filesystems
so the same code writes local folders and object stores.
"""

import contextlib
import os
import re
import signal
import uuid
import warnings
from collections.abc import Iterator
from typing import BinaryIO

from apache_beam.io.filesystems import FileSystems

KILL_HOOK = "UNISHARD_KILL_AT"
_WILDCARD = re.compile(r"([*?[])")
# literal() puts "[" in a class, "[[]": Python's re warns that a later version may read that as a nested set. Beam
# compiles every pattern it matches, so without this a folder named "Fotos [2024]" would print that warning.
warnings.filterwarnings("ignore", message="Possible nested set", category=FutureWarning)


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


def literal(path: str) -> str:
    """``path`` as a Beam file pattern that matches only itself.

    Beam reads ``*``, ``?`` and ``[`` in every path it matches as wildcards, and has no escape character; each becomes
    a one-character class (``Fotos [2024]`` is ``Fotos [[]2024]``). Beam then lists the folder above the first of
    them and filters, so the match is right but walks more.
    """
    return _WILDCARD.sub(r"[\1]", path)


def fixed_part(pattern: str) -> str:
    """The part of a Beam file pattern before its first wildcard: all of it when it holds none."""
    return _WILDCARD.split(pattern, maxsplit=1)[0]


def pattern(folder: str, *parts: str) -> str:
    """The file pattern ``parts`` (which may hold wildcards) below ``folder``, a folder taken literally (a run's
    output, an earlier run's): a folder named ``out [v2]`` matches itself, not ``out 2``."""
    return join(literal(folder), *parts)


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
                FileSystems.delete([literal(path)])
            FileSystems.rename([temporary], [path])
        else:
            os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(Exception):
            if "://" in temporary:
                FileSystems.delete([literal(temporary)])
            else:
                os.remove(temporary)
        raise


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary name."""
    with atomic_writer(path) as handle:
        handle.write(data)
